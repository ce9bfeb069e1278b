# One config, three ways to run. Every target sets up its own environment.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
# The environment's folder; another one per Python version keeps them apart
# (make local-run PYTHON=python3.13 VENV=.venv-3.13).
VENV ?= .venv
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Install precompiled bytecode: where PYTHONDONTWRITEBYTECODE=1 is set, every
# run would otherwise compile the libraries' source again (seconds per run).
export UV_COMPILE_BYTECODE ?= 1
RUN := $(UV) run --frozen --no-sync
ARGS ?=
# Python versions the project supports; `make test-pythons` runs on each one found.
PYTHONS := 3.11 3.12 3.13

.DEFAULT_GOAL := help
.PHONY: help env env-sagemaker local-run local-tune test test-fast check test-pythons lint bench \
        pipeline-definition upsert-pipeline start-pipeline schedule-pipeline \
        base-image build-image push-image run-image-local test-image deploy-infra infra-config clean \
        local-pipeline local-pipeline-clean cloud-run cloud-tune cloud-status cloud-fetch replay

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

$(UV):
	@$(PYTHON) -m venv .tools
	@.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

env: $(VENV)/.installed-runtime ## Install the local-run environment (no SageMaker SDK)

env-sagemaker: $(VENV)/.installed-all ## Install everything: SageMaker SDK and test tools

# Stamps: the environment is synced (and compiled) again only when the lock changes.
$(VENV)/.installed-runtime: $(UV) pyproject.toml uv.lock
	@$(UV) sync --quiet --frozen --inexact --no-dev
	@touch $@

$(VENV)/.installed-all: $(UV) pyproject.toml uv.lock
	@$(UV) sync --quiet --frozen --inexact --all-extras
	@touch $@ $(VENV)/.installed-runtime

local-run: env ## Prepare, train and evaluate in-process (ARGS="model=glm_poisson" or ARGS="-m ...")
	$(RUN) python -m pipelines.local.run $(ARGS)

local-tune: env ## Search the `tuning` space on this machine and report the best configuration
	$(RUN) python -m pipelines.local.tune $(ARGS)

# One OpenMP thread per test worker: two workers already use both cores.
PYTEST := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(RUN) pytest -n 2

test: check ## The static checks and the whole test suite (what CI runs)
	$(PYTEST) $(ARGS)

test-fast: env-sagemaker ## Ruff and every test not marked slow: the inner loop
	$(RUN) ruff check .
	$(PYTEST) -m "not slow" $(ARGS)

check: env-sagemaker ## Ruff, the format check, the import contracts, dead code and types
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) lint-imports
	$(RUN) vulture
	$(RUN) mypy

test-pythons: $(UV) ## A small `make local-run` on every supported Python this machine has
	@PYTHON=$(PYTHON) .ci/pythons $(PYTHONS)

lint: check ## The static checks, hadolint, cfn-lint and checkov
	$(RUN) hadolint container/Dockerfile
	$(RUN) cfn-lint infra/template.yaml
	@# checkov is not installed on Python 3.13 (pyproject.toml says why).
	@if [ -x $(VENV)/bin/checkov ]; then \
		$(RUN) checkov --quiet --compact --skip-download --framework cloudformation dockerfile \
			-f infra/template.yaml -f container/Dockerfile; \
	else echo "checkov: not installed on this Python version, skipped"; fi

bench: env-sagemaker ## Benchmarks: ratios against a plain scikit-learn baseline, run side by side
	$(RUN) python -m benchmarks.run $(ARGS)

.PHONY: bench-models
bench-models: env ## d2_ratio and time of every model, 3 seeds, 1x and 10x rows (ARGS="--factors 0.1,1")
	$(RUN) python -m benchmarks.models $(ARGS)

pipeline-definition: env-sagemaker ## Write the SageMaker Pipeline definition JSON (creates nothing)
	$(RUN) python -m pipelines.sagemaker.cli definition $(ARGS)

upsert-pipeline: env-sagemaker ## Create or update the SageMaker Pipeline
	$(RUN) python -m pipelines.sagemaker.cli upsert $(ARGS)

