# One-command set-up: every target creates and fills .venv when it is missing or stale.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build of torch. GPU users: see README "GPU machines".
TORCH_SPEC ?= torch==2.13.0
TF_EXTRA   ?= tf
STAMP  := $(VENV)/.installed

# The torchvision cross-check's own environment: torchvision has no build beside the CPU
# torch 2.13.0 above, and 2.14.1 with its torchvision is about 5.5 GB (CUDA libraries
# included), which neither CI nor `make test` needs.
TV_VENV  := .venv-torchvision
TV_STAMP := $(TV_VENV)/.installed
TV_SPEC  ?= torch==2.14.1 torchvision==0.29.1
TV_TF    ?= tensorflow-cpu==2.21.0

.PHONY: setup setup-jax setup-jax-onnx run test test-slow lint perf perf-compare ci-check ci-baseline clean-venv \
	torchvision-check

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[$(TF_EXTRA),torch,dev]"
	touch $(STAMP)

setup: $(STAMP)

## The JAX backends (keras-jax, jax) into the same venv; `make test` then proves them
## against torch too. Not part of `setup`: with jax installed, TensorFlow imports it
## (tensorflow/lite/python/util.py) and holds 37 MB more after import, which the CI
## memory baseline does not (docs/ci.md).
setup-jax: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[jax]"

## ONNX export from the JAX backends (`python -m benchmarks.export` on a jax or keras-jax
## run): the `jax` extra and jax2onnx with onnxruntime (the `jax-onnx` extra). Neither
## `setup` nor `test` needs it: the JAX export tests skip without it.
setup-jax-onnx: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[jax,jax-onnx]"

## The main job: the benchmark on the embedded synthetic dataset, both backends.
run: $(STAMP)
	$(BIN)/python -m benchmarks.run --backend both --dataset synthetic

## The fast test run (what CI runs), in TEST_WORKERS pytest-xdist processes, each test file
## whole in one of them (its module fixtures built once). Two on the 2-core CI machine: the
## tests spend much of their time starting interpreters and frameworks, single-threaded,
## so two cut the run from 631 s to 366 s there (docs/ci.md). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q -n $(TEST_WORKERS) --dist loadfile

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

lint: $(STAMP)
	$(BIN)/ruff check .

## pytest-benchmark: one training step and one inference batch per card model and backend,
## saved under .benchmarks/ (docs/ci.md). perf-compare: the same, beside the last saved run.
perf: $(STAMP)
	$(BIN)/python -m pytest tests/perf -m perf -q --benchmark-autosave

perf-compare: $(STAMP)
	$(BIN)/python -m pytest tests/perf -m perf -q --benchmark-compare

## CI regression check: the `ci` preset of this tree against the baseline's commit (speed, A/B on this
## host) and against reports/baselines/ci-cpu (memory); docs/ci.md.
ci-check: $(STAMP)
	$(BIN)/python -m benchmarks.ci check $(CI_CHECK_OPTIONS)

## Rewrites the committed CI baseline from a fresh run of the `ci` preset; commit the result.
ci-baseline: $(STAMP)
	$(BIN)/python -m benchmarks.ci baseline

## The zoo against torchvision's resnet18, resnet50 and vgg16 (random weights) through
## --pretrained's loader, in both frameworks (docs/weights.md), in $(TV_VENV).
$(TV_STAMP): pyproject.toml Makefile
	test -x $(TV_VENV)/bin/python || $(PYTHON) -m venv $(TV_VENV)
	$(TV_VENV)/bin/python -m pip install -q --upgrade pip
	$(TV_VENV)/bin/python -m pip install -q $(TV_SPEC) "$(TV_TF)"
	$(TV_VENV)/bin/python -m pip install -q -e ".[tf,torch,torchvision,dev]"
	touch $(TV_STAMP)

torchvision-check: $(TV_STAMP)
	$(TV_VENV)/bin/python -m pytest tests/test_torchvision_reference.py -q -s -rs

clean-venv:
	rm -rf $(VENV)
