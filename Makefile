# refgov — one command to set up and run the demo, one to run the tests (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG := psql -h 127.0.0.1 -U postgres
# python3-venv, python3-dev and gcc: Debian's Python makes the venv and builds mysqlclient (no wheel for Linux).
DEBIAN_PACKAGES := libmariadb-dev pkg-config gettext postgresql-client mariadb-client chromium fonts-wqy-zenhei \
	redis-server python3-venv python3-dev gcc
DB_NAME ?= refgov
# the packages whose types mypy checks (pyproject.toml [tool.mypy])
MYPY_PACKAGES := refgov reference pipeline stewardship operations refgov_api
export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/$(DB_NAME)
export LEGACY_MYSQL_URL ?= mysql://root@127.0.0.1:3306

.PHONY: demo qcluster test check deps system-deps services venv db bench-preload bench-facts bench-admin bench-suggestions bench-converge bench-key-rules bench-api
# A recipe that fails leaves no target behind (no half-made venv marked installed).
.DELETE_ON_ERROR:

## demo: install, create the databases, migrate, load the demo legacy data, preload, start the admin on :8000
demo: deps venv services db
	$(PY) manage.py migrate --no-input
	$(PY) manage.py demo_data
	$(PY) manage.py preload
	$(PY) manage.py process_facts --domain annuity_performance var/demo/inbox/*.xlsx
	$(PY) manage.py process_facts --domain annuity_income var/demo/inbox/*.xlsx
	$(PY) manage.py demo_users
	@echo "admin: http://127.0.0.1:8000/admin/  (login steward / $${REFGOV_DEMO_PASSWORD:-refgov-demo})"
	$(PY) manage.py runserver 127.0.0.1:8000

## qcluster: the schedules from the config, then the django-q2 workers (second terminal next to `make demo`)
qcluster: venv services db
	$(PY) manage.py migrate --no-input
	$(PY) manage.py setup_schedules
	$(PY) manage.py qcluster

## test: the whole test suite against real PostgreSQL and MariaDB
test: deps venv services
	$(VENV)/bin/pytest

## check: the static checks CI runs before the tests (lint, format, import layers, types)
check: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy $(MYPY_PACKAGES)

## system-deps: Debian packages the project needs (run as root; CI runs it)
system-deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

## deps: the missing Debian packages — installed when run as root; otherwise make stops with one line naming the
## command to run
deps:
	$(eval MISSING := $(shell for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done))
	$(if $(MISSING),$(if $(filter 0,$(shell id -u)),,$(error missing Debian packages: $(MISSING); run: sudo make -C $(CURDIR) system-deps)))
	@$(if $(MISSING),$(MAKE) --no-print-directory system-deps DEBIAN_PACKAGES="$(MISSING)",:)

## services: start PostgreSQL and MariaDB when they are not running
services: deps
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@mariadb-admin -h 127.0.0.1 -uroot ping >/dev/null 2>&1 || start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
	@for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && mariadb-admin -h 127.0.0.1 -uroot ping >/dev/null 2>&1 && exit 0; sleep 1; done; \
		echo "PostgreSQL or MariaDB did not come up on 127.0.0.1" >&2; exit 1

# The marker is written only after every step succeeded; a venv without pip (interrupted creation) is made again.
$(VENV)/.installed: pyproject.toml | deps
	@rm -f $@
	@test -x $(VENV)/bin/pip || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); } || { rm -rf $(VENV); exit 1; }
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

## db: create the PostgreSQL database when it does not exist
db: services
	@$(PG) -tAc "SELECT 1 FROM pg_database WHERE datname = '$(DB_NAME)'" | grep -q 1 || $(PG) -c 'CREATE DATABASE "$(DB_NAME)"'

## bench-preload: the preload benchmark (200k plans, 1M portfolios)
bench-preload: venv services
	$(PY) bench/preload.py

## bench-facts: the fact-processing benchmark (1M-row CSV, 40k-row workbook)
bench-facts: venv services
	$(PY) bench/facts.py

## bench-key-rules: what key rules and lookup fallbacks add to a 1M-row load, and a mapping's re-point time
bench-key-rules: venv services
	$(PY) bench/key_rules.py

## bench-admin: the steward workbench benchmark (1M portfolios, 100k pending review)
bench-admin: venv services
	$(PY) bench/admin.py

## bench-suggestions: typo suggestions for 3k new portfolios against 1M
bench-suggestions: venv services
	$(PY) bench/suggestions.py

## bench-converge: 60 days of the hybrid loop with a steward of fixed capacity (auto-derived share, pending, typos)
bench-converge: venv services
	$(PY) bench/converge.py

## bench-api: load_facts of a 1M-row DataFrame vs the same rows as a CSV file, and vs a raw COPY of the frame
bench-api: venv services
	$(PY) bench/api.py