start-pipeline: env-sagemaker ## Start an execution (ARGS="--wait --param HydraOverrides='model=glm_poisson'")
	$(RUN) python -m pipelines.sagemaker.cli start $(ARGS)

schedule-pipeline: env-sagemaker ## Create, update or remove (ARGS=--remove) the retraining schedule
	$(RUN) python -m pipelines.sagemaker.cli schedule $(ARGS)

local-pipeline: env-sagemaker ## Execute the pipeline definition here, as SageMaker would (ARGS="--param QualityThreshold=0.5 pipeline=tune")
	$(RUN) python -m pipelines.sagemaker.local_pipeline $(ARGS)

cloud-run: env-sagemaker ## One run as one SageMaker training job (ARGS="model=glm_poisson", "--local ...", "-m ...", "--detach ...", "--logs ...")
	$(RUN) python -m pipelines.sagemaker.cloud_cli run $(ARGS)

cloud-tune: env-sagemaker ## A SageMaker tuning job of the `tuning` config; prints the best overrides (ARGS="--local ...")
	$(RUN) python -m pipelines.sagemaker.cloud_cli tune $(ARGS)

replay: env-sagemaker ## Run a SageMaker training or processing job here, inputs and all (ARGS="<job name>" or "<execution ARN> <step>"; --container podman)
	$(RUN) python -m pipelines.sagemaker.cloud_cli replay $(ARGS)

cloud-status: env-sagemaker ## The jobs of a cloud sweep and their status (ARGS="<sweep id>")
	$(RUN) python -m pipelines.sagemaker.cloud_cli status $(ARGS)

cloud-fetch: env-sagemaker ## Download a cloud sweep's finished jobs into outputs/cloud/ (ARGS="<sweep id>")
	$(RUN) python -m pipelines.sagemaker.cloud_cli fetch $(ARGS)

local-pipeline-clean: env ## Remove old local pipeline executions and what they stored (ARGS="--keep 3")
	$(RUN) python -m executor clean $(ARGS)

clean: ## Remove the environments (outputs are kept)
	rm -rf .venv .venv-3.* .tools

base-image: env ## Build a stand-in base image from Debian packages, for machines without registry access
	$(RUN) python -m infra.image base $(ARGS)

build-image: env ## Build the job image (engine: docker, podman or finch; CONTAINER_TOOL picks one)
	$(RUN) python -m infra.image build $(ARGS)

push-image: env ## Push the image built from this commit to ECR and record it for upsert
	$(RUN) python -m infra.image push $(ARGS)

run-image-local: env ## Run a job command in the image with a temporary /opt/ml tree (ARGS="train")
	$(RUN) python -m infra.image run-local $(ARGS)

test-image: env-sagemaker ## Build the image (BASE=<image> to build on another base) and run its contract tests
	$(RUN) python -m infra.image build $(if $(BASE),--base $(BASE)) $(if $(CA_BUNDLE),--ca-bundle $(CA_BUNDLE))
	IMAGE_UNDER_TEST=$$($(RUN) python -m infra.image name) $(RUN) pytest tests/image tests/serve/test_serve_http.py -n 0 $(ARGS)

deploy-infra: env ## Deploy infra/ with CloudFormation into the current AWS account
	$(RUN) python -m infra.cli deploy $(ARGS)

infra-config: env ## Write the stack outputs into conf/sagemaker/stack.yaml
	$(RUN) python -m infra.cli config $(ARGS)

.PHONY: serve-local score-local deploy-model
serve-local: env ## Serve a model over HTTP on 127.0.0.1:8080 (ARGS="--model <run folder|model.tar.gz|execution>")
	$(RUN) python -m pipelines.local.serve $(ARGS)

score-local: env ## Score a CSV/Parquet file of policies into a new outputs/scores folder (ARGS="policies.csv")
	$(RUN) python -m pipelines.local.score $(ARGS)

deploy-model: env ## Deploy the latest Approved model package to a SageMaker endpoint (conf/deploy)
	$(RUN) python -m pipelines.sagemaker.deploy $(ARGS)
