# Every target works on a fresh machine that has only python3: the venv is built on demand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench tox clean

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/quickstart.py

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check steer_llm_sdk tests examples benchmarks
	$(VENV)/bin/ruff format --check steer_llm_sdk tests examples benchmarks
	$(VENV)/bin/lint-imports

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/run.py

# Every interpreter pyenv installed, so tox finds python3.9 ... python3.13.
PYENV_BINS := $(subst $(eval) ,:,$(wildcard $(HOME)/.pyenv/versions/3.*/bin))

tox: $(STAMP)
	PATH="$(PYENV_BINS):$$PATH" $(VENV)/bin/tox

clean:
	rm -rf $(VENV) .tox build *.egg-info .pytest_cache .mypy_cache .ruff_cache
