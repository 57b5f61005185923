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

# QGIS plugin zip: the plugin folder only, with the engine bundled as spectralx_qgis/_vendor/spectralx
# (imported as a subpackage: nothing generic lands in QGIS's top-level module namespace).
PKG_DIR := build/package/spectralx_qgis
package:
	rm -rf build/package dist/spectralx_qgis.zip
	mkdir -p $(PKG_DIR)/_vendor $(PKG_DIR)/icons dist
	cp spectralx_qgis/*.py $(PKG_DIR)/
	cp metadata.txt LICENSE $(PKG_DIR)/
	cp resources/icons/spectralx.svg resources/icons/spectralx.png $(PKG_DIR)/icons/
	printf '"""Third-party code bundled with the plugin (the SpectralX engine)."""\n' > $(PKG_DIR)/_vendor/__init__.py
	cp -r engine $(PKG_DIR)/_vendor/spectralx
	@if ls resources/models/*.safetensors >/dev/null 2>&1; then mkdir -p $(PKG_DIR)/models && \
	  cp resources/models/*.safetensors $(PKG_DIR)/models/ && cp resources/models/*.md $(PKG_DIR)/models/ 2>/dev/null || true; fi
	find build/package -name '__pycache__' -prune -exec rm -rf {} + ; find build/package -name '*.pyc' -delete
	cd build/package && $(SYS_PY) -m zipfile -c ../../dist/spectralx_qgis.zip spectralx_qgis
	@$(SYS_PY) -c "import zipfile; z = zipfile.ZipFile('dist/spectralx_qgis.zip'); tops = {n.split('/')[0] for n in z.namelist()}; assert tops == {'spectralx_qgis'}, tops; print('dist/spectralx_qgis.zip:', len(z.namelist()), 'files,', sum(i.file_size for i in z.infolist()) // 1024, 'KiB')"
