"""Issue 23: the documentation tells the truth about the tools it documents, and its site is built
strict. Every `spectralx …` command line in the README and docs/ uses only subcommands and options
that the real parser has (the same parser `--help` prints); every `make X` names a Makefile target;
the site builds with `mkdocs build --strict`, and a broken link or image in a fixture fails it."""

from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys

import pytest
import yaml

from spectralx.cli import build_parser

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the README and the site's pages (CHANGELOG.md records old command lines on purpose)
DOCS = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`(spectralx [^`]+)`")
LONG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
SHORT = re.compile(r"(?<![\w./-])(-[a-zA-Z])(?![\w-])")


def _subparsers(parser: argparse.ArgumentParser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set:
    return {s for a in parser._actions for s in a.option_strings}


def _command_lines(text: str):
    """`spectralx …` command lines: in code blocks (with their continuation lines) and inline code."""
    for block in FENCE.findall(text):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            if line.startswith("spectralx ") or line == "spectralx":
                cmd = [line]
                while i + 1 < len(lines) and (cmd[-1].rstrip().endswith("\\") or re.match(r"\s+[\[(-]", lines[i + 1])):
                    i += 1
                    cmd.append(lines[i].strip())
                yield " ".join(c.rstrip("\\") for c in cmd)
            i += 1
    for m in INLINE.finditer(text):
        yield m.group(1)


def _check(cmd: str, parser: argparse.ArgumentParser) -> list:
    cmd = re.split(r"\s#\s", " " + cmd + " ")[0]  # drop a trailing comment
    words = cmd.split()[1:]
    sub = parser
    path = ["spectralx"]
    while words and _subparsers(sub):
        word = words[0]
        if not re.fullmatch(r"[a-z][a-z0-9+-]*", word):  # a placeholder (COMMAND, CMD, …) or an option
            break
        choices = _subparsers(sub)
        if word not in choices:
            return [f"{' '.join(path)}: no subcommand '{word}' (in: {cmd.strip()})"]
        sub = choices[word]
        path.append(word)
        words = words[1:]
    known = _options(sub) | {"-h", "--help"}
    if _subparsers(sub) and sub is not parser:  # `spectralx backbone` alone
        known |= {s for p in _subparsers(sub).values() for s in _options(p)}
    rest = " ".join(words)
    return [
        f"{' '.join(path)}: no option {flag} (in: {cmd.strip()})"
        for flag in LONG.findall(rest) + SHORT.findall(rest)
        if flag not in known
    ]


def test_documented_command_lines_match_the_parser():
    parser = build_parser()
    problems, seen = [], 0
    for path in DOCS:
        text = open(path, encoding="utf-8").read()
        for cmd in _command_lines(text):
            seen += 1
            problems += [f"{os.path.relpath(path, REPO)}: {p}" for p in _check(cmd, parser)]
    assert seen > 40, seen  # the docs do show command lines
    assert not problems, "\n".join(problems)


def test_the_checker_catches_a_wrong_option_and_subcommand():
    parser = build_parser()
    assert _check("spectralx segment A.tif -c M -o B.tif --overlap 0.25", parser) == []
    assert _check("spectralx backbone import R.pth -o B.safetensors --family auto", parser) == []
    assert _check("spectralx segment A.tif --no-such-flag", parser)
    assert _check("spectralx pretrain --image A.tif -o S.safetensors", parser)  # pretrain takes positionals
    assert _check("spectralx segmnet A.tif", parser)
    assert _check("spectralx backbone info B.safetensors --family auto", parser)


def test_make_targets_in_the_docs_exist():
    makefile = open(os.path.join(REPO, "Makefile"), encoding="utf-8").read()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):", makefile, re.M))
    missing = []
    for path in DOCS:
        text = open(path, encoding="utf-8").read()
        code = "\n".join(FENCE.findall(text)) + "\n" + "\n".join(re.findall(r"`([^`\n]+)`", text))
        missing += [
            f"{os.path.relpath(path, REPO)}: make {t}"
            for t in re.findall(r"\bmake ([a-z][a-z0-9-]*)", code)
            if t not in targets
        ]
    assert {"demo", "test", "docs", "setup", "package", "screenshot"} <= targets
    assert not missing, missing


def _mkdocs(config: str, site: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", config, "--site-dir", site],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_the_site_builds_strict(tmp_path):
    proc = _mkdocs(os.path.join(REPO, "mkdocs.yml"), str(tmp_path / "site"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "guide" / "fine-tuning.html").is_file()
    assert (tmp_path / "site" / "screenshot.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    "broken, named",
    [
        ("[the guide](guide/missing.md)", "guide/missing.md"),
        ("![a screenshot](missing-screenshot.png)", "missing-screenshot.png"),
        ("[a section](#no-such-section)", "#no-such-section"),
    ],
)
def test_a_broken_link_or_image_fails_the_build(tmp_path, broken, named):
    """The project's own settings (theme, validation, strict) on a two-page fixture."""
    config = yaml.safe_load(open(os.path.join(REPO, "mkdocs.yml"), encoding="utf-8"))
    docs = tmp_path / "docs"
    (docs / "guide").mkdir(parents=True)
    (docs / "guide" / "page.md").write_text("# Page\n\n[home](../index.md)\n", encoding="utf-8")
    good = "# Home\n\n## A section\n\n[the page](guide/page.md) · [here](#a-section)\n"
    config.update(docs_dir=str(docs), nav=[{"Home": "index.md"}, {"Page": "guide/page.md"}])
    config.pop("exclude_docs", None)
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config), encoding="utf-8")

    (docs / "index.md").write_text(good, encoding="utf-8")
    ok = _mkdocs(str(tmp_path / "mkdocs.yml"), str(tmp_path / "site"))
    assert ok.returncode == 0, ok.stderr[-3000:]

    (docs / "index.md").write_text(good + "\n" + broken + "\n", encoding="utf-8")
    bad = _mkdocs(str(tmp_path / "mkdocs.yml"), str(tmp_path / "site"))
    assert bad.returncode != 0
    out = bad.stdout + bad.stderr
    assert named in out and "strict mode" in out, out[-3000:]
