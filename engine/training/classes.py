"""Class tables (value, name, colour): derived from label data or read from a JSON file.

Text classes get values 1..K in sorted name order; integer classes keep their values. The table
travels into the checkpoint's model card, and the network's output channel i is the i-th class of
the table (sorted by value).
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Optional, Sequence, Union

from ..checkpoint import ClassInfo
from ..errors import LabelError

# Colours for common land-cover names (so a derived legend looks like what an analyst expects),
# then a qualitative palette (ColorBrewer Paired/Set1-like) for the rest.
_NAMED_COLOURS = {
    "water": "#1f78b4",
    "river": "#1f78b4",
    "lake": "#1f78b4",
    "sea": "#1f78b4",
    "tree": "#1b7837",
    "trees": "#1b7837",
    "forest": "#1b7837",
    "wood": "#1b7837",
    "low vegetation": "#a6d96a",
    "grass": "#a6d96a",
    "grassland": "#a6d96a",
    "vegetation": "#66bd63",
    "shrub": "#78c679",
    "crop": "#e6c229",
    "cropland": "#e6c229",
    "agriculture": "#e6c229",
    "soil": "#a6611a",
    "bare": "#c2a27a",
    "bare soil": "#a6611a",
    "sand": "#f6e8c3",
    "developed": "#e31a1c",
    "urban": "#e31a1c",
    "built-up": "#e31a1c",
    "building": "#d7301f",
    "roof": "#d7301f",
    "impervious": "#969696",
    "pavement": "#969696",
    "road": "#737373",
    "snow": "#f0f0f0",
    "ice": "#f0f0f0",
    "cloud": "#ffffff",
    "wetland": "#41b6c4",
}
_PALETTE = [
    "#1f78b4",
    "#33a02c",
    "#e31a1c",
    "#ff7f00",
    "#6a3d9a",
    "#b15928",
    "#a6cee3",
    "#b2df8a",
    "#fb9a99",
    "#fdbf6f",
    "#cab2d6",
    "#ffff99",
    "#8dd3c7",
    "#bebada",
]


def default_colour(name: str, index: int) -> str:
    return _NAMED_COLOURS.get(str(name).strip().lower(), _PALETTE[index % len(_PALETTE)])


def table_from_names(names: Iterable[str]) -> List[ClassInfo]:
    """Text classes -> values 1..K in sorted (case-insensitive) order."""
    uniq = sorted({str(n).strip() for n in names if str(n).strip()}, key=lambda s: (s.lower(), s))
    return [ClassInfo(i + 1, n, default_colour(n, i)) for i, n in enumerate(uniq)]


def table_from_values(
    values: Iterable[int], names: Optional[Dict[int, str]] = None, colours: Optional[Dict[int, str]] = None
) -> List[ClassInfo]:
    """Integer classes keep their values; names/colours from metadata when known."""
    out: List[ClassInfo] = []
    for i, v in enumerate(sorted({int(v) for v in values})):
        name = (names or {}).get(v) or f"class {v}"
        colour = (colours or {}).get(v) or default_colour(name, i)
        out.append(ClassInfo(v, name, colour))
    return _check_table(out, "label values")


def _check_table(classes: List[ClassInfo], source: str) -> List[ClassInfo]:
    if not classes:
        raise LabelError(f"{source}: the class table is empty")
    values = [c.value for c in classes]
    if len(set(values)) != len(values):
        raise LabelError(f"{source}: class values must be unique (got {values})")
    names = [c.name.lower() for c in classes]
    if len(set(names)) != len(names):
        raise LabelError(f"{source}: class names must be unique (got {[c.name for c in classes]})")
    for c in classes:
        if c.value <= 0 or c.value > 255:
            raise LabelError(
                f"{source}: class value {c.value} ({c.name}) must be in 1..255 (class "
                "rasters are 8-bit; 0 means unlabelled); renumber the classes"
            )
    return sorted(classes, key=lambda c: c.value)


def parse_classes(spec: Union[str, dict, list, Sequence[ClassInfo]]) -> List[ClassInfo]:
    """A class table from a JSON file/text or Python data.

    Accepted forms: `[{"value": 1, "name": "water", "color": "#1f78b4"}, …]`, `{"classes": [...]}`
    or `{"1": "water", "2": "crop"}` (colours then come from the default palette).
    """
    source = "class table"
    data = spec
    if isinstance(spec, str):
        if os.path.isfile(spec):
            source = spec
            try:
                with open(spec, encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, json.JSONDecodeError) as exc:
                raise LabelError(f"cannot read class table {spec}: {exc}") from None
        else:
            try:
                data = json.loads(spec)
            except json.JSONDecodeError:
                raise LabelError(f"class table {spec!r} is neither a file nor JSON text") from None
    if isinstance(data, dict) and "classes" in data:
        data = data["classes"]
    out: List[ClassInfo] = []
    try:
        if isinstance(data, dict):
            for i, (k, v) in enumerate(sorted(data.items(), key=lambda kv: int(kv[0]))):
                out.append(ClassInfo(int(k), str(v), default_colour(str(v), i)))
        else:
            for i, item in enumerate(data):
                if isinstance(item, ClassInfo):
                    out.append(ClassInfo(int(item.value), str(item.name), item.color))
                    continue
                name = str(item.get("name") or item.get("label") or f"class {item['value']}")
                colour = item.get("color") or item.get("colour") or default_colour(name, i)
                out.append(ClassInfo(int(item["value"]), name, str(colour)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LabelError(
            f"{source}: expected a list of {{value, name, color}} objects or a " f"{{value: name}} mapping ({exc})"
        ) from None
    return _check_table(out, source)


def merge_tables(
    classes: Optional[List[ClassInfo]],
    names: Iterable[str],
    values: Iterable[int],
    value_names: Optional[Dict[int, str]] = None,
    value_colours: Optional[Dict[int, str]] = None,
) -> List[ClassInfo]:
    """The training class table: the given one, or derived from the text/integer classes seen."""
    names, values = set(names), set(values)
    if classes is not None:
        return classes
    if names and values:
        raise LabelError(
            "the labels mix text classes and integer classes; give a class table "
            "(--classes classes.json) that names every value"
        )
    if names:
        return table_from_names(names)
    return table_from_values(values, value_names, value_colours)


def table_to_json(classes: List[ClassInfo]) -> str:
    return json.dumps([{"value": c.value, "name": c.name, "color": c.color} for c in classes], indent=1)
