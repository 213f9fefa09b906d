# Every target works on a fresh machine that has only python3: the venv is built on demand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Bytecode caches are kept between runs, as Python keeps them by default: where the
# environment sets PYTHONDONTWRITEBYTECODE, every xdist worker and every interpreter the
# tests start would compile this tree's modules again and pytest would rewrite each test
# module's asserts again (~40 s of the suite's ~290 s of CPU on the development machine).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-quick lint typecheck bench bench-compare tox clean

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/quickstart.py

# The whole suite, on TEST_WORKERS pytest-xdist workers. Each worker collects the whole suite
# (13 s of CPU) and the suite is CPU-bound on two cores: 2 workers measured faster than 3 or
# 4 here. Work stealing hands each worker a run of consecutive tests (a module's fixtures
# are mostly made once) and moves tests from a busy worker to an idle one at the end.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal

# Every test but the slow tier (real servers, fresh interpreters: tests/conftest.py
# SLOW_MODULES and tests marked slow). `make test` and CI run everything.
test-quick: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist worksteal -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check steer_llm_sdk tests examples benchmarks
	$(VENV)/bin/ruff format --check steer_llm_sdk tests examples benchmarks
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/run.py

# The tracked call of this tree against earlier revisions, in one process (figures from
# separate runs drift more than the changes worth knowing): make bench-compare BASE="v1 HEAD~3"
BASE ?= HEAD
bench-compare: $(STAMP)
	$(PY) benchmarks/compare.py $(BASE)

# Every interpreter pyenv installed, so tox finds python3.9 ... python3.13.
PYENV_BINS := $(subst $(eval) ,:,$(wildcard $(HOME)/.pyenv/versions/3.*/bin))

tox: $(STAMP)
	PATH="$(PYENV_BINS):$$PATH" $(VENV)/bin/tox

clean:
	rm -rf $(VENV) .tox build *.egg-info .pytest_cache .mypy_cache .ruff_cache
