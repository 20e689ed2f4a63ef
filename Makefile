# citybrain developer entry points. `make` alone lists them.
# Uses the active virtualenv, else ./.venv (created and installed on first use).

SHELL := /bin/bash
.DEFAULT_GOAL := help

KAFKA_PORT ?= 9092
REDIS_PORT ?= 6379
export KAFKA_PORT REDIS_PORT

ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := .venv
endif
BIN := $(VENV)/bin
PY := $(BIN)/python
# uv installs exactly what uv.lock pins (with hashes) into $(VENV); uv itself is bootstrapped
# with pip from scripts/uv-bootstrap.txt, which pins the same uv version by hash.
UV := $(BIN)/uv
export UV_PROJECT_ENVIRONMENT := $(abspath $(VENV))
export PATH := $(abspath $(BIN)):$(PATH)

LINT_PATHS := services simulators bench tests scripts
TYPED_PATHS := services simulators
PYTEST_ARGS ?=
# One pytest run, so one summary line counts every test; unit tests go first to fail fast.
# Every >>> example in services/ and simulators/ runs too (--doctest-modules), with the units.
DOCTEST_PATHS := services simulators
TEST_SUITES := tests/unit $(DOCTEST_PATHS) tests/e2e tests/integration tests/scenarios
ARGS ?=

.PHONY: help venv lock run test test-unit infra-up infra-down lint bench clean

help: ## List the targets
	@echo "citybrain make targets (KAFKA_PORT=$(KAFKA_PORT) REDIS_PORT=$(REDIS_PORT)):"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "} {printf "  %-11s %s\n", $$1, $$2}'

venv: ## Create the virtualenv, or bring it to exactly uv.lock (fails if pyproject.toml and uv.lock disagree)
	@test -x $(PY) || python3 -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install -q --no-deps --require-hashes -r scripts/uv-bootstrap.txt
	@$(UV) sync --locked --quiet

lock: venv ## Re-resolve uv.lock from pyproject.toml on purpose (newest allowed versions)
	$(UV) lock --upgrade
	{ echo "# uv itself, as pinned in uv.lock: written by make lock"; \
	  $(UV) export --quiet --frozen --only-group dev --no-emit-project --format requirements-txt \
		| awk '/^uv==/ {keep = 1; print; next} /^[^ ]/ {keep = 0} keep'; } > scripts/uv-bootstrap.txt
	$(MAKE) --no-print-directory venv

run: venv ## Run the whole pipeline on embedded defaults (dashboard on :8080); ARGS=... passes flags
	$(BIN)/citybrain run $(ARGS)

test: venv ## All tests: infra-up, pytest (unit first, then e2e, integration, scenarios), infra-down
	@trap '$(MAKE) --no-print-directory infra-down' EXIT; trap 'exit 130' INT TERM; \
	$(MAKE) --no-print-directory infra-up || exit $$?; \
	$(PY) -m pytest --doctest-modules $(wildcard $(TEST_SUITES)) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

test-unit: venv ## Unit tests and doctests only; no Kafka or Redis needed
	@$(PY) -m pytest --doctest-modules tests/unit $(DOCTEST_PATHS) $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; exit $$rc

infra-up: venv ## Start local Kafka on KAFKA_PORT and Redis on REDIS_PORT; waits until ready
	@scripts/infra-up.sh

infra-down: ## Stop local Kafka and Redis and delete their data
	@scripts/infra-down.sh

lint: venv ## ruff check, ruff format --check, mypy --strict
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy --strict $(TYPED_PATHS)

bench: venv ## Run every bench/*.py (JSON to bench/results/); the pipeline bench needs infra-up
	@mkdir -p bench/results
	@trap '$(MAKE) --no-print-directory infra-down' EXIT; trap 'exit 130' INT TERM; \
	$(MAKE) --no-print-directory infra-up || exit $$?; \
	set -e; for b in bench/[a-z]*.py; do \
		[ -e "$$b" ] || continue; \
		echo "==> $$b"; $(PY) "$$b"; \
	done

clean: infra-down ## Stop infra; remove .local, caches and build files (keeps the venv)
	rm -rf .local build .mypy_cache .ruff_cache .pytest_cache *.egg-info
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
