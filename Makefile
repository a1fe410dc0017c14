# Maillage — every target sets itself up: only python3 and make are assumed.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast docs clean bench-import bench-matcher browser bench-email deploy-check

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the project with its dev tools

run: install ## the whole system on this machine, with demo data (Ctrl-C stops it)
	$(PY) -m tools.run

# The browser tests drive Debian's chromium through Playwright (its own
# browser download cannot work offline); installed here when missing (as root).
CHROMIUM ?= /usr/bin/chromium

browser: ## Debian's chromium for the browser tests (apt-get install when missing)
	@test -x $(CHROMIUM) || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

lint: install ## ruff (pyflakes, bugbear) and mypy, as pyproject.toml configures them
	$(PY) -m ruff check .
	$(PY) -m mypy

test: install browser lint ## ruff and mypy, then the test suite (needs PostgreSQL on 127.0.0.1:5432)
	$(PY) -m pytest $(PYTEST_ARGS)

# The markers are set in tests/conftest.py from the fixtures a test uses.
test-fast: install ## pure and FakeBus tests only: no nats-server, PostgreSQL, browser or process stack (< 1 min)
	$(PY) -m pytest -m "not nats and not postgres and not browser and not slow" $(PYTEST_ARGS)

bench-import: install ## contacts import rows/s vs raw csv + bulk insert (BENCH_ARGS="--rows 100000")
	$(PY) -m bench.import_bench $(BENCH_ARGS)

bench-matcher: install ## matcher: index, match, suggestions/s vs raw publish_async, memory (BENCH_ARGS="--volunteers 100000")
	$(PY) -m bench.matcher_bench $(BENCH_ARGS)

bench-email: install ## email dispatcher end to end (NATS -> SMTP sink) vs a raw aiosmtplib loop (BENCH_EMAILS=5000)
	$(PY) -m bench.email_bench $(BENCH_ARGS)

docs: install ## regenerate from the code: README subject table, docs/asyncapi.json, deploy/nats/auth.conf, deploy/k8s/base/generated
	$(PY) -m tools.subjects_table --write README.md --asyncapi docs/asyncapi.json
	$(PY) -m tools.nats_permissions --write deploy/nats/auth.conf
	$(PY) -m tools.k8s_manifests --write

deploy-check: install ## deploy/ offline: kustomize + kubernetes-validate, nats-server -t, hadolint, metrics (part of make test)
	$(PY) -m pytest $(PYTEST_ARGS) tests/deploy/test_deploy_manifests.py tests/deploy/test_deploy_image.py \
		tests/deploy/test_deploy_observability.py tests/deploy/test_nats_permissions.py

clean: ## remove local state (var/) and caches
	rm -rf var .pytest_cache
