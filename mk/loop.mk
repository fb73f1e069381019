# The closed loop (docs/monitoring.md "The whole loop"): champion, shifted traffic, alarm,
# retraining through the trigger's local KFP client, challenger vs champion, roll-out or hold-back.

LOOP_DIR ?= build/loop
LOOP_ARGS ?=

.PHONY: demo-loop

demo-loop: $(STAMP) ## Run the monitor -> retrain -> redeploy loop locally on the generated sample (a few minutes; LOOP_ARGS=--help)
	$(PY) -m pipelines.loop --workdir $(LOOP_DIR) $(LOOP_ARGS)
