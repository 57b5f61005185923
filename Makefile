# SpectralX for QGIS. `make demo` and `make test` set everything up on a fresh Debian 12 machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYS_PY := /usr/bin/python3
TORCH_VERSION := 2.13.0
export QT_QPA_PLATFORM := offscreen
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test demo demo-model bench package screenshot clean

setup: $(STAMP)

# QGIS comes from Debian (it is built against the system Python); the venv sees it through
# --system-site-packages. numpy is pinned to the system's so pip never upgrades it under GDAL/QGIS.
$(STAMP): pyproject.toml setup.py requirements/runtime.txt requirements/dev.txt
	@if ! $(SYS_PY) -c "import qgis.core" 2>/dev/null; then \
	  echo "Installing QGIS from Debian (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qgis python3-qgis; \
	fi
	test -d $(VENV) || $(SYS_PY) -m venv --system-site-packages $(VENV)
	$(SYS_PY) -c "import numpy; print('numpy==' + numpy.__version__)" > $(VENV)/constraints.txt
	$(PY) -m pip install -q torch==$(TORCH_VERSION) -c $(VENV)/constraints.txt
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -c "import spectralx, torch, rasterio, qgis.core; print('spectralx', spectralx.__version__, '| torch', torch.__version__, '| rasterio', rasterio.__version__, '| QGIS', qgis.core.Qgis.QGIS_VERSION)"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) build dist *.egg-info bench/results.json
