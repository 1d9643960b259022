# One command per habit: make test, make lint, make artifact, make demo, make bench, make chaos.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test lint artifact demo bench chaos clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Three processes (each module on one of them, with Redis databases of its own): most tests wait on I/O.
test: venv
	$(PY) -m pytest -q -n 3 --dist loadfile

# The wheel as users install it, outside the source tree, running a job end to end.
artifact:
	bash .ci/artifact-smoke

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

demo: venv
	$(VENV)/bin/vuq demo

bench: venv
	$(PY) -m bench

chaos: venv
	$(PY) -m pytest -q -m chaos tests/chaos --run-chaos -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
