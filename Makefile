# Two commands do all set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8888
CONFIG ?= config/default.toml

.PHONY: run test lint bench clean

# Re-install only when the package metadata changes.
$(VENV)/.installed-run: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[embedded]'
	touch $@

$(VENV)/.installed-test: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(PY) server.py --config $(CONFIG) --port $(PORT)

# The example third-party plugin is installed beside the venv (--target + PYTHONPATH),
# not into it: the main run keeps seeing only the built-ins, as its tests expect.
EXAMPLE_SITE := var/example-plugins

test: $(VENV)/.installed-test
	$(PY) -m ruff check .
	$(PY) -m pytest -q
	rm -rf $(EXAMPLE_SITE)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --target $(EXAMPLE_SITE) \
		examples/kpay-tips
	PYTHONPATH=$(EXAMPLE_SITE) $(PY) -m pytest -q examples/kpay-tips/tests

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .

bench: $(VENV)/.installed-test
	$(PY) bench/fanout.py

clean:
	rm -rf $(VENV) var build *.egg-info
