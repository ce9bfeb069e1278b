# One config, three ways to run. Every target sets up its own environment.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(PYTHON)
RUN := $(UV) run --frozen --no-sync
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help env env-sagemaker local-run local-tune test lint bench \
        pipeline-definition upsert-pipeline start-pipeline schedule-pipeline \
        build-image push-image run-image-local deploy-infra infra-config clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

$(UV):
	@$(PYTHON) -m venv .tools
	@.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

env: $(UV) ## Install the local-run environment (no SageMaker SDK)
	@$(UV) sync --quiet --frozen --inexact --no-dev

env-sagemaker: $(UV) ## Install everything: SageMaker SDK and test tools
	@$(UV) sync --quiet --frozen --inexact --all-extras

local-run: env ## Prepare, train and evaluate in-process (ARGS="model=glm_poisson" or ARGS="-m ...")
	$(RUN) python -m pipelines.local $(ARGS)

local-tune: env ## Search the `tuning` space on this machine and report the best configuration
	$(RUN) python -m pipelines.tune_local $(ARGS)

test: env-sagemaker ## Lint and run the test suite
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) pytest -n 2 $(ARGS)

lint: env-sagemaker ## Ruff, hadolint, cfn-lint and checkov
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) hadolint container/Dockerfile
	$(RUN) cfn-lint infra/template.yaml
	$(RUN) checkov --quiet --compact --skip-download --framework cloudformation dockerfile \
		-f infra/template.yaml -f container/Dockerfile

bench: env-sagemaker ## Benchmarks: ratios against a plain scikit-learn baseline, run side by side
	$(RUN) python -m benchmarks.run $(ARGS)

pipeline-definition: env-sagemaker ## Write the SageMaker Pipeline definition JSON (creates nothing)
	$(RUN) python -m pipelines.cli definition $(ARGS)

upsert-pipeline: env-sagemaker ## Create or update the SageMaker Pipeline
	$(RUN) python -m pipelines.cli upsert $(ARGS)

start-pipeline: env-sagemaker ## Start an execution (ARGS="--wait --param HydraOverrides='model=glm_poisson'")
	$(RUN) python -m pipelines.cli start $(ARGS)

schedule-pipeline: env-sagemaker ## Create, update or remove (ARGS=--remove) the retraining schedule
	$(RUN) python -m pipelines.cli schedule $(ARGS)

clean: ## Remove the environments (outputs are kept)
	rm -rf .venv .tools

build-image: env ## Build the shared container image (CONTAINER_TOOL=docker|finch)
	$(RUN) python -m container.image build $(ARGS)

push-image: env ## Log in to ECR and push the image to the repository named in config
	$(RUN) python -m container.image push $(ARGS)

run-image-local: env ## Run a job command in the image with a temporary /opt/ml tree (ARGS="train")
	$(RUN) python -m container.image run-local $(ARGS)

deploy-infra: env ## Deploy infra/ with CloudFormation into the current AWS account
	$(RUN) python -m infra.cli deploy $(ARGS)

infra-config: env ## Write the stack outputs into conf/sagemaker/stack.yaml
	$(RUN) python -m infra.cli config $(ARGS)

.PHONY: serve-local score-local deploy-model
serve-local: env ## Serve a model over HTTP on 127.0.0.1:8080 (ARGS="--model <run folder|model.tar.gz|execution>")
	$(RUN) python -m pipelines.serve_local $(ARGS)

score-local: env ## Score a CSV/Parquet file of policies into a new outputs/scores folder (ARGS="policies.csv")
	$(RUN) python -m pipelines.score_local $(ARGS)

deploy-model: env ## Deploy the latest Approved model package to a SageMaker endpoint (conf/deploy)
	$(RUN) python -m pipelines.deploy $(ARGS)
