"""Known foundation-model releases for the model manager: the engine's release/family registry
(spectralx.contract.registry and its releases.json: each release's source page, licence, checksum and
family side by side), used as it is. Each entry names the release's official page and licence; a
download address, size and checksum only where they were verified. Gated releases (DINOv3: a form)
have no address, only their page."""

from __future__ import annotations

from .._vendor.spectralx.contract import registry

CATALOG_FILE = registry.CATALOG_FILE
FAMILIES = registry.FAMILIES  # the names `spectralx backbone import --family` accepts
NO_CHECKSUM = registry.NO_CHECKSUM
CatalogError = registry.CatalogError
Release = registry.Release
load = registry.load_releases
by_file = registry.by_file
