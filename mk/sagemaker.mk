# The SageMaker backend (docs/sagemaker.md): its tests against a local moto server, no AWS needed.
.PHONY: test-aws sagemaker-settings

test-aws: $(STAMP) ## Run the SageMaker backend tests (tests/aws) against moto on a loopback port
	$(BIN)/pytest -q tests/aws

sagemaker-settings: $(STAMP) ## Print the SageMaker backend's settings as the steps would read them (TF_OUTPUTS=<file>)
	$(if $(wildcard $(TF_OUTPUTS)),SKINLESION_TERRAFORM_OUTPUTS=$(TF_OUTPUTS)) $(PY) -c \
		'import json; from skinlesion.settings import Settings; print(json.dumps(Settings.from_environment().as_dict(), indent=2))'
