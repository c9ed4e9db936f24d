# Short verbs. `make demo` and `make test` work on a fresh machine with Python 3.11+.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
PG_BIN := /usr/lib/postgresql/15/bin
POSTGIS_CONTROL := /usr/share/postgresql/15/extension/postgis.control
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

.PHONY: setup demo test system-packages lint format bench bench-setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# What the tests start or run from Debian: PostgreSQL 15 + PostGIS (a throwaway cluster on
# 127.0.0.1), docker-compose (validates compose.yaml; no container runs) and Chromium with
# its driver (the end-to-end web tests drive /usr/bin/chromium through Playwright). Installed
# only when missing, and only as root (CI); otherwise the message names the packages.
system-packages:
	@missing=""; \
	if [ ! -x $(PG_BIN)/initdb ] || [ ! -f $(POSTGIS_CONTROL) ]; then \
	  missing="postgresql-15 postgresql-15-postgis-3"; fi; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "make: the tests need Debian packages:$$missing" >&2; \
	    echo "make: as root: apt-get install --no-install-recommends $$missing" >&2; \
	    exit 1; fi; \
	  echo "installing$$missing"; \
	  apt-get update -qq && $(APT_INSTALL) $$missing; \
	fi

# Test servers from npm (Azurite, the Azure Storage emulator); Node from Debian if missing.
# After system-packages (order only): two apt-get runs at once would fight over dpkg's lock.
$(NODE_STAMP): package.json | system-packages
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)
	npm install --no-audit --no-fund --silent
	touch $(NODE_STAMP)

demo: setup
	$(VENV)/bin/madrone demo

test: setup system-packages $(NODE_STAMP)
	$(VENV)/bin/ruff check src tests bench scripts
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts

format: setup
	$(VENV)/bin/ruff format src tests bench scripts

# The peers need Debian's GDAL command-line tools (gdal_calc.py) beside the venv's rasterio.
bench-setup: setup
	@command -v gdal_calc.py >/dev/null || (apt-get update -qq && apt-get install -y -qq gdal-bin python3-gdal)
	$(PY) -m pip install --quiet -e '.[test,bench]'

bench: bench-setup
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) node_modules madrone-demo .pytest_cache .ruff_cache
