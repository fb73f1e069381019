# Terraform for the AWS side (docs/aws.md): format, validate, plan/apply an environment, write
# its outputs for `skinlesion` settings, and apply envs/local to a moto server.

TF ?= terraform
ENV ?= dev
TF_ENVS := dev prod local
TF_DIR := terraform
TF_BUILD ?= build/terraform
# A provider filesystem mirror (registry.terraform.io/hashicorp/aws/<version>/<os_arch>) is used
# when this folder exists; otherwise providers come from the registry.
TF_MIRROR ?= /opt/tf-plugins
TF_CLI_RC = $(TF_BUILD)/cli.tfrc
TF_PLUGIN_CACHE ?= $(abspath $(TF_BUILD)/plugin-cache)
# Validation and envs/local run on a copy under build/, so their lock files and .terraform
# folders never land in the source tree; dev and prod run in place (commit their lock files)
# unless TF_RUN_COPY=1 (the tests, which must leave the source tree as they found it).
TF_WORK = $(TF_BUILD)/work
# tf-validate has a copy of its own: `init -backend=false` reuses a backend initialised before.
TF_VALIDATE_WORK = $(TF_BUILD)/validate
TF_RUN_COPY ?=
TF_BACKEND_CONFIG ?= $(TF_DIR)/envs/$(ENV)/backend.hcl
TF_PLAN = $(abspath $(TF_BUILD)/$(ENV).tfplan)
TF_OUTPUTS ?= build/terraform-outputs-$(ENV).json
MOTO_ENDPOINT ?= http://127.0.0.1:5000
TF_LOCAL_STATE ?= $(abspath $(TF_BUILD)/local.tfstate)
CHECKOV_VENV ?= .venv-tools/checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov

TF_ENV_VARS = TF_IN_AUTOMATION=1 TF_INPUT=0 TF_PLUGIN_CACHE_DIR=$(TF_PLUGIN_CACHE) \
	$(if $(wildcard $(TF_MIRROR)),TF_CLI_CONFIG_FILE=$(abspath $(TF_CLI_RC)))
# The root a command runs in: a fresh copy for local, the source folder for dev and prod.
tf_copied = $(or $(filter local,$(1)),$(TF_RUN_COPY))
tf_root = $(if $(call tf_copied,$(1)),$(TF_WORK)/envs/$(1),$(TF_DIR)/envs/$(1))
tf = $(TF_ENV_VARS) $(TF) -chdir=$(call tf_root,$(1))
tf_vars = $(if $(filter local,$(1)),-var=moto_endpoint=$(MOTO_ENDPOINT))

.PHONY: tf-fmt tf-fmt-check tf-validate tf-init tf-plan tf-apply tf-outputs tf-local-up \
	tf-local-down tf-checkov tools-checkov tf-check _tf-setup _tf-copy _tf-check-env

_tf-setup:
	@mkdir -p $(TF_BUILD) $(TF_PLUGIN_CACHE)
	@if [ -d "$(TF_MIRROR)" ]; then printf '%s\n' \
		'provider_installation {' \
		'  filesystem_mirror {' \
		'    path    = "$(abspath $(TF_MIRROR))"' \
		'    include = ["registry.terraform.io/hashicorp/*"]' \
		'  }' \
		'  direct {' \
		'    exclude = ["registry.terraform.io/hashicorp/*"]' \
		'  }' \
		'}' > $(TF_CLI_RC); fi

# Copy the Terraform sources (not tfvars or state) to $(1), dropping .tf files deleted since.
tf_copy_to = mkdir -p $(1) && find $(1) -name '*.tf' -type f -delete && \
	cd $(TF_DIR) && find . -name '*.tf' -o -name '*.tfvars.example' -o -name '*.hcl.example' | \
	while read -r f; do mkdir -p "$(abspath $(1))/$$(dirname "$$f")"; \
	cp -p "$$f" "$(abspath $(1))/$$f"; done

_tf-copy: _tf-setup
	@$(call tf_copy_to,$(TF_WORK))

