# The end-to-end job (.github/workflows/e2e.yml): a kind cluster with upstream KFP standalone at
# E2E_KFP_VERSION, the three images loaded into it, both pipelines submitted with `make submit`
# (ENV=local: backend=local, the jobs in the step pods) on the generated sample, their runs
# waited for. It needs Docker, kind and kubectl; it never ran where this project was built.

E2E_KFP_VERSION ?= 2.2.0
E2E_CLUSTER ?= skinlesion-e2e
E2E_DIR ?= build/e2e
E2E_PIPELINES ?= training monitoring
E2E_REGISTRY ?= kind.local
E2E_PORT ?= 8888
# Minutes: KFP standalone pulls about a dozen images on a fresh runner.
E2E_KFP_TIMEOUT ?= 900s
E2E_RUN_TIMEOUT ?= 3600
KIND ?= kind
KFP_MANIFESTS := github.com/kubeflow/pipelines/manifests/kustomize
E2E_HOST := http://localhost:$(E2E_PORT)

.PHONY: e2e e2e-cluster e2e-kfp e2e-images e2e-port-forward e2e-submit e2e-wait e2e-logs e2e-down

e2e: e2e-cluster e2e-kfp e2e-images e2e-port-forward e2e-submit e2e-wait ## The whole e2e job on this machine (Docker, kind, kubectl; E2E_KFP_VERSION=2.2.0)

e2e-cluster: ## Create the kind cluster E2E_CLUSTER (reused when it exists)
	@$(KIND) get clusters 2>/dev/null | grep -qx "$(E2E_CLUSTER)" \
		|| $(KIND) create cluster --name $(E2E_CLUSTER) --wait 120s
	$(KUBECTL) cluster-info --context kind-$(E2E_CLUSTER)

# KFP's documented standalone install: the cluster-scoped resources (CRDs), wait for them, then
# the platform-agnostic environment (MinIO, MySQL, Argo, the API server) at the same release.
e2e-kfp: ## Install upstream KFP standalone E2E_KFP_VERSION into the cluster and wait for it
	$(KUBECTL) apply -k "$(KFP_MANIFESTS)/cluster-scoped-resources?ref=$(E2E_KFP_VERSION)"
	$(KUBECTL) wait --for condition=established --timeout=60s crd/applications.app.k8s.io
	$(KUBECTL) apply -k "$(KFP_MANIFESTS)/env/platform-agnostic?ref=$(E2E_KFP_VERSION)"
	$(KUBECTL) -n kubeflow wait --for=condition=Available deployment --all --timeout=$(E2E_KFP_TIMEOUT)

# The set compile names: E2E_REGISTRY/skinlesion-<name>:IMAGE_TAG. The tag is not `latest`, so
# Kubernetes' pull policy is IfNotPresent and the loaded images are used, never pulled.
e2e-images: $(STAMP) ## Build the images (CPU torch), add the sample to the training image, load all three into kind
	$(MAKE) images TRAINING_TORCH_VARIANT=cpu IMAGE_TAG=$(IMAGE_TAG)
	rm -rf $(E2E_DIR)/sample && $(BIN)/skinlesion sample-data $(E2E_DIR)/sample
	$(DOCKER) build -f containers/e2e/Dockerfile.sample \
		--build-arg BASE_IMAGE=skinlesion-training:$(IMAGE_TAG) \
		-t $(E2E_REGISTRY)/skinlesion-training:$(IMAGE_TAG) $(E2E_DIR)/sample
	$(DOCKER) tag skinlesion-pipeline:$(IMAGE_TAG) $(E2E_REGISTRY)/skinlesion-pipeline:$(IMAGE_TAG)
	$(DOCKER) tag skinlesion-inference:$(IMAGE_TAG) $(E2E_REGISTRY)/skinlesion-inference:$(IMAGE_TAG)
	$(KIND) load docker-image --name $(E2E_CLUSTER) \
		$(foreach i,$(IMAGES),$(E2E_REGISTRY)/skinlesion-$(i):$(IMAGE_TAG))

e2e-port-forward: ## Forward the KFP API (svc/ml-pipeline) to localhost:E2E_PORT in the background; wait for healthz
	@mkdir -p $(E2E_DIR)
	$(KUBECTL) -n kubeflow port-forward svc/ml-pipeline $(E2E_PORT):8888 > $(E2E_DIR)/port-forward.log 2>&1 & echo $$! > $(E2E_DIR)/port-forward.pid
	@for i in $$(seq 1 60); do \
		curl -fsS $(E2E_HOST)/apis/v2beta1/healthz >/dev/null 2>&1 && { echo "KFP API at $(E2E_HOST)"; exit 0; }; \
		sleep 2; \
	done; echo "The KFP API did not answer at $(E2E_HOST) within 120 s; see $(E2E_DIR)/port-forward.log" >&2; exit 1

# ALLOW_DIRTY=1: the images of this tree were just built and loaded into kind under this tag.
e2e-submit: ## Submit E2E_PIPELINES with make submit ENV=local (jobs in the pods); run ids to E2E_DIR/<pipeline>.run
	@mkdir -p $(E2E_DIR)
	set -e; for p in $(E2E_PIPELINES); do \
		$(MAKE) --no-print-directory submit ENV=local pipeline=$$p KFP_BACKEND=$(E2E_KFP_VERSION) \
			IMAGE_REGISTRY=$(E2E_REGISTRY) IMAGE_TAG=$(IMAGE_TAG) ALLOW_DIRTY=1 \
			ARGS="--host $(E2E_HOST) --auth none --run-id-file $(E2E_DIR)/$$p.run"; \
	done

e2e-wait: $(STAMP) ## Wait for the runs of e2e-submit; fail unless every one SUCCEEDED (E2E_RUN_TIMEOUT s each)
	$(KF) wait --env local --host $(E2E_HOST) --auth none --timeout $(E2E_RUN_TIMEOUT) --poll 10 \
		$(foreach p,$(E2E_PIPELINES),--run-id-file $(E2E_DIR)/$(p).run)

e2e-logs: ## On failure: KFP's pods, the workflows and the last lines of every pod in kubeflow
	-$(KUBECTL) -n kubeflow get pods -o wide
	-$(KUBECTL) -n kubeflow get workflows.argoproj.io
	-for pod in $$($(KUBECTL) -n kubeflow get pods -o name); do \
		echo "== $$pod"; $(KUBECTL) -n kubeflow logs "$$pod" --all-containers --tail=50; \
	done

e2e-down: ## Stop the port-forward and delete the kind cluster
	-test -f $(E2E_DIR)/port-forward.pid && kill $$(cat $(E2E_DIR)/port-forward.pid) && rm -f $(E2E_DIR)/port-forward.pid
	$(KIND) delete cluster --name $(E2E_CLUSTER)
