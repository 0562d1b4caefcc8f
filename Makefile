# opsdash — every task a newcomer needs is one target here.
#   make demo   run the whole product on the embedded profile (no services needed)
#   make up     the same processes against PostgreSQL, RabbitMQ and Redis (services profile)
#   make test   ruff, mypy and pytest (integration tests use the services when they are up)

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synced
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never

.PHONY: demo up test lint typecheck pytest install migrate bench screenshots clean

install: $(STAMP)

# A virtual environment from a Python >= 3.12 found on this machine, then the locked packages.
$(STAMP): pyproject.toml uv.lock .ci/find-python
	@interp=$$(sh .ci/find-python) || exit 1; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then \
		rm -rf $(VENV); "$$interp" -m venv $(VENV) || exit 1; fi
	$(PY) -m pip install --quiet --disable-pip-version-check "uv>=0.8"
	$(VENV)/bin/uv sync --frozen --inexact --python $(PY) --quiet
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) manage.py demo

up: $(STAMP)
	OPSDASH_PROFILE=services $(PY) manage.py demo

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy .

pytest: $(STAMP)
	@eval "$$($(PY) .ci/probe-services)" && $(VENV)/bin/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# The three benchmarks of the issues, on the services profile; each prints one JSON line.
bench: $(STAMP)
	$(PY) bench/delivery.py --recipients 100000 --json
	$(PY) bench/delivery.py --recipients 1000000 --launch-only --json
	$(PY) bench/import.py --rows 1000000 --json
	$(PY) bench/admin.py --json

# Refreshes docs/screenshots/ from the browser test of the staff journey.
screenshots: $(STAMP)
	@eval "$$($(PY) .ci/probe-services)" && OPSDASH_SCREENSHOT_DIR=docs/screenshots \
		$(VENV)/bin/pytest tests/browser -p no:cacheprovider

clean:
	rm -rf $(VENV) var .mypy_cache .pytest_cache .ruff_cache
