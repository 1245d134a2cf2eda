# The two commands a new user runs: `make up` and `make test`. Both bootstrap .venv.
# `make check` is the inner loop while changing code: lint, types, unit and workflow tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# One venv, two stamps: what `leadflow up` runs (pip install -e .), then the test tools on top
# (pip install -e '.[dev]'): `make up` needs no test-only package.
RUNTIME := $(VENV)/.runtime-stamp
STAMP   := $(VENV)/.installed-stamp
# Python 3.13, for the engine tests on the newest interpreter durable-rules needs patching for
PY313  ?= $(shell for p in $$HOME/.pyenv/versions/3.13*/bin/python3.13 $$(command -v python3.13); do \
             $$p -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && echo $$p && break; done)
VENV313 := .venv-3.13
# 1 when .venv itself runs Python 3.13 (e.g. `make test PYTHON=python3.13`, or a host whose python3
# is 3.13): the whole suite then runs on 3.13 and no second venv is built
MAIN313 = $(shell $(BIN)/python -c 'import sys; print(1 if sys.version_info[:2] == (3, 13) else "")' 2>/dev/null)

.PHONY: up check check-unit check-workflows test test-unit-workflows test-service test-e2e test-py313 test-venv313 fuzz chaos soak-exits soak-lifecycle lint bench bench-e2e bench-size bench-intake bench-collect bench-delivery bench-backtest bench-retention bench-prune venv clean

$(RUNTIME): pyproject.toml patches/install_durable_rules.py patches/durable-rules-2.0.28-python3.13.patch
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python patches/install_durable_rules.py
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# the whole venv, test tools included
venv: $(STAMP)

up: $(RUNTIME)
	$(BIN)/leadflow up

# Under two minutes on a 2-core machine: lint, types, and the tests that need no HTTP stack (the
# markers of tests/unit/ and tests/workflows/, see tests/__init__.py), the two kinds at once, each
# printing its output when it ends. `make test` runs all of it and the rest (service, e2e).
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	@$(MAKE) --no-print-directory -j2 --output-sync=target check-unit check-workflows

# (the inner loop tries 4 generated histories per policy variant against the simulation; make test 12)
check-unit check-workflows: check-%: $(STAMP)
	LEADFLOW_LIFECYCLE_EXAMPLES=$${LEADFLOW_LIFECYCLE_EXAMPLES:-4} $(BIN)/python -m pytest -q -m $*

