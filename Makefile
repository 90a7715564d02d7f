# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv if missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

LOCK := requirements.lock

.PHONY: setup setup-unlocked lock demo ablations ablations-quick test test-slow lint format clean

# The locked releases (every package, with its sha256), then sce itself on top of them.
$(STAMP): setup.cfg setup.py requirements.txt $(LOCK)
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip wheel setuptools
	$(BIN)/pip install --require-hashes -r $(LOCK)
	$(BIN)/pip install --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# Another platform or newer releases: resolve requirements.txt freely (`sce demo` then says which
# versions differ from the lock).
setup-unlocked:
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip wheel setuptools
	$(BIN)/pip install -r requirements.txt
	touch $(STAMP)

# Re-resolve requirements.txt to today's releases and rewrite the lock (then re-run `make demo`
# and re-pin the README's table: the lock and the figures change together).
lock: $(STAMP)
	$(BIN)/pip install --dry-run --ignore-installed --quiet --report $(VENV)/lock-report.json -r requirements.txt
	$(BIN)/python -m sce.common.versions $(VENV)/lock-report.json

demo: $(STAMP)
	$(BIN)/sce demo

# issue 17: IMU dropout, class balancing, fps on synthetic data, 3 seeds (< 60 min on 2 cores)
ablations: $(STAMP)
	$(BIN)/python -m sce.studies.ablations

# the same directions once each, small: minutes (checks the path and the table, not the effects)
ablations-quick: $(STAMP)
	$(BIN)/python -m sce.studies.ablations --quick

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
