# SadTalker Lab — fresh-machine entry points.
#   make test   set up (venv, pinned torch, the project) and run the unit, parity and notebook tests
#               (pytest-xdist on $(WORKERS) processes; notebooks with CI-sized parameters: tests/test_notebooks.py)
#   make lint   ruff (settings in pyproject.toml)
#   make main   set up and run the workbench end to end on its offline defaults (writes runs/<date>/report.html)
#   make lab    set up and open JupyterLab on the notebook series
#   make bench  run the speed / memory benchmarks (tables under benchmarks/results/; BENCH_ARGS=--quick: ~10 min)
#   make test-browser  notebook 08 in JupyterLab in headless Chromium: run it, move its widgets, check the plot
#               redraws (screenshots in runs/browser/; a few minutes; not part of `make test`)
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.sadtalker-lab-installed
WORKERS ?= 2
# --max-worker-restart 0: a test that kills its worker (a native crash) fails the run at once; with replacement
# workers, a CI run of session 33 sat idle after such a crash until it was killed 28 minutes later
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider -n $(WORKERS) --dist loadfile --max-worker-restart 0

.PHONY: setup system-deps lint test test-unit test-notebooks test-browser main lab bench clean

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned, so that no resolver pulls another torch
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[test,notebooks,train]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

# espeak-ng (speech synthesis for the default corpus) and ffmpeg-free audio I/O libs come from Debian.
system-deps:
	@if ! ldconfig -p | grep -q libespeak-ng.so.1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null; \
	  else echo "espeak-ng is missing: run 'sudo apt-get install espeak-ng' (needed for the default corpus)"; fi; \
	fi

lint: setup
	$(BIN)/ruff check .

test: setup
	$(PYTEST) --durations=20 tests

test-unit: setup
	$(PYTEST) tests --ignore=tests/test_notebooks.py

test-notebooks: setup
	$(PYTEST) --durations=10 tests/test_notebooks.py

# Debian's chromium + chromium-driver (apt, as root) and selenium (the `browser` extra); the driver is used by path,
# so Selenium Manager never downloads a browser.
test-browser: setup
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "chromium / chromedriver are missing: run 'sudo apt-get install chromium chromium-driver'"; exit 1; fi; \
	fi
	$(BIN)/python -c 'import selenium' 2>/dev/null || $(BIN)/python -m pip install -q -e '.[browser]'
	$(BIN)/python tests/browser/check_notebook08.py --out runs/browser

main: setup
	$(BIN)/sadtalker-lab main

lab: setup
	$(BIN)/jupyter lab notebooks/ $$(if [ "$$(id -u)" = 0 ]; then echo --allow-root; fi)

bench: setup
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
