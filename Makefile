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
	@$(PY) -m pip install -q --disable-pip-version-check -e ".[redis,postgres,test,demo]" 2>&1 | grep -v '^WARNING: Location' || true
	@$(PY) -c 'import django, djjobs, pytest, redis, psycopg' || { echo "Installing the Python packages failed: see the pip output above."; exit 1; }
	@touch $(STAMP)

venv: $(STAMP)

# Servers the tests start themselves (redis-server, PostgreSQL's initdb/pg_ctl):
# installed with apt-get when missing and we are root.
services:
	@bash .ci/ensure_services.sh

test: venv services
	@$(PY) -m pytest $(PYTEST_ARGS)

# The demo store: web + worker + cron on SQLite with the database adapter.
# `make demo ADAPTER=redis` runs the same on Redis (a local redis-server unless REDIS_URL is set).
ADAPTER ?= database
DEMO_REDIS_PORT ?= 6391
demo: venv
	@if [ "$(ADAPTER)" = redis ] && [ -z "$$REDIS_URL" ]; then bash .ci/ensure_services.sh; fi
	@$(PY) manage.py migrate --noinput -v 0
	@$(PY) manage.py seed_store
	@echo ""
	@echo "  Store:      http://127.0.0.1:8000/"
	@echo "  Admin:      http://127.0.0.1:8000/admin/   (user admin, password admin)"
	@echo "  Job pages:  http://127.0.0.1:8000/admin/djjobs/dashboard/"
	@echo "  Emails:     demo-mail/ (one file per message)      Ctrl-C stops everything."
	@echo ""
	@if [ "$(ADAPTER)" = redis ] && [ -z "$$REDIS_URL" ]; then \
	  DJJOBS_ADAPTER=redis REDIS_URL=redis://127.0.0.1:$(DEMO_REDIS_PORT)/0 DEMO_REDIS_PORT=$(DEMO_REDIS_PORT) \
	    PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/honcho start -f demo_store/Procfile.redis -d $(CURDIR); \
	else \
	  DJJOBS_ADAPTER=$(ADAPTER) PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/honcho start -f Procfile; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache
