# Data targets (ISIC-format folders, the preprocess job). Included by the main Makefile.
.PHONY: preprocess-sample validate-real

preprocess-sample: $(STAMP) ## Generate build/sample and preprocess it into build/sample-dataset (96 px)
	$(BIN)/skinlesion sample-data build/sample
	$(PY) -m skinlesion.jobs.preprocess --input build/sample --output build/sample-dataset --image-size 96

validate-real: $(STAMP) ## Validate the real HAM10000 mini subset (REAL_DATA, --labels subsets/mini.csv)
	$(BIN)/skinlesion validate $(REAL_DATA) --labels subsets/mini.csv