# What CI runs: everything, the slowest 15 tests named at the end of each part of the suite.
# Three parts run at once, each printing its output when it ends: the tests of `make check`
# (unit, workflows), which keep a core busy, and the two kinds on an HTTP stack or processes of
# their own (service, e2e), which mostly wait on servers, retries and subprocesses; two cores
# get through the three in little more than the longest one's time. The Python 3.13 venv builds
# in the background meanwhile (a minute of pip), its result waited for by test-py313.
test: $(STAMP)
	@rm -f $(VENV313).build.rc $(VENV313).build.pid
	@if [ -n "$(PY313)" ] && [ -z "$(MAIN313)" ]; then ($(MAKE) --no-print-directory $(VENV313)/.installed-stamp \
	    > $(VENV313).build.log 2>&1; echo $$? > $(VENV313).build.rc) & echo $$! > $(VENV313).build.pid; fi
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/leadflow policy validate policies/*.yaml
	$(BIN)/leadflow policy test policies/*.yaml
	$(BIN)/leadflow form validate forms/*.yaml
	@$(MAKE) --no-print-directory -j3 --output-sync=target test-unit-workflows test-service test-e2e
	$(MAKE) --no-print-directory test-py313

# (test's parts; every test has one of the four markers, tests/conftest.py)
test-unit-workflows: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15 -m 'unit or workflows'

test-service test-e2e: test-%: $(STAMP)
	$(BIN)/python -m pytest -q --durations=15 -m $*

$(VENV313)/.installed-stamp: pyproject.toml patches/install_durable_rules.py patches/durable-rules-2.0.28-python3.13.patch
	$(PY313) -m venv $(VENV313)
	$(VENV313)/bin/python -m pip install --quiet --upgrade pip
	$(VENV313)/bin/python patches/install_durable_rules.py
	$(VENV313)/bin/python -m pip install --quiet -e . pytest hypothesis
	touch $@

# The engine-safety and evaluator tests again on Python 3.13 (durable-rules patched for it).
test-py313:
	@if [ -n "$(MAIN313)" ]; then echo "test-py313: .venv is Python 3.13 itself; the whole suite ran on 3.13"; \
	elif [ -z "$(PY313)" ]; then \
	    echo "test-py313: no python3.13 on this machine (PATH or pyenv); the 3.13 engine tests did not run"; \
	else $(MAKE) --no-print-directory test-venv313; fi

# (test-py313's work) wait for the background build of .venv-3.13, then the tests in it
test-venv313:
	@if [ -f $(VENV313).build.pid ]; then \
	    while [ ! -f $(VENV313).build.rc ] && kill -0 $$(cat $(VENV313).build.pid) 2>/dev/null; do sleep 1; done; fi
	@if [ -f $(VENV313).build.rc ] && [ "$$(cat $(VENV313).build.rc)" != 0 ]; then \
	    cat $(VENV313).build.log; echo "test-py313: the Python 3.13 venv did not build"; exit 1; fi
	$(MAKE) --no-print-directory $(VENV313)/.installed-stamp
	$(VENV313)/bin/python -m pytest -q -p no:cacheprovider tests/unit/test_engine_safety.py tests/unit/test_evaluator.py tests/unit/test_numbers.py

# Longer fuzzing than `make test` runs, from fresh random seeds: a crash found becomes a case in
# tests/unit/test_fuzz.py.
fuzz: $(STAMP)
	LEADFLOW_FUZZ_EXAMPLES=$${LEADFLOW_FUZZ_EXAMPLES:-3000} LEADFLOW_FUZZ_RANDOM=1 $(BIN)/python -m pytest -q tests/unit/test_fuzz.py

# 1,000 leads through the API while workers (10 times) and the Temporal server (twice) are killed
# with SIGKILL; `make test` runs a short version (tests/e2e/test_chaos.py).
chaos: $(STAMP)
	$(BIN)/python chaos/run.py

# Every client command 30 times over (LEADFLOW_EXIT_RUNS) with the cores kept busy, an abort at
# interpreter shutdown being one in many exits, on a machine kept busy; `make test` runs each 4
# times beside one busy loop and the rest of the suite (tests/service/test_cli_exit.py).
soak-exits: $(STAMP)
	LEADFLOW_EXIT_RUNS=$${LEADFLOW_EXIT_RUNS:-30} LEADFLOW_EXIT_BUSY=$${LEADFLOW_EXIT_BUSY:-2} \
	    $(BIN)/python -m pytest -q tests/service/test_cli_exit.py

# Live workflows against the simulation on 200 generated histories per policy variant
# (LEADFLOW_LIFECYCLE_EXAMPLES); `make test` runs 12 (tests/workflows/test_lifecycle_agrees.py).
soak-lifecycle: $(STAMP)
	LEADFLOW_LIFECYCLE_EXAMPLES=$${LEADFLOW_LIFECYCLE_EXAMPLES:-200} $(BIN)/python -m pytest -q \
		tests/workflows/test_lifecycle_agrees.py -k same_steps

# The benches need only what `leadflow up` runs; `make test` runs each one briefly
# (tests/e2e/test_bench_smoke.py) so none rots unseen.
bench: $(RUNTIME)
	$(BIN)/python bench/evaluator.py

bench-e2e: $(RUNTIME)
	$(BIN)/python bench/e2e.py

bench-size: $(RUNTIME)
	$(BIN)/python bench/policy_size.py

bench-intake: $(RUNTIME)
	$(BIN)/python bench/intake.py

bench-collect: $(RUNTIME)
	$(BIN)/python bench/collect.py

bench-delivery: $(RUNTIME)
	$(BIN)/python bench/delivery.py

bench-backtest: $(RUNTIME)
	$(BIN)/python bench/backtest.py

bench-retention: $(RUNTIME)
	$(BIN)/python bench/retention.py

bench-prune: $(RUNTIME)
	$(BIN)/python bench/prune.py

clean:
	rm -rf $(VENV) $(VENV313) .leadflow *.egg-info
