"""`spectralx` command line. Each subcommand lives in `spectralx.commands.<name>` and exposes
`register(subparsers)`; bad input ends in a one-line error and a non-zero exit, never a traceback."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import List, Optional

from . import __version__, commands
from .errors import Cancelled, SpectralXError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spectralx", description="SpectralX: land-cover segmentation of multispectral and "
        "hyperspectral rasters with a frozen foundation model and small spectral adapters.")
    parser.add_argument("--version", action="version", version=f"spectralx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except Cancelled as exc:
        print(f"spectralx: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("spectralx: interrupted", file=sys.stderr)
        return 130
    except SpectralXError as exc:
        print(f"spectralx: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, MemoryError) as exc:  # disk full, permissions, out of memory: still one line
        print(f"spectralx: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
