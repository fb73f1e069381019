# Kubeflow Pipelines (docs/kubeflow.md): compile and strictly validate the pipelines, submit a
# run, and create, list, pause, resume or delete the recurring runs of pipelines/schedules.yaml.
# Submit and schedule read pipelines/params/$(ENV).yaml and Terraform's outputs in $(TF_OUTPUTS);
# credentials come from the environment (KFP_TOKEN, KFP_USERNAME/KFP_PASSWORD, KFP_COOKIES).

ENV ?= dev
TF_OUTPUTS ?= build/terraform-outputs-$(ENV).json
# make compile pipeline=<name> (empty: every pipeline); make submit pipeline=<name> (training).
pipeline ?=
# The schedule that schedule-pause / schedule-resume / schedule-delete act on.
name ?=
# The image set (docs/deploy.md): skinlesion-{pipeline,training,inference}:IMAGE_TAG under
# IMAGE_REGISTRY, else the ECR repositories of Terraform's outputs ($(TF_OUTPUTS)); no default.
IMAGE_REGISTRY ?=
# make submit / schedule refuse a <commit>-dirty IMAGE_TAG (never pushed) unless ALLOW_DIRTY=1.
ALLOW_DIRTY ?=
# The KFP server release to compile for (docs/kubeflow.md); empty: the params file's, else 2.2.0.
KFP_BACKEND ?=
PIPELINE_ROOT ?=
WAIT ?=
ARGS ?=
KF := $(BIN)/skinlesion kubeflow
KF_ENV_ARGS = --env $(ENV) $(if $(wildcard $(TF_OUTPUTS)),--tf-outputs $(TF_OUTPUTS))
# The params files name the pushed images by IMAGE_TAG (set by mk/containers.mk: the commit).
KF_RUN_ENV = $(if $(IMAGE_TAG),IMAGE_TAG=$(IMAGE_TAG))
KF_IMAGE_ARGS = $(if $(IMAGE_REGISTRY),--image-registry $(IMAGE_REGISTRY)) \
	$(if $(IMAGE_TAG),--image-tag $(IMAGE_TAG))
KF_PUBLISH_ARGS = $(KF_IMAGE_ARGS) $(if $(filter 1 yes true,$(ALLOW_DIRTY)),--allow-dirty)

.PHONY: compile submit schedule schedules schedule-pause schedule-resume schedule-delete \
	kubeflow-check test-kubeflow _kf-need-name

compile: $(STAMP) ## Compile pipelines to build/pipelines/<name>.yaml with ENV's image set (Terraform outputs, or IMAGE_REGISTRY=) and ENV's compile.tuning, for KFP_BACKEND
	$(KF) compile --env $(ENV) $(if $(pipeline),--pipeline $(pipeline)) $(KF_IMAGE_ARGS) \
		$(if $(IMAGE_REGISTRY),,$(if $(wildcard $(TF_OUTPUTS)),--tf-outputs $(TF_OUTPUTS))) \
		$(if $(KFP_BACKEND),--kfp-backend $(KFP_BACKEND)) \
		$(if $(PIPELINE_ROOT),--pipeline-root $(PIPELINE_ROOT))

kubeflow-check: $(STAMP) ## Sign in to ENV's Kubeflow and find (or create) its experiment
	$(KF_RUN_ENV) $(KF) check $(KF_ENV_ARGS)

submit: $(STAMP) ## Upload a pipeline version and start a run in ENV (pipeline=training WAIT=1 ALLOW_DIRTY=1 ARGS="--set epochs=2")
	$(KF_RUN_ENV) $(KF) submit --pipeline $(or $(pipeline),training) $(KF_ENV_ARGS) \
		$(KF_PUBLISH_ARGS) $(if $(KFP_BACKEND),--kfp-backend $(KFP_BACKEND)) \
		$(if $(WAIT),--wait) $(ARGS)

schedule: $(STAMP) ## Create or replace the recurring runs of pipelines/schedules.yaml in ENV
	$(KF_RUN_ENV) $(KF) schedule $(KF_ENV_ARGS) $(KF_PUBLISH_ARGS) $(ARGS)

schedules: $(STAMP) ## List the recurring runs of ENV's experiment
	$(KF_RUN_ENV) $(KF) schedules $(KF_ENV_ARGS)

_kf-need-name:
	@test -n "$(name)" || { echo "Give the schedule's name: make $(MAKECMDGOALS) name=<name>" >&2; exit 2; }

schedule-pause: $(STAMP) _kf-need-name ## Pause a schedule by name (name=skinlesion-training-monthly)
	$(KF_RUN_ENV) $(KF) pause-schedule "$(name)" $(KF_ENV_ARGS)

schedule-resume: $(STAMP) _kf-need-name ## Resume a paused schedule by name (name=...)
	$(KF_RUN_ENV) $(KF) resume-schedule "$(name)" $(KF_ENV_ARGS)

schedule-delete: $(STAMP) _kf-need-name ## Delete a schedule by name (name=...)
	$(KF_RUN_ENV) $(KF) delete-schedule "$(name)" $(KF_ENV_ARGS)

test-kubeflow: $(STAMP) ## Run the Kubeflow tests (compile, validation, KFP API contract, kfp.local)
	$(BIN)/pytest -q tests/kubeflow
