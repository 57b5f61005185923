"""Issue 12: the installer's parts on their own: finding QGIS's real interpreter, the PyTorch build for
the NVIDIA driver, QGIS's proxy handed to pip, and what the installer refuses. (The end-to-end install
is tests/test_plugin_installer.py.)"""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from spectralx_qgis.setup import gpu_detect, proxy, python_finder
from spectralx_qgis.setup.errors import InstallError
from spectralx_qgis.setup.installer import Installer, InstallOptions

SYSTEM_PYTHON = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"


def _fake_python(path, prefix, version=(3, 11)):
    """An executable that answers the probe as a Python of another installation would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {
        "version": list(version),
        "prefix": prefix,
        "executable": str(path),
        "platform": "linux-x86_64",
        "numpy": None,
        "pip": "23.0",
    }
    path.write_text(f"#!/bin/sh\necho '{json.dumps(info)}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


# ------------------------------------------------------------------ interpreter
def test_this_process_finds_its_own_interpreter():
    found = python_finder.find()
    assert os.path.realpath(found.path) == os.path.realpath(sys.executable)
    assert found.version == sys.version_info[:2] and found.pip and found.numpy
    assert found.tag == f"python{sys.version_info.major}.{sys.version_info.minor}-linux-x86_64"


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="no system Python")
def test_inside_qgis_process_the_executable_is_qgis_and_the_prefix_finds_python():
    # qgis_process.bin embeds Debian's Python: sys.executable is not a python, sys.prefix is /usr
    found = python_finder.find("/usr/bin/qgis_process.bin", "/usr", sys.version_info[:2])
    assert os.path.realpath(found.path) == os.path.realpath(SYSTEM_PYTHON) and found.prefix == "/usr"


def test_a_shim_or_another_pythons_interpreter_is_refused(tmp_path):
    shim = _fake_python(tmp_path / "pyenv" / "shims" / "python3", sys.prefix)
    other = _fake_python(tmp_path / "other" / "bin" / "python3", "/opt/other-python")
    with pytest.raises(InstallError) as err:
        python_finder.find(shim, str(tmp_path / "qgis-prefix"), sys.version_info[:2])
    assert "give its path in the installer's Python field" in str(err.value)
    assert python_finder._is_shim(shim)
    # a working Python of another installation: it runs, but is not QGIS's
    with pytest.raises(InstallError) as err:
        python_finder.find(other, str(tmp_path / "qgis-prefix"), sys.version_info[:2])
    assert "belongs to /opt/other-python" in str(err.value)
    with pytest.raises(InstallError, match="is not a working Python"):
        python_finder.probe("/bin/true")


# ------------------------------------------------------------------ GPU and build
def test_builds_follow_the_driver():
    h200 = gpu_detect.parse_nvidia_smi("NVIDIA H200, 580.159.04, 143771\n")
    assert h200 == [gpu_detect.Gpu("NVIDIA H200", "580.159.04", 143771)]
    assert [b.id for b in gpu_detect.builds(h200, "linux")] == ["cu130", "cu128", "cu126", "cpu"]
    # a 570 driver cannot run CUDA 13; a 535 one runs 12.6 only through minor-version compatibility
    assert [b.id for b in gpu_detect.builds(gpu_detect.parse_nvidia_smi("RTX 4070, 570.86.10, 12282"), "linux")] == [
        "cu128",
        "cu126",
        "cpu",
    ]
    old = gpu_detect.builds(gpu_detect.parse_nvidia_smi("GTX 1080, 535.183.01, 8192"), "linux")
    assert [b.id for b in old] == ["cu126", "cpu"] and "minor-version compatibility" in old[0].label
    assert [b.id for b in gpu_detect.builds(gpu_detect.parse_nvidia_smi("K80, 470.57.02, 11441"), "linux")] == ["cpu"]
    # Windows has its own minimums (580.88 for CUDA 13.0)
    assert gpu_detect.builds(gpu_detect.parse_nvidia_smi("RTX, 580.70, 8192"), "win32")[0].id == "cu128"
    assert [b.id for b in gpu_detect.builds([], "linux")] == ["cpu"]
    assert [b.id for b in gpu_detect.builds(h200, "darwin")] == ["default"]
    cu = gpu_detect.builds(h200, "linux")[0]
    assert cu.torch_line("torch==2.13.0") == "torch==2.13.0+cu130"
    assert cu.index_url == "https://download.pytorch.org/whl/cu130"
    assert gpu_detect.Build("default", "", None).torch_line("torch==2.13.0") == "torch==2.13.0"


def test_no_driver_means_no_gpu(monkeypatch):
    class Failed:
        returncode, stdout = 9, ""

    monkeypatch.setattr(gpu_detect.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    assert gpu_detect.nvidia_gpus(run=lambda *a, **k: Failed()) == []
    monkeypatch.setattr(gpu_detect.shutil, "which", lambda name: None)
    assert gpu_detect.nvidia_gpus() == []


# ------------------------------------------------------------------ proxy
def test_proxy_url_and_its_log_line():
    url = proxy.proxy_url_from("HttpProxy", "proxy.lan", 3128, "ana", "p@ss:w")
    assert url == "http://ana:p%40ss%3Aw@proxy.lan:3128"
    assert proxy.describe(url) == "QGIS proxy http://ana:***@proxy.lan:3128"
    assert proxy.proxy_url_from("Socks5Proxy", "s.lan", 1080) == "socks5://s.lan:1080"
    assert proxy.proxy_url_from("DefaultProxy", "x", 1) is None and proxy.proxy_url_from("HttpProxy", "", 1) is None


def test_qgis_proxy_settings_reach_pip(qgis_app, tmp_path):
    from qgis.core import QgsNetworkAccessManager, QgsSettings

    settings = QgsSettings()
    keys = {
        "proxy/proxyEnabled": True,
        "proxy/proxyType": "HttpProxy",
        "proxy/proxyHost": "proxy.lan",
        "proxy/proxyPort": "3128",
        "proxy/proxyUser": "ana",
        "proxy/proxyPassword": "secret",
    }
    old = {k: settings.value(k) for k in keys}
    try:
        for k, v in keys.items():
            settings.setValue(k, v)
        QgsNetworkAccessManager.instance().setupDefaultProxyAndCache()
        url = proxy.qgis_proxy_url()
        assert url == "http://ana:secret@proxy.lan:3128"
        args = Installer(InstallOptions(proxy=url))._source_args(gpu_detect.Build("cpu", "", "https://x/cpu"))
        assert args[args.index("--proxy") + 1] == url and "--extra-index-url" in args
    finally:
        for k, v in old.items():
            settings.remove(k) if v is None else settings.setValue(k, v)
        QgsNetworkAccessManager.instance().setupDefaultProxyAndCache()
    assert proxy.qgis_proxy_url() is None


# ------------------------------------------------------------------ installer
def test_offline_ignores_pip_config_and_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    monkeypatch.setenv("PIP_INDEX_URL", "https://example.invalid/simple")
    inst = Installer(InstallOptions(wheel_folder=str(tmp_path)))
    env = inst._env()
    assert env["PIP_CONFIG_FILE"] == os.devnull and not [
        k for k in env if k.startswith("PIP_") and k != "PIP_CONFIG_FILE"
    ]
    assert inst._source_args(gpu_detect.Build("cpu", "", "https://x/cpu")) == [
        "--no-index",
        "--find-links",
        str(tmp_path),
        "--only-binary",
        ":all:",
    ]


def test_refusals_are_one_line_and_write_nothing(tmp_path):
    root = tmp_path / "packages"
    with pytest.raises(InstallError, match="wheel folder .* does not exist"):
        Installer(InstallOptions(python=sys.executable, wheel_folder=str(tmp_path / "nope"), root=str(root))).run()
    with pytest.raises(InstallError, match="unknown PyTorch build 'cu99'"):
        Installer(InstallOptions(python=sys.executable, build="cu99", root=str(root))).run()
    nopip = python_finder.Interpreter("/x/python", (3, 11), "/x", "linux-x86_64", None, None)
    with pytest.raises(InstallError, match="pip is not installed for QGIS's Python"):
        Installer(InstallOptions(root=str(root)))._pip_command(nopip)
    assert not root.exists()


@pytest.mark.slow
def test_an_interpreter_that_has_everything_installs_nothing(tmp_path):
    """The project venv has the whole list: the installer says so, verifies, and creates no folder."""
    log = []
    result = Installer(
        InstallOptions(python=sys.executable, root=str(tmp_path / "packages"), build="cpu"), log=log.append
    ).run()
    assert result.installed == [] and result.folder is None
    assert "Nothing to install." in log
    assert result.verification["ok"] and result.verification["device"]["device"] == "cpu"
    assert result.message.startswith("QGIS's Python already has every requirement. CPU: matmul ok")
    assert not (tmp_path / "packages").exists()


def test_packages_this_qgis_already_loaded_ask_for_a_restart(tmp_path):
    """A CUDA torch installed while QGIS runs a CPU torch: the new one is used after a restart only."""
    import torch  # noqa: F401  (loaded from the venv, as QGIS would have its own)

    for name in ("torch", "spectralx_never_imported"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / "torch-2.13.0.dist-info").mkdir()
    assert Installer._already_loaded(str(tmp_path)) == ["torch"]


def test_another_python_version_or_an_incomplete_wheel_folder_is_refused(tmp_path):
    root = tmp_path / "packages"
    other = _fake_python(tmp_path / "py312" / "bin" / "python3", "/opt/py312", version=(3, 12))
    with pytest.raises(InstallError, match=r"is Python 3\.12, but this QGIS runs Python 3\.11"):
        Installer(InstallOptions(python=other, root=str(root))).run()
    # offline, a folder without torch: pip's own reason, in one line, and nothing written
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with pytest.raises(InstallError) as err:
        Installer(
            InstallOptions(
                python=SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable,
                wheel_folder=str(wheels),
                root=str(root),
            )
        ).run()
    assert "pip failed while resolving" in str(err.value) and "\n" not in str(err.value)
    assert not root.exists()


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="no system Python")
def test_pip_really_goes_through_qgis_proxy(tmp_path, monkeypatch):
    """A proxy on 127.0.0.1 that refuses everything: pip's requests for the index reach it, with the
    credentials QGIS holds (so an install behind a corporate proxy uses QGIS's settings)."""
    import base64
    import socketserver
    import threading

    seen = []

    class Refuse(socketserver.StreamRequestHandler):
        def handle(self):
            head = []
            while True:
                line = self.rfile.readline(65536).decode("latin-1").rstrip("\r\n")
                if not line:
                    break
                head.append(line)
            seen.append(head)
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Refuse)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "10")
    url = f"http://ana:s3cret@127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(InstallError, match="pip failed while resolving"):
            Installer(
                InstallOptions(python=SYSTEM_PYTHON, proxy=url, build="cpu", root=str(tmp_path / "packages"))
            ).run()
    finally:
        server.shutdown()
        server.server_close()
    assert seen, "pip never contacted the proxy"
    first = seen[0]
    assert first[0].startswith("CONNECT ") and ":443 " in first[0]  # an HTTPS index, tunnelled
    auth = "Proxy-Authorization: Basic " + base64.b64encode(b"ana:s3cret").decode()
    assert any(line == auth for line in first)
    assert not (tmp_path / "packages").exists()


