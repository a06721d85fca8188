# One-command set-up: every target creates and fills .venv when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build of torch. GPU users: see README "GPU machines".
TORCH_SPEC ?= torch==2.13.0
TF_EXTRA   ?= tf
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-slow lint ci-check ci-baseline clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[$(TF_EXTRA),torch,dev]"
	touch $(STAMP)

setup: $(STAMP)

## The main job: the benchmark on the embedded synthetic dataset, both backends.
run: $(STAMP)
	$(BIN)/python -m benchmarks.run --backend both --dataset synthetic

## The fast test run (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

lint: $(STAMP)
	$(BIN)/ruff check .

## CI regression check (work in progress, not yet in .ci/run): the `ci` preset against
## the baseline in reports/baselines/ci-cpu.
ci-check: $(STAMP)
	$(BIN)/python -m benchmarks.ci check

## Rewrites the CI baseline from a fresh run of the `ci` preset; review and commit the result.
ci-baseline: $(STAMP)
	$(BIN)/python -m benchmarks.ci baseline

clean-venv:
	rm -rf $(VENV)
