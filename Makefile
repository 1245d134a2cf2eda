# The two commands a new user runs: `make up` and `make test`. Both bootstrap .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: up test lint bench bench-e2e venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

up: $(STAMP)
	$(BIN)/leadflow up

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/leadflow policy validate policies/*.yaml
	$(BIN)/leadflow policy test policies/*.yaml
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/evaluator.py

bench-e2e: $(STAMP)
	$(BIN)/python bench/e2e.py

clean:
	rm -rf $(VENV) .leadflow *.egg-info
