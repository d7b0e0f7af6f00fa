# Two commands on a fresh machine (python3 + make): `make demo` runs the whole pipeline on synthetic bins, offline;
# `make test` runs the test suite. Each sets up its own virtual environment from the pinned requirements first.
PYTHON ?= python3
VENV := .venv
CONTAINER_VENV := .venv-container
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# Two test processes (pytest-xdist), one test file each at a time: the suite is mostly single-threaded work.
PYTEST_WORKERS ?= 2

.PHONY: demo test test-all bench bench-gpu venv browser clean

# torch goes first and pinned: an unpinned resolve pulls the newest CUDA build and several GB of nvidia packages.
$(VENV)/.ready: requirements.txt requirements-dev.txt requirements-app.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $$(grep '^torch==' requirements.txt)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q -r requirements-app.txt  # the bin-check page (gradio) and its browser test
	touch $@

# A stand-in for the SageMaker inference container (transformers 4.51.3 + the real inference toolkit).
$(CONTAINER_VENV)/.ready: inference/requirements-container.txt
	test -x $(CONTAINER_VENV)/bin/python || $(PYTHON) -m venv $(CONTAINER_VENV)
	$(CONTAINER_VENV)/bin/python -m pip install -q $$(grep '^torch==' inference/requirements-container.txt)
	$(CONTAINER_VENV)/bin/python -m pip install -q -r inference/requirements-container.txt
	touch $@

venv: $(VENV)/.ready $(CONTAINER_VENV)/.ready

# The browser test drives Debian's Chromium (no browser download). As root with apt it is installed here; elsewhere
# the test skips with a reason.
browser:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "chromium not installed: the browser test will skip (apt-get install chromium)"; fi

demo: $(VENV)/.ready
	$(PY) -m demo $(DEMO_ARGS)

test: venv browser
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-all: venv browser
	$(PY) -m pytest -m "" -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Benchmarks print Markdown tables and write bench/results/*.json; run them on a quiet machine.
BENCHES := synthetic_speed build_speed train_throughput objective handler_latency server_load
bench: $(VENV)/.ready
	for b in $(BENCHES); do $(PY) -m bench.$$b || exit 1; done

# On a machine with a CUDA GPU: training throughput of ViT-B/16 and ResNet-50, and batched inference throughput.
bench-gpu: $(VENV)/.ready
	$(PY) -m bench.train_throughput && $(PY) -m bench.inference_gpu

clean:
	rm -rf runs outputs bench/results
