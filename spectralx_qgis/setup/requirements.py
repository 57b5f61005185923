"""The plugin's one pinned requirement list (`requirements.txt` in the plugin folder), parsed.

Everything that names the engine's dependencies reads it from here: the dependency check and its
guidance, the installer, the Processing help, `make setup` (through requirements/runtime.txt) and a
test that holds the README to it. Pure Python: this runs before torch exists.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import List

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "requirements.txt")

# import names that differ from the distribution's name
_IMPORT_NAMES = {"scikit-learn": "sklearn", "pillow": "PIL"}
_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<spec>[<>=!~][^#]*?)?\s*(#\s*(?P<why>.*))?$")


@dataclass(frozen=True)
class Requirement:
    name: str  # distribution name, as pip knows it
    spec: str  # version specifier, e.g. "==2.13.0" or ">=1.3.5,<1.4"
    why: str  # what the engine uses it for

    @property
    def line(self) -> str:
        """The requirement as pip takes it: `torch==2.13.0`."""
        return self.name + self.spec

    @property
    def import_name(self) -> str:
        return _IMPORT_NAMES.get(self.name.lower(), self.name.replace("-", "_"))


def load(path: str = PATH) -> List[Requirement]:
    out = []
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            m = _LINE.match(text)
            if not m:
                raise ValueError(f"{path}:{number}: not a 'name<specifier>  # why' requirement: {text}")
            out.append(Requirement(m["name"], re.sub(r"\s+", "", m["spec"] or ""), (m["why"] or "").strip()))
    return out


def lines(path: str = PATH) -> List[str]:
    """The pinned requirements, one `name<specifier>` each, in file order."""
    return [r.line for r in load(path)]
