# Two commands do all set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8888
CONFIG ?= config/default.toml

.PHONY: run test lint bench install install-test clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

install: $(VENV)/bin/activate
	$(PY) -m pip install --quiet -e '.[embedded]'

install-test: $(VENV)/bin/activate
	$(PY) -m pip install --quiet -e '.[test]'

run: install
	$(PY) server.py --config $(CONFIG) --port $(PORT)

test: install-test
	$(PY) -m ruff check .
	$(PY) -m pytest -q

lint: install-test
	$(PY) -m ruff check .

bench: install-test
	$(PY) bench/fanout.py

clean:
	rm -rf $(VENV) var build *.egg-info
