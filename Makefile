# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv if missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo ablations test test-slow lint format clean

$(STAMP): setup.cfg setup.py requirements.txt
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip wheel setuptools
	$(BIN)/pip install -r requirements.txt
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/sce demo

# issue 17: IMU dropout, class balancing, fps on synthetic data, 3 seeds (< 60 min on 2 cores)
ablations: $(STAMP)
	$(BIN)/python -m sce.studies.ablations

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow"

lint: $(STAMP)
	$(BIN)/ruff check sce tests benchmarks
	$(BIN)/ruff format --check sce tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format sce tests benchmarks
	$(BIN)/ruff check --fix sce tests benchmarks

clean:
	rm -rf runs .pytest_cache