_tf-check-env:
	@case " $(TF_ENVS) " in *" $(ENV) "*) ;; *) echo "Invalid ENV '$(ENV)'. Accepted: $(TF_ENVS)." >&2; exit 2;; esac

tf-fmt: ## Format every Terraform file in place
	$(TF) fmt -recursive $(TF_DIR)

tf-fmt-check: ## Fail when a Terraform file is not formatted (terraform fmt -check)
	$(TF) fmt -check -recursive -diff $(TF_DIR)

tf-validate: _tf-setup ## terraform init -backend=false and validate for every root in terraform/envs
	@$(call tf_copy_to,$(TF_VALIDATE_WORK))
	@set -e; for env in $(TF_ENVS); do \
		echo "== terraform validate envs/$$env"; \
		$(TF_ENV_VARS) $(TF) -chdir=$(TF_VALIDATE_WORK)/envs/$$env init -backend=false -input=false -no-color >/dev/null; \
		$(TF_ENV_VARS) $(TF) -chdir=$(TF_VALIDATE_WORK)/envs/$$env validate -no-color; \
	done

tf-init: _tf-check-env _tf-setup $(if $(call tf_copied,$(ENV)),_tf-copy) ## terraform init ENV=dev|prod|local (dev/prod read terraform/envs/<env>/backend.hcl)
ifeq ($(ENV),local)
	$(call tf,local) init -input=false -reconfigure -backend-config=path=$(TF_LOCAL_STATE)
else
	@test -f "$(TF_BACKEND_CONFIG)" || { echo "No $(TF_BACKEND_CONFIG): copy $(TF_DIR)/envs/$(ENV)/backend.hcl.example to it and fill in the state bucket (docs/aws.md)." >&2; exit 2; }
	$(call tf,$(ENV)) init -input=false -reconfigure -backend-config=$(abspath $(TF_BACKEND_CONFIG))
endif

tf-plan: tf-init ## terraform plan ENV=dev|prod|local, saved to build/terraform/<env>.tfplan
	$(call tf,$(ENV)) plan -input=false $(call tf_vars,$(ENV)) -out=$(TF_PLAN)

tf-apply: _tf-check-env ## Apply the plan that `make tf-plan ENV=...` saved (review it first)
	@test -f "$(TF_PLAN)" || { echo "No saved plan $(TF_PLAN): run 'make tf-plan ENV=$(ENV)' and review it first." >&2; exit 2; }
	$(call tf,$(ENV)) apply -input=false $(TF_PLAN)
	rm -f $(TF_PLAN)

tf-outputs: _tf-check-env _tf-setup ## Write terraform output -json of ENV to build/terraform-outputs-<env>.json
	@mkdir -p $(dir $(TF_OUTPUTS))
	$(call tf,$(ENV)) output -json > $(TF_OUTPUTS).tmp
	mv $(TF_OUTPUTS).tmp $(TF_OUTPUTS)
	@echo "wrote $(TF_OUTPUTS)"

tf-local-up: ## Apply terraform/envs/local to the moto server at MOTO_ENDPOINT (default http://127.0.0.1:5000)
	$(MAKE) --no-print-directory tf-init ENV=local
	$(call tf,local) apply -input=false -auto-approve $(call tf_vars,local)

tf-local-down: ## Destroy what tf-local-up created on the moto server at MOTO_ENDPOINT
	$(MAKE) --no-print-directory tf-init ENV=local
	$(call tf,local) destroy -input=false -auto-approve $(call tf_vars,local)

$(CHECKOV): tools/checkov/requirements.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet -r tools/checkov/requirements.txt
	touch $@

tools-checkov: $(CHECKOV) ## Install checkov into its own venv (.venv-tools/checkov; it pins an old boto3)

tf-checkov: $(CHECKOV) ## Run checkov over terraform/ (inline skips only, each with its reason)
	$(CHECKOV) --directory $(TF_DIR) --framework terraform --compact --quiet --skip-download

tf-check: tf-fmt-check tf-validate tf-checkov ## fmt -check, validate and checkov for the Terraform code
