# Out-of-distribution refusal benchmark (docs/evaluation.md): not timed.

.PHONY: bench-ood

bench-ood: $(STAMP) ## OOD refusal: false refusals on HAM10000 test, detection of skimage.data photos and corrupted dermoscopy
	$(PY) -m bench.ood --data ../shared/data/ham10000
