# Short verbs. `make demo` and `make test` work on a fresh machine with Python 3.11+.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: setup demo test lint format bench bench-setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Test servers from npm (Azurite, the Azure Storage emulator); Node from Debian if missing.
$(NODE_STAMP): package.json
	@command -v npm >/dev/null || (apt-get update -qq && apt-get install -y -qq nodejs npm)
	npm install --no-audit --no-fund --silent
	touch $(NODE_STAMP)

demo: setup
	$(VENV)/bin/madrone demo

test: setup $(NODE_STAMP)
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
