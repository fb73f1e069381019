# Containers, Kubernetes manifests and their lint gates (docs/deploy.md): build and push the three
# images, render the Kubeflow namespace's manifests from Terraform's outputs, lint both.
# images and push need a Docker engine (push also AWS credentials); manifests needs kubectl.

ENV ?= dev
TF_OUTPUTS ?= build/terraform-outputs-$(ENV).json
DOCKER ?= docker
KUBECTL ?= kubectl
PLATFORM ?= linux/amd64
IMAGES := training inference pipeline
# The tag of all three images: the commit, marked -dirty when tracked files have changed.
ifndef IMAGE_TAG
IMAGE_TAG := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo dev)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
endif
# PyTorch wheel index of each image: cu126 (CUDA 12.6: the drivers SageMaker documents, see
# containers/training/Dockerfile) or cpu.
TRAINING_TORCH_VARIANT ?= cu126
INFERENCE_TORCH_VARIANT ?= cpu
PROFILE_OWNER ?=
MANIFESTS_OUT ?= build/manifests
# make manifests-apply: how long to wait for the profile controller to create the namespace.
NAMESPACE_TIMEOUT ?= 120
NAMESPACE_POLL ?= 2
DOCKERFILES := $(sort $(wildcard containers/*/Dockerfile)) containers/e2e/Dockerfile.sample
# The one base of the three Dockerfiles, pinned there by tag and index digest.
BASE_IMAGE := python:3.11.14-slim-bookworm
CONTAINER_SCRIPTS := containers/publish.py containers/training/train.py \
	containers/inference/healthcheck.py manifests/render.py
YAML_DIRS := manifests .github $(wildcard pipelines/params)

IMAGE_BUILD_ARGS = --build-arg VERSION=$$($(PY) -c 'import skinlesion; print(skinlesion.__version__)') \
	--build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	--build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
	--build-arg "SOURCE=$$(git config --get remote.origin.url 2>/dev/null || true)"
TORCH_VARIANT_training = $(TRAINING_TORCH_VARIANT)
TORCH_VARIANT_inference = $(INFERENCE_TORCH_VARIANT)

.PHONY: images $(addprefix image-,$(IMAGES)) push pipeline-image-uri base-digest manifests manifests-apply \
	lint-containers containers-checkov \
	test-containers _tf-outputs-exist

images: $(addprefix image-,$(IMAGES)) ## Build the three images as skinlesion-<name>:IMAGE_TAG (needs Docker)

$(addprefix image-,$(IMAGES)): image-%: $(STAMP) ## Build one image: image-training, image-inference or image-pipeline
	$(DOCKER) build --platform $(PLATFORM) -f containers/$*/Dockerfile \
		$(if $(TORCH_VARIANT_$*),--build-arg TORCH_VARIANT=$(TORCH_VARIANT_$*)) \
		$(IMAGE_BUILD_ARGS) -t skinlesion-$*:$(IMAGE_TAG) .

base-digest: ## Print the current index digest of the Dockerfiles' base tag, to update the pinned one (needs Docker)
	$(DOCKER) buildx imagetools inspect $(BASE_IMAGE) --format '{{json .Manifest.Digest}}'

_tf-outputs-exist:
	@test -f "$(TF_OUTPUTS)" || { echo "No $(TF_OUTPUTS): run 'make tf-outputs ENV=$(ENV)' first (docs/aws.md)." >&2; exit 2; }

push: $(STAMP) _tf-outputs-exist ## Push the images to ENV's ECR repositories from Terraform's outputs (needs Docker, AWS)
	$(PY) containers/publish.py --outputs $(TF_OUTPUTS) --tag $(IMAGE_TAG) push --docker $(DOCKER) $(IMAGES)

pipeline-image-uri: $(STAMP) _tf-outputs-exist ## Print the ECR URI:IMAGE_TAG of the pipeline image of ENV
	@$(PY) containers/publish.py --outputs $(TF_OUTPUTS) --tag $(IMAGE_TAG) uri pipeline

manifests: $(STAMP) _tf-outputs-exist ## Render manifests/overlays/ENV with Terraform's outputs into build/manifests/ENV.yaml (PROFILE_OWNER=...)
	$(PY) manifests/render.py --env $(ENV) --outputs $(TF_OUTPUTS) --out $(MANIFESTS_OUT) \
		--image-tag $(IMAGE_TAG) --kubectl $(KUBECTL) $(if $(PROFILE_OWNER),--owner $(PROFILE_OWNER))

# Two phases: the Profile alone, then (once the profile controller has created its namespace) the
# objects that live in it; one `kubectl apply` of everything fails on them while it is missing.
manifests-apply: ## Apply build/manifests/ENV.yaml: the Profile, wait for its namespace (NAMESPACE_TIMEOUT s), then the rest
	@test -f "$(MANIFESTS_OUT)/$(ENV).resources.yaml" || { echo "No $(MANIFESTS_OUT)/$(ENV).resources.yaml: run 'make manifests ENV=$(ENV)' first." >&2; exit 2; }
	$(KUBECTL) apply -f $(MANIFESTS_OUT)/$(ENV).profile.yaml
	@ns=$$(cat $(MANIFESTS_OUT)/$(ENV).namespace); waited=0; \
	until $(KUBECTL) get namespace "$$ns" -o name >/dev/null 2>&1; do \
		if [ $$waited -ge $(NAMESPACE_TIMEOUT) ]; then \
			echo "Namespace $$ns did not appear within $(NAMESPACE_TIMEOUT) s of applying its Profile: is Kubeflow's profile controller running (kubectl -n kubeflow get pods -l kustomize.component=profiles)?" >&2; \
			exit 1; \
		fi; \
		sleep $(NAMESPACE_POLL); waited=$$((waited + $(NAMESPACE_POLL))); \
	done; \
	echo "$(KUBECTL) wait --for=jsonpath={.status.phase}=Active namespace/$$ns --timeout=$(NAMESPACE_TIMEOUT)s"; \
	$(KUBECTL) wait --for=jsonpath='{.status.phase}'=Active "namespace/$$ns" --timeout=$(NAMESPACE_TIMEOUT)s
	$(KUBECTL) apply -f $(MANIFESTS_OUT)/$(ENV).resources.yaml

lint-containers: $(STAMP) ## hadolint every Dockerfile, yamllint manifests/params/workflows, ruff and mypy the deploy scripts
	$(BIN)/hadolint $(DOCKERFILES)
	$(BIN)/yamllint --strict $(YAML_DIRS)
	$(BIN)/ruff check $(CONTAINER_SCRIPTS)
	$(BIN)/ruff format --check $(CONTAINER_SCRIPTS)
	$(BIN)/mypy $(CONTAINER_SCRIPTS)

containers-checkov: tools-checkov ## Run checkov over the Dockerfiles (inline skips only, each with its reason)
	$(CHECKOV) --directory containers --framework dockerfile --compact --quiet --skip-download

test-containers: $(STAMP) ## Run the container, manifest and workflow tests
	$(BIN)/pytest -q tests/containers
