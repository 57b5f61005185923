"""QGIS 4 / Qt6 readiness, declared and checked: metadata says supportsQt6=True, and the plugin's source
has no Qt5-only idiom (PyQt5 imports, exec_(), unscoped Qt enum values that PyQt6 no longer has)."""

from __future__ import annotations

import configparser
import glob
import os
import re

from test_plugin_common import REPO

SOURCES = sorted(glob.glob(os.path.join(REPO, "spectralx_qgis", "**", "*.py"), recursive=True))

# Qt.AlignRight (Qt5) vs Qt.AlignmentFlag.AlignRight (Qt5 and Qt6): a Qt class followed by a capitalised
# member that is not itself followed by "." (an enum class) or "(" (a call) is an unscoped enum value.
UNSCOPED = re.compile(r"\b(Qt|Q(?!gs)[A-Z][A-Za-z]+)\.([A-Z][A-Za-z0-9]*)\b(?!\s*[.(])")
QT5_ONLY = [
    (re.compile(r"\bexec_\s*\("), "exec_() (Qt6: exec())"),
    (re.compile(r"^\s*(from|import)\s+PyQt5", re.M), "PyQt5 import (use qgis.PyQt)"),
    (re.compile(r"^\s*(from|import)\s+PyQt6", re.M), "PyQt6 import (use qgis.PyQt)"),
    (re.compile(r"\bQt\.MidButton\b"), "Qt.MidButton (removed in Qt6)"),
    (re.compile(r"\bQRegExp\b"), "QRegExp (removed in Qt6)"),
]


def _code_lines(path):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            code = line.split("#", 1)[0]
            if code.strip():
                yield n, code


def test_metadata_declares_qt6():
    cp = configparser.ConfigParser()
    cp.read(os.path.join(REPO, "metadata.txt"), encoding="utf-8")
    assert cp["general"].get("supportsQt6") == "True"


def test_no_qt5_only_idioms_in_the_plugin():
    assert len(SOURCES) >= 10
    problems = []
    for path in SOURCES:
        rel = os.path.relpath(path, REPO)
        text = open(path, encoding="utf-8").read()
        for pattern, what in QT5_ONLY:
            for m in pattern.finditer(text):
                problems.append(f"{rel}:{text[:m.start()].count(chr(10)) + 1}: {what}")
        for n, code in _code_lines(path):
            for m in UNSCOPED.finditer(code):
                if m.group(1) in ("QgsWkbTypes",):
                    continue
                problems.append(
                    f"{rel}:{n}: unscoped enum {m.group(0)} (use the enum class, e.g. " "Qt.AlignmentFlag.AlignRight)"
                )
    assert not problems, "\n".join(problems)


def test_the_scan_catches_what_it_should():
    """The patterns themselves: they must flag Qt5 spellings and pass the scoped ones."""
    assert UNSCOPED.search("item.setFlags(Qt.ItemIsEditable)")
    assert UNSCOPED.search("header.setSectionResizeMode(QHeaderView.Stretch)")
    assert not UNSCOPED.search("header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)")
    assert not UNSCOPED.search("QColor.fromRgbF(1, 0, 0)") and not UNSCOPED.search("QgsProject.instance()")
    assert QT5_ONLY[0][0].search("dialog.exec_()")
