# Cost (docs/aws.md, "Cost"): the standing monthly cost of an environment from the price table
# (src/skinlesion/sagemaker_prices.json), pipelines/params/<env>.yaml and pipelines/schedules.yaml.

COST_REGION ?= us-east-1

.PHONY: cost

cost: $(STAMP) ## Estimate the monthly cost of ENV (dev|prod): endpoint at min/max scale, storage, monitoring, training
	$(PY) -m skinlesion.cost --env $(ENV) --region $(COST_REGION)
