# Two commands: `make demo` and `make test`. Everything else here serves them.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The first interpreter >= 3.12 that actually runs (pyenv shims on PATH may fail
# unless selected, so every candidate is run, not just looked up).
PYTHON ?= $(shell for c in python3.13 python3.12 \
	  $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV) \
	  /usr/bin/python3.13 /usr/bin/python3.12 python3; do \
	  "$$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { command -v "$$c"; break; }; \
	done)

.PHONY: demo test venv services clean

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "djjobs needs Python >= 3.12 and none was found (tried python3.13, python3.12, pyenv versions, python3)."; \
	  echo "Install one (e.g. apt-get install python3.12, or pyenv install 3.12) or run: make PYTHON=/path/to/python3.12 test"; \
	  exit 1; fi
	@echo "Using $(PYTHON) ($$($(PYTHON) --version))"
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check -e ".[redis,postgres,test]" 2>&1 | grep -v '^WARNING: Location' || true
	@$(PY) -c 'import django, djjobs, pytest, redis, psycopg' || { echo "Installing the Python packages failed: see the pip output above."; exit 1; }
	@touch $(STAMP)

venv: $(STAMP)

# Servers the tests start themselves (redis-server, PostgreSQL's initdb/pg_ctl):
# installed with apt-get when missing and we are root.
services:
	@bash .ci/ensure_services.sh

test: venv services
	@$(PY) -m pytest $(PYTEST_ARGS)

demo: venv
	@$(PY) manage.py migrate --noinput -v 0
	@echo "Demo: http://127.0.0.1:8000/  (admin: http://127.0.0.1:8000/admin/)"
	@$(PY) manage.py runserver 127.0.0.1:8000

clean:
	rm -rf $(VENV) .pytest_cache
