"""Issue 12: one pinned requirement list (spectralx_qgis/requirements.txt) behind the installer, the
panel, Processing, the README, `make setup` and the package metadata. The panel's and Processing's
copies are checked in test_plugin_dependencies (through QGIS); here the files that are not Python."""

from __future__ import annotations

import importlib.metadata
import os
import re

from test_plugin_common import REPO

from spectralx_qgis.setup import deps, requirements


def _normalized(line: str) -> tuple:
    """`rasterio>=1.3.5,<1.4` and `rasterio<1.4,>=1.3.5` are one requirement."""
    name, spec = re.match(r"([A-Za-z0-9._-]+)(.*)", line).groups()
    return name.lower().replace("_", "-"), frozenset(s.strip() for s in spec.split(",") if s.strip())


def test_the_list_parses_and_pins_torch():
    reqs = requirements.load()
    names = [r.name for r in reqs]
    assert names[0] == "torch" and reqs[0].spec.startswith("==")
    assert "numpy" not in names  # always QGIS's own
    assert "fiona" not in names  # never in QGIS's process (its wheel's GDAL aborts)
    assert all(r.why for r in reqs)  # every line says what the engine uses it for
    assert {r.import_name for r in reqs} >= {"torch", "rasterio", "safetensors", "sklearn", "PIL"}


def test_readme_shows_exactly_the_list():
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text[text.index("### Install the dependencies") :]
    block = re.search(r"```text\n(.*?)```", section, re.S).group(1).split()
    assert block == requirements.lines()
    assert "spectralx_qgis/requirements.txt" in section and "Manual fallback" in section


def test_make_setup_and_package_metadata_read_the_same_file():
    runtime = open(os.path.join(REPO, "requirements", "runtime.txt"), encoding="utf-8").read()
    assert "-r ../spectralx_qgis/requirements.txt" in runtime
    makefile = open(os.path.join(REPO, "Makefile"), encoding="utf-8").read()
    torch_line = next(ln for ln in makefile.splitlines() if ln.startswith("TORCH_VERSION :="))
    assert "spectralx_qgis/requirements.txt" in torch_line and "2.13" not in torch_line
    pyproject = open(os.path.join(REPO, "pyproject.toml"), encoding="utf-8").read()
    assert 'dependencies = {file = ["spectralx_qgis/requirements.txt", "requirements/cli.txt"]}' in pyproject
    # what `make setup` installed carries the same requirements in its metadata
    installed = {_normalized(r) for r in importlib.metadata.requires("spectralx-qgis") if ";" not in r}
    assert {_normalized(line) for line in requirements.lines()} <= installed


def test_dependency_check_uses_it():
    """(The plugin zip ships the same file: test_plugin_package.test_zip_layout.)"""
    assert [pip for _mod, pip, _why in deps.REQUIREMENTS[1:]] == requirements.lines()
    assert deps.requirement_list().splitlines() == requirements.lines()
    assert f"-r {requirements.PATH}" in deps.install_command()
