"""The dependency installer's work, without Qt: runs in a QgsTask (panel), in a Processing algorithm,
and in tests, with callbacks for the log, the progress and cancel.

1. find QGIS's real interpreter (python_finder) and what it already has;
2. ask pip which distributions the pinned list (requirements.txt) still needs *given what that
   interpreter already has* (`pip install --dry-run --report`; numpy pinned to QGIS's own);
3. install exactly those, without dependencies, into a fresh staging folder (`pip install --target`);
4. verify the staging folder with that interpreter (verify_install.py: imports + a matrix product on
   the chosen device);
5. only then move it into place (site_dir.commit). Cancel or failure removes the staging folder.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple
from urllib.parse import unquote, urlparse

from . import gpu_detect, python_finder, requirements, site_dir
from .deps import engine_folder
from .errors import InstallCancelled, InstallError
from .verify_install import is_inside

HERE = os.path.dirname(os.path.abspath(__file__))
# build tools: QGIS's own copies serve other plugins; a newer one shadowing them helps nobody
NEVER_INSTALL = {"numpy", "pip", "setuptools", "wheel"}


@dataclass
class InstallOptions:
    python: Optional[str] = None  # QGIS's interpreter; found automatically when None
    wheel_folder: Optional[str] = None  # offline: install only from this folder of wheels
    build: str = "auto"  # torch build: auto | cpu | cu126 | cu128 | cu130 | default
    device: str = "auto"  # where the verification's matrix product runs
    proxy: Optional[str] = None  # QGIS's proxy as a URL (proxy.qgis_proxy_url())
    root: Optional[str] = None  # the plugin-owned folder's root (site_dir.default_root())


@dataclass
class InstallResult:
    folder: Optional[str]
    installed: List[Tuple[str, str]]
    provided: List[str]  # requirements QGIS's Python already satisfies
    verification: dict
    live_now: bool  # usable in this QGIS session without a restart
    message: str
    gpus: List[gpu_detect.Gpu] = field(default_factory=list)


def _noop(*_a):
    return None


class Installer:
    def __init__(
        self,
        options: InstallOptions,
        log: Callable[[str], None] = print,
        progress: Callable[[float], None] = _noop,
        cancelled: Callable[[], bool] = lambda: False,
    ):
        self.options = options
        self.log = log
        self.progress = progress
        self.cancelled = cancelled

    # ------------------------------------------------------------------ steps
    def run(self) -> InstallResult:
        # Long (~80 lines): the install's steps in order (find Python, stage, pip, verify, swap in), each
        # a few lines that log and report progress; one method keeps the order visible.
        opts = self.options
        self.progress(1)
        interp = python_finder.probe(opts.python) if opts.python else python_finder.find()
        self.log(f"QGIS's Python: {interp.describe()}")
        if opts.python and interp.version != tuple(sys.version_info[:2]):
            # its packages would land in a folder this QGIS never reads (binary wheels fit one version)
            raise InstallError(
                f"{opts.python} is Python {interp.version[0]}.{interp.version[1]}, but this QGIS runs "
                f"Python {sys.version_info[0]}.{sys.version_info[1]}: choose QGIS's own interpreter "
                "(leave the field empty to find it automatically)"
            )
        if opts.wheel_folder and not os.path.isdir(opts.wheel_folder):
            raise InstallError(
                f"wheel folder {opts.wheel_folder} does not exist; choose the folder that "
                "holds the downloaded .whl files"
            )
        root = opts.root or site_dir.default_root()
        gpus = gpu_detect.nvidia_gpus()
        self.log(f"GPU: {gpu_detect.describe(gpus)}")
        build = self._build(gpus)
        pip = self._pip_command(interp)
        reqs = self._requirement_lines(build)
        self.log("Pinned requirements: " + ", ".join(reqs))
        self._check_cancel()
        self.progress(3)
        with tempfile.TemporaryDirectory(prefix="spectralx-install-") as tmp:
            constraints = os.path.join(tmp, "constraints.txt")
            with open(constraints, "w", encoding="utf-8") as f:
                if interp.numpy:  # QGIS's own numpy: GDAL's and QGIS's bindings are built on it
                    f.write(f"numpy=={interp.numpy}\n")
            plan = self._plan(pip, reqs, constraints, build, tmp)
        wanted = [(n, v) for n, v, _u, _s in plan if n.lower() not in NEVER_INSTALL]
        planned = {_norm(n) for n, _v in wanted}
        provided = [r.name for r in requirements.load() if _norm(r.name) not in planned]
        self.log("Already in QGIS's Python: " + (", ".join(provided) or "none of them"))
        if not wanted:
            self.log("Nothing to install.")
            return self._nothing_to_do(interp, root, provided, gpus)
        self.log("To install: " + ", ".join(f"{n} {v}" for n, v in wanted))
        expected = sum(s for n, _v, _u, s in plan if n.lower() not in NEVER_INSTALL) or None
        try:
            staging = site_dir.new_staging(root, interp.tag)
        except OSError as exc:
            raise InstallError(_unwritable(root, exc)) from None
        committed = False
        try:
            self.progress(10)
            self._pip(
                pip
                + [
                    "install",
                    "--target",
                    staging,
                    "--no-deps",
                    "--no-compile",
                    "--progress-bar",
                    "off",
                    *self._source_args(build),
                ]
                + [f"{n}=={v}" for n, v in wanted],
                "installing",
                staging=staging,
                expected=expected,
                span=(10, 85),
            )
            self.progress(86)
            self._check_cancel()
            self.log(f"Verifying with {interp.path} on device '{self.options.device}'…")
            verification = self._verify(interp, staging)
            self._check_cancel()  # a cancel during the check still keeps nothing
            self.progress(97)
            final = site_dir.folder(root, interp.tag)
            record = {
                "python": interp.path,
                "python_version": list(interp.version),
                "platform": interp.platform,
                "installed": [list(x) for x in wanted],
                "provided": provided,
                "build": build.id,
                "requirements": requirements.lines(),
                "device": verification["device"],
                "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            }
            try:
                live = site_dir.commit(staging, root, interp.tag, record, in_use=self._in_use(final))
            except OSError as exc:
                raise InstallError(_unwritable(root, exc)) from None
            committed = True
        finally:
            if not committed:
                shutil.rmtree(staging, ignore_errors=True)
        this_qgis = interp.tag == site_dir.current_tag()
        # a package this QGIS already loaded from elsewhere (a CPU torch, say) stays loaded until restart
        stale = self._already_loaded(final if live else final + ".pending") if this_qgis else []
        if live and this_qgis:
            site_dir.activate(root, interp.tag)
        line = self._device_line(verification)
        message = f"Installed {len(wanted)} packages into {final}. {self._gpu_note(gpus, verification)}{line}."
        if not live:
            message += " Restart QGIS to use them (the previous installation is in use)."
        elif stale:
            message += f" Restart QGIS to use them: {', '.join(stale[:5])} already loaded from elsewhere."
            live = False
        self.progress(100)
        self.log(message)
        return InstallResult(final, wanted, provided, verification, live and this_qgis, message, gpus)

    # ------------------------------------------------------------- helpers
    def _build(self, gpus) -> gpu_detect.Build:
        offered = gpu_detect.builds(gpus)
        if self.options.wheel_folder or self.options.build == "auto":
            choice = offered[0]
        else:
            choice = next((b for b in offered if b.id == self.options.build), None)
            if choice is None:
                known = {b[0] for b in gpu_detect.CUDA_BUILDS} | {"cpu", "default"}
                if self.options.build not in known:
                    raise InstallError(
                        f"unknown PyTorch build '{self.options.build}'; choose one of " f"{', '.join(sorted(known))}"
                    )
                choice = gpu_detect.Build(
                    self.options.build,
                    self.options.build,
                    None if self.options.build == "default" else gpu_detect.INDEX.format(self.options.build),
                )
        if self.options.wheel_folder:
            self.log(
                f"Offline: only wheels from {self.options.wheel_folder} (no source packages; the wheels "
                "are installed as they are and run inside QGIS: use a folder you trust)"
            )
        else:
            self.log(f"PyTorch build: {choice.label}")
        return choice

    def _requirement_lines(self, build) -> List[str]:
        out = []
        for r in requirements.load():
            line = r.line
            if r.name == "torch" and not self.options.wheel_folder:
                line = build.torch_line(line)
            out.append(line)
        return out

    def _pip_command(self, interp) -> List[str]:
        if interp.pip:
            return [interp.path, "-m", "pip", "--disable-pip-version-check", "--no-input"]
        # pip runs from its own wheel file (a documented use); an offline folder may bring one
        wheels = (
            sorted(
                f for f in os.listdir(self.options.wheel_folder or ".") if f.startswith("pip-") and f.endswith(".whl")
            )
            if self.options.wheel_folder
            else []
        )
        if wheels:
            self.log(f"pip is not installed for QGIS's Python: using {wheels[-1]} from the wheel folder")
            return [
                interp.path,
                os.path.join(self.options.wheel_folder, wheels[-1], "pip"),
                "--disable-pip-version-check",
                "--no-input",
            ]
        raise InstallError(
            f"pip is not installed for QGIS's Python ({interp.path}); install it first "
            "(Debian/Ubuntu: sudo apt install python3-pip) or put a pip-*.whl in the wheel folder"
        )

    def _source_args(self, build) -> List[str]:
        args = []
        if self.options.wheel_folder:
            # wheels only: an sdist in the folder would run its build backend (code) during the install
            args += ["--no-index", "--find-links", os.path.abspath(self.options.wheel_folder), "--only-binary", ":all:"]
        elif build.index_url:
            args += ["--extra-index-url", build.index_url]
        if self.options.proxy:
            args += ["--proxy", self.options.proxy]
        return args

    def _env(self) -> dict:
        env = python_finder.child_env()
        if self.options.wheel_folder:
            # offline means this folder only: not the indexes or links of pip.conf or PIP_* variables
            env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
            env["PIP_CONFIG_FILE"] = os.devnull
        env["PYTHONIOENCODING"] = "utf-8"
        return env

    def _plan(self, pip, reqs, constraints, build, tmp) -> List[Tuple[str, str, str, int]]:
        """(name, version, url, size) of what pip would install into QGIS's Python, given what it has."""
        report = os.path.join(tmp, "report.json")
        self.log("Resolving against what QGIS's Python already has…")
        self._pip(
            pip
            + ["install", "--dry-run", "--quiet", "--report", report, "-c", constraints, *self._source_args(build)]
            + reqs,
            "resolving",
        )
        with open(report, encoding="utf-8") as f:
            items = json.load(f).get("install", [])
        plan = []
        for item in items:
            url = item.get("download_info", {}).get("url", "")
            size = 0
            if url.startswith("file:"):
                try:
                    size = os.path.getsize(unquote(urlparse(url).path))
                except OSError:
                    size = 0
            plan.append((item["metadata"]["name"], item["metadata"]["version"], url, size))
        return plan

    def _pip(self, cmd, what, staging=None, expected=None, span=None) -> List[str]:
        """Run pip, streaming its output to the log; cancel kills it (and its children) at once."""
        return self._run(cmd, what, staging, expected, span, log_output=True, tool="pip")

    def _run(self, cmd, what, staging=None, expected=None, span=None, log_output=True, tool="pip") -> List[str]:
        """Run a child of QGIS's interpreter; its last output lines are returned. Cancel kills it (and
        its children) at once; a failure is an InstallError with the child's own reason."""
        kwargs = {}
        if os.name == "posix":
            kwargs["start_new_session"] = True
        else:
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(
                subprocess, "CREATE_NO_WINDOW", 0
            )
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self._env(),
            encoding="utf-8",
            errors="replace",
            **kwargs,
        )
        lines: "queue.Queue[Optional[str]]" = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout] + [lines.put(None)], daemon=True)
        reader.start()
        tail: List[str] = []
        last_size = 0.0
        while True:
            if self.cancelled():
                self._kill(proc)
                raise InstallCancelled("cancelled: nothing was installed (the unfinished folder was removed)")
            try:
                line = lines.get(timeout=0.25)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line.strip():
                tail = (tail + [line.rstrip()])[-20:]
                if log_output:
                    self.log(line.rstrip())
            if staging and span and time.monotonic() - last_size > 1.0:
                last_size = time.monotonic()
                done = _tree_size(staging)
                # unpacked wheels are ~2.5x their compressed size; never claim 100 % before pip ends
                frac = min(0.97, done / (2.5 * expected)) if expected else 0.5
                self.progress(span[0] + (span[1] - span[0]) * frac)
        rc = proc.wait()
        if rc != 0 and tool == "pip":
            detail = next((t for t in reversed(tail) if t.startswith("ERROR")), tail[-1] if tail else "")
            hint = ""
            if "No matching distribution" in detail:
                hint = (
                    "; the wheel folder has no wheel of it for this Python (build the folder with pip "
                    "download for QGIS's Python version and platform, as `make wheelhouse` does)"
                    if self.options.wheel_folder
                    else "; check the network or QGIS's proxy settings, or install from a folder of wheels"
                )
            raise InstallError(f"pip failed while {what} (exit {rc}): {detail.strip()[:400]}{hint}")
        return tail

    @staticmethod
    def _kill(proc) -> None:
        try:
            if os.name == "posix":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except (ProcessLookupError, OSError):
            pass
        proc.wait()

    def _check_cancel(self) -> None:
        if self.cancelled():
            raise InstallCancelled("cancelled: nothing was installed (the unfinished folder was removed)")

    def _verify(self, interp, site) -> dict:
        modules = ["numpy"] + [r.import_name for r in requirements.load()]
        cmd = [
            interp.path,
            os.path.join(HERE, "verify_install.py"),
            "--site",
            site,
            "--device",
            self.options.device,
            "--modules",
            ",".join(modules),
        ]
        engine = engine_folder()
        if engine:  # and the engine's own network on that device
            cmd += ["--engine", engine]
        # streamed like pip, so that cancel stops it at once (importing torch and running the
        # network can take tens of seconds); its verdict is its last line, JSON
        tail = self._run(cmd, "verifying", log_output=False, tool="verify")
        try:
            result = json.loads(next(t for t in reversed(tail) if t.startswith("{")))
        except (StopIteration, ValueError):
            raise InstallError(
                "the installed packages could not be verified: " f"{(tail[-1] if tail else 'no output')[:300]}"
            ) from None
        for name, info in result["imports"].items():
            if "error" not in info:
                where = "installed folder" if info["from_site"] else "QGIS's Python"
                self.log(f"  {name} {info['version']} ({where})")
        if result["failed"]:
            first = next(iter(result["failed"].items()))
            raise InstallError(
                f"installed, but {first[0]} does not import with QGIS's Python: {first[1]}; " "nothing was kept"
            )
        device = result["device"]
        if device and not device.get("matmul_ok", device["ok"]):
            raise InstallError(f"installed, but the device check failed: {device['line']}; nothing was kept")
        if device:
            # the packages work; a GPU that was asked for and is not used is said plainly, not hidden
            self.log(
                device["line"]
                if device["ok"]
                else f"WARNING: {self.options.device.upper()} was asked for but not used: {device['line']}"
            )
        return result

    def _nothing_to_do(self, interp, root, provided, gpus) -> InstallResult:
        existing = site_dir.folder(root, interp.tag)
        site = existing if site_dir.record(existing) else None
        verification = self._verify(interp, site) if site else self._verify(interp, "")
        line = self._device_line(verification)
        message = f"QGIS's Python already has every requirement. {self._gpu_note(gpus, verification)}{line}."
        self.progress(100)
        self.log(message)
        return InstallResult(site, [], provided, verification, True, message, gpus)

    def _device_line(self, verification) -> str:
        device = verification.get("device")
        if not device:
            return "verified"
        if device["ok"]:
            return device["line"]
        return f"WARNING: {self.options.device.upper()} was asked for but is not used: {device['line']}"

    @staticmethod
    def _gpu_note(gpus, verification) -> str:
        dev = (verification.get("device") or {}).get("device")
        if gpus and dev == "cpu":
            return (
                f"nvidia-smi sees {gpus[0].name}, but PyTorch runs on the CPU (choose a CUDA build and "
                "install again). "
            )
        return ""

    @staticmethod
    def _already_loaded(folder: str) -> List[str]:
        """Top-level modules of `folder` that this process has already imported from somewhere else."""
        out = []
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            mod = name[:-3] if name.endswith(".py") else name
            if "." in mod or mod.startswith(("_", ".")) or mod not in sys.modules:
                continue
            if not is_inside(getattr(sys.modules[mod], "__file__", None), folder):
                out.append(mod)
        return out

    @staticmethod
    def _in_use(final: str) -> bool:
        """True when modules of this process were imported from `final` (it cannot be replaced under them)."""
        return any(is_inside(getattr(mod, "__file__", None), final) for mod in list(sys.modules.values()))


def _unwritable(root: str, exc: OSError) -> str:
    return (
        f"cannot write the package folder {root}: {exc.strerror or exc} (is the QGIS profile folder "
        "read-only or full?); nothing was installed"
    )


def _norm(name: str) -> str:
    """PEP 503 name normalization: scikit_learn and Scikit-Learn are one distribution."""
    return name.lower().replace("_", "-").replace(".", "-")


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total