def test_verification_runs_the_engine_network_not_only_a_matmul(tmp_path, monkeypatch):
    """A matrix product can pass where the engine's own kernels fail (the AoMoA dtype clash under CUDA
    autocast did): the verifier also runs a small SpectralX network and compares it with the CPU."""
    import shutil

    from spectralx_qgis.setup import verify_install
    from spectralx_qgis.setup.deps import engine_folder

    for name in [m for m in sys.modules if m.startswith("_spectralx_verify")]:
        monkeypatch.delitem(sys.modules, name)
    good = verify_install.verify(["torch"], "cpu", engine_dir=engine_folder())
    assert good["ok"] and good["device"]["network"]["agreement"] == 1.0
    assert good["device"]["line"].endswith("SpectralX network ok on cpu (float32, 100.0% of pixels as on the CPU)")
    # an engine whose gate breaks on this device: the installation is reported unusable
    broken = tmp_path / "engine"
    shutil.copytree(engine_folder(), broken)
    gate = broken / "model" / "aomoa.py"
    gate.write_text(
        gate.read_text().replace(
            "        logits = self.w_gate(z)\n", "        raise RuntimeError('no kernel image for this GPU')\n", 1
        )
    )
    for name in [m for m in sys.modules if m.startswith("_spectralx_verify")]:
        monkeypatch.delitem(sys.modules, name)
    bad = verify_install.verify(["torch"], "cpu", engine_dir=str(broken))
    assert not bad["ok"] and bad["device"]["matmul_ok"] is False
    assert "the SpectralX network fails on cpu: RuntimeError: no kernel image for this GPU" in bad["device"]["line"]
