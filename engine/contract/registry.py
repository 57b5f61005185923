"""The release/family registry: the backbone families `spectralx backbone import` converts, and the
known foundation-model releases (releases.json), each with its source page, licence, file, checksum
and family side by side, validated on load. Torch-free (the plugin's model manager reads it).

Each entry names the release's official page and licence; a download address, size and checksum
only where they were verified (the JSON's checksum_source says from where). A release without a
published sha256 is still downloadable: its digest is shown after the download and the importer
checks the file's format. Gated releases (DINOv3: a form) have no address, only their page.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

__all__ = [
    "FAMILIES",
    "CATALOG_FILE",
    "CATALOG_FORMAT",
    "NO_CHECKSUM",
    "CatalogError",
    "Release",
    "load_releases",
    "by_file",
]

CATALOG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "releases.json")
CATALOG_FORMAT = "spectralx-model-catalog"
# the names `spectralx backbone import --family` accepts, in the order detection tries them; each has
# its converter module in spectralx.backbones.registry (checked against this tuple on import)
FAMILIES = ("scale-mae", "satmae++", "dinov3", "mae", "timm")
NO_CHECKSUM = (
    "no published checksum: the file's sha256 is shown after download; the importer still " "checks its format"
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# a release's file name as published: a plain name the model folder can hold (no "..", no separators,
# no NUL or other control characters, not hidden)
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$")
_HEX_PREFIX = re.compile(r"^[0-9a-f]{4,63}$")


class CatalogError(Exception):
    """The catalogue file is damaged (one line naming the entry and the field)."""


@dataclass(frozen=True)
class Release:
    id: str
    name: str
    family: str
    file: str
    source_page: str
    license: str
    preset: str = ""
    license_url: str = ""
    url: Optional[str] = None
    size: Optional[int] = None
    sha256: Optional[str] = None
    sha256_prefix: Optional[str] = None
    md5_prefix: Optional[str] = None
    checksum_source: str = ""
    notes: str = ""

    @property
    def downloadable(self) -> bool:
        return bool(self.url)

    def access_text(self) -> str:
        if self.url:
            return "direct download"
        return "no direct link: see its page"

    def checksum_text(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256} ({self.checksum_source})"
        known = []
        if self.sha256_prefix:
            known.append(f"sha256 starts with {self.sha256_prefix}")
        if self.md5_prefix:
            known.append(f"md5 starts with {self.md5_prefix}")
        return (
            NO_CHECKSUM
            + (f"; published: {', '.join(known)}" if known else "")
            + (f" ({self.checksum_source})" if self.checksum_source else "")
        )

    def check(self, sha256: Optional[str] = None, md5: Optional[str] = None) -> Tuple[Optional[bool], str]:
        """(True/False, why) when something published can be compared with a file's digests;
        (None, ...) when the authors publish nothing to compare with."""
        if sha256 and self.sha256:
            ok = sha256 == self.sha256
            return ok, (
                "sha256 matches the published one"
                if ok
                else f"sha256 {sha256} differs from the published {self.sha256}"
            )
        if sha256 and self.sha256_prefix:
            ok = sha256.startswith(self.sha256_prefix)
            return ok, (
                f"sha256 starts with the published {self.sha256_prefix}"
                if ok
                else f"sha256 {sha256[:12]}… does not start with the published {self.sha256_prefix}"
            )
        if md5 and self.md5_prefix:
            ok = md5.startswith(self.md5_prefix)
            return ok, (
                f"md5 starts with the published {self.md5_prefix}"
                if ok
                else f"md5 {md5[:12]}… does not start with the published {self.md5_prefix}"
            )
        return None, f"sha256 {sha256}" if sha256 else NO_CHECKSUM


_FIELDS = {f: t for f, t in Release.__annotations__.items()}
_REQUIRED = ("id", "name", "family", "file", "source_page", "license")


def _validate(i: int, d: object, seen: set) -> Release:
    if not isinstance(d, dict):
        raise CatalogError(f"model catalogue entry {i} is not an object")
    label = f"model catalogue entry {i} ({d.get('id', '?')})"
    unknown = sorted(set(d) - set(_FIELDS))
    if unknown:
        raise CatalogError(f"{label}: unknown field '{unknown[0]}'")
    for k in _REQUIRED:
        if not isinstance(d.get(k), str) or not d[k].strip():
            raise CatalogError(f"{label}: '{k}' must be a non-empty text")
    for k, v in d.items():
        if isinstance(v, str) and any(not c.isprintable() for c in v):
            raise CatalogError(f"{label}: '{k}' holds a control character")
    for k in ("preset", "license_url", "checksum_source", "notes"):
        if k in d and not isinstance(d[k], str):
            raise CatalogError(f"{label}: '{k}' must be a text")
    if d["id"] in seen:
        raise CatalogError(f"{label}: id '{d['id']}' is used twice")
    seen.add(d["id"])
    if d["family"] not in FAMILIES:
        raise CatalogError(f"{label}: family '{d['family']}' is not one the importer accepts ({', '.join(FAMILIES)})")
    for k in ("source_page", "url", "license_url"):
        v = d.get(k)
        if v not in (None, "") and (not isinstance(v, str) or not v.startswith("https://")):
            raise CatalogError(f"{label}: '{k}' must be an https:// address or null")
    if not _FILE_NAME.match(d["file"]) or d["file"].endswith("."):
        raise CatalogError(f"{label}: 'file' must be a bare file name (letters, digits, . _ + -)")
    size = d.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        raise CatalogError(f"{label}: 'size' must be a positive number of bytes or null")
    sha = d.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not _HEX64.match(sha)):
        raise CatalogError(f"{label}: 'sha256' must be 64 lower-case hex digits or null")
    for k in ("sha256_prefix", "md5_prefix"):
        v = d.get(k)
        if v is not None and (not isinstance(v, str) or not _HEX_PREFIX.match(v)):
            raise CatalogError(f"{label}: '{k}' must be lower-case hex digits or null")
    if d.get("url") and not (size or sha or d.get("sha256_prefix") or d.get("md5_prefix")):
        # nothing to tell a complete download from a cut or substituted one
        raise CatalogError(f"{label}: a downloadable release needs its 'size' when no checksum is published")
    return Release(**d)


def load_releases(path: str = CATALOG_FILE) -> List[Release]:
    """The releases of a catalogue file; CatalogError (one line) when it is damaged."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise CatalogError(f"cannot read the model catalogue {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CatalogError(f"the model catalogue {os.path.basename(path)} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != CATALOG_FORMAT:
        raise CatalogError(f"{os.path.basename(path)} is not a SpectralX model catalogue")
    entries = data.get("releases")
    if not isinstance(entries, list):
        raise CatalogError("model catalogue: 'releases' must be a list")
    seen: set = set()
    return [_validate(i, d, seen) for i, d in enumerate(entries, 1)]


load = load_releases  # the plugin catalogue's name


def by_file(releases: List[Release], file_name: str) -> Optional[Release]:
    """The release published under this file name, if the catalogue knows it."""
    return next((r for r in releases if r.file == os.path.basename(file_name)), None)
