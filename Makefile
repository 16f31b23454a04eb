# Two commands do all set-up: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8888
CONFIG ?= config/default.toml

.PHONY: run test test-times reliability lint bench loadtest clean

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

# The example third-party plugins are installed beside the venv (--target + PYTHONPATH),
# not into it: the main run keeps seeing only the built-ins, as its tests expect.
EXAMPLE_SITE := var/example-plugins

test: $(VENV)/.installed-test
	@$(PY) -c "from kpay.core.poster_draw import font_path; assert font_path()" 2>/dev/null \
		|| { echo "no CJK font for the posters and page tests (apt-get install fonts-wqy-microhei)"; exit 1; }
	$(PY) -m ruff check .
	$(PY) -m pytest -q
	rm -rf $(EXAMPLE_SITE)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --target $(EXAMPLE_SITE) \
		examples/kpay-tips examples/kpay-coupons
	PYTHONPATH=$(EXAMPLE_SITE) $(PY) -m pytest -q examples/kpay-tips/tests
	PYTHONPATH=$(EXAMPLE_SITE) $(PY) -m pytest -q examples/kpay-coupons/tests

# The time-sensitive tests again as if it were other moments (docs/plugins.md, "Time in
# tests"): just before and after midnight, before 08:00 and on a month's last day in
# Beijing, then with the wall clock itself faked for the whole process tree (the
# embedded database too) at 02:50 Beijing time.
TIME_DIRS := tests/course_drip tests/consult_billing tests/live_qa tests/money tests/analytics \
	tests/wechat_notify tests/core/test_audience_api.py
TEST_INSTANTS := 2026-03-01T23:59:30+08:00 2026-03-02T00:00:30+08:00 \
	2026-03-02T07:59:00+08:00 2026-02-28T23:59:30+08:00
FAKE_WALL_CLOCK := @2026-03-01 18:50:00

test-times: $(VENV)/.installed-test
	@failed=""; for instant in $(TEST_INSTANTS); do \
		echo "== KPAY_TEST_NOW=$$instant"; \
		KPAY_TEST_NOW=$$instant $(PY) -m pytest -q -p no:cacheprovider $(TIME_DIRS) \
			|| failed="$$failed $$instant"; \
	done; \
	if [ -n "$$failed" ]; then echo "failed at:$$failed"; exit 1; fi
	@command -v faketime >/dev/null || { echo "faketime is not installed (apt-get install faketime)"; exit 1; }
	@echo "== wall clock faked: $(FAKE_WALL_CLOCK) UTC"
	TZ=UTC faketime -f '$(FAKE_WALL_CLOCK)' $(PY) -m pytest -q -p no:cacheprovider $(TIME_DIRS)

# The reliability suite with more examples than CI, then docs/reliability.md from its
# figures (docs/reliability.md says what each part tries).
RELIABILITY_DIR := test-output/reliability
RELIABILITY_EXAMPLES ?= 60
RELIABILITY_STEPS ?= 40
RELIABILITY_KILLS ?= 30
reliability: $(VENV)/.installed-test
	rm -rf $(RELIABILITY_DIR)
	KPAY_RELIABILITY_REPORT=$(CURDIR)/$(RELIABILITY_DIR) \
	KPAY_RELIABILITY_EXAMPLES=$(RELIABILITY_EXAMPLES) KPAY_RELIABILITY_STEPS=$(RELIABILITY_STEPS) \
	KPAY_RELIABILITY_RANDOM_KILLS=$(RELIABILITY_KILLS) KPAY_FUZZ_EXAMPLES=$(RELIABILITY_EXAMPLES) \
		$(PY) -m pytest -q -p no:cacheprovider tests/reliability
	KPAY_RELIABILITY_EXAMPLES=$(RELIABILITY_EXAMPLES) KPAY_RELIABILITY_STEPS=$(RELIABILITY_STEPS) \
		$(PY) bench/reliability_report.py $(RELIABILITY_DIR) docs/reliability.md

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .

bench: $(VENV)/.installed-test
	$(PY) bench/fanout.py --workers 1,2

# A load test of many users through the public API (docs/performance.md, "Load test").
# With URL: against that running deployment (dev mode, or TOKENS=file). Without: a dev
# server on a scratch folder is started for the run and stopped after it.
URL ?=
DURATION ?= 60
USERS ?= 200
TOKENS ?=
loadtest: $(VENV)/.installed-run
	$(PY) bench/loadtest.py $(if $(URL),--url $(URL),--start-server) \
		--duration $(DURATION) --users $(USERS) $(if $(TOKENS),--tokens $(TOKENS))

clean:
	rm -rf $(VENV) var build *.egg-info
