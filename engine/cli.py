"""`spectralx` command line. Each subcommand lives in `spectralx.commands.<name>` and exposes
`register(subparsers)`; bad input ends in a one-line error and a non-zero exit, never a traceback.

Interrupts: Ctrl-C, SIGTERM and SIGHUP all unwind like Ctrl-C (so every "remove the temporary file"
path runs), from the first instant of `main` on; a closed pipe (`spectralx bands X | head`) ends
quietly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import signal
import sys
import time
from typing import List, Optional

from . import __version__, commands
from .contract.errors import MAX_ERROR_CHARS  # noqa: F401
from .errors import Cancelled, SpectralXError, Terminated, for_cli, one_line  # noqa: F401 (one_line: re-export)

EXIT_ERROR = 2  # bad input (SpectralXError, bad argument)
EXIT_OS = 1  # the system refused (memory, I/O)
EXIT_PIPE = 141  # 128 + SIGPIPE, as a tool killed by the closed pipe would report


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (`spectralx: error: …`), like every other error."""

    def error(self, message: str):
        hint = f" (see {self.prog} --help)"
        self.exit(EXIT_ERROR, f"spectralx: error: {one_line(message)}{hint}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="spectralx",
        description="SpectralX: land-cover segmentation of multispectral and "
        "hyperspectral rasters with a frozen foundation model and small spectral adapters.",
    )
    parser.add_argument("--version", action="version", version=f"spectralx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):  # helpers shared by the commands, not commands
            continue
        importlib.import_module(f"{commands.__name__}.{info.name}").register(sub)
    return parser


_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


def _install_signal_handlers() -> dict:
    """SIGTERM/SIGHUP raise Terminated (a KeyboardInterrupt) in the main thread; a repeat in the
    next seconds is ignored so that the cleanup the first one triggers is not cut short."""
    previous = {}
    stopping = []  # time of the first interrupt

    def stop(signum, frame):
        # a repeat within a few seconds would cut the cleanup short; later, the user insists: stop again
        if stopping and time.monotonic() - stopping[0] < 3.0:
            return
        stopping[:] = [time.monotonic()]
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signum, signal.Signals(signum).name)

    try:
        for s in (signal.SIGINT, *_STOP_SIGNALS):
            previous[s] = signal.signal(s, stop)
    except ValueError:  # not the main thread (main() called from a worker): leave signals alone
        _restore(previous)
        return {}
    return previous


def _restore(previous: dict) -> None:
    for s, handler in previous.items():
        try:
            signal.signal(s, handler)
        except (ValueError, TypeError):
            pass


def _quiet_gdal_logging() -> None:
    """GDAL's own messages go to Python logging via rasterio; the CLI reports failures itself in one
    line (set SPECTRALX_DEBUG=1 to see them)."""
    if not os.environ.get("SPECTRALX_DEBUG"):
        for name in ("rasterio", "fiona"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _stdout_closed() -> None:
    """The reader went away (`| head`): send what is left to /dev/null so exit does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _library_error(exc: BaseException) -> bool:
    """Errors raised by the raster/vector/tensor libraries for bad files (not our bugs)."""
    module = type(exc).__module__ or ""
    return module.startswith(("rasterio", "fiona", "safetensors"))


def main(argv: Optional[List[str]] = None) -> int:
    previous = _install_signal_handlers()
    try:
        _quiet_gdal_logging()
        parser = build_parser()
        args = parser.parse_args(argv)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here when stdout is buffered
        return code
    except Cancelled as exc:
        print(for_cli(exc), file=sys.stderr)
        return 130
    except Terminated as exc:
        print(for_cli(exc), file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt as exc:
        print(for_cli(exc), file=sys.stderr)
        return 130
    except BrokenPipeError:
        _stdout_closed()
        return EXIT_PIPE
    except SpectralXError as exc:
        print(for_cli(exc), file=sys.stderr)
        return EXIT_ERROR
    except (OSError, MemoryError) as exc:  # disk full, permissions, out of memory: still one line
        print(for_cli(exc), file=sys.stderr)
        return EXIT_OS
    except Exception as exc:
        if not _library_error(exc):
            raise
        print(for_cli(exc), file=sys.stderr)
        return EXIT_OS
    finally:
        _restore(previous)


if __name__ == "__main__":
    sys.exit(main())
