"""QGIS's proxy settings, as the URL that pip (`--proxy`) and urllib understand.

QGIS applies its proxy (Settings ▸ Options ▸ Network) to its own QNetworkAccessManager only; the pip
process the installer starts and the model downloads do not go through Qt, so they get the same
proxy handed over explicitly. Read from the live fallback proxy QGIS configured, not from raw
settings keys, so what we pass is what QGIS itself uses.
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import quote


def proxy_url_from(kind: str, host: str, port: int, user: str = "", password: str = "") -> Optional[str]:
    """`http://user:pass@host:port` (or socks5://) for an HTTP/SOCKS proxy; None for no proxy."""
    if not host or kind in ("", "NoProxy", "DefaultProxy"):
        return None  # no proxy, or "use the system's": pip and urllib read the environment
    scheme = "socks5" if kind == "Socks5Proxy" else "http"
    auth = ""
    if user:
        auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    return f"{scheme}://{auth}{host}" + (f":{int(port)}" if port else "")


def qgis_proxy_url() -> Optional[str]:
    """The proxy QGIS is configured to use for the web, or None (no proxy / system proxy / no QGIS)."""
    try:
        from qgis.core import QgsNetworkAccessManager
        from qgis.PyQt.QtNetwork import QNetworkProxy
    except ImportError:
        return None
    proxy = QgsNetworkAccessManager.instance().fallbackProxy()
    names = {
        QNetworkProxy.ProxyType.HttpProxy: "HttpProxy",
        QNetworkProxy.ProxyType.HttpCachingProxy: "HttpProxy",
        QNetworkProxy.ProxyType.Socks5Proxy: "Socks5Proxy",
    }
    kind = names.get(proxy.type(), "NoProxy")
    return proxy_url_from(kind, proxy.hostName(), proxy.port(), proxy.user(), proxy.password())


def describe(url: Optional[str]) -> str:
    """The proxy for a log line, password hidden."""
    if not url:
        return "no proxy from QGIS (pip uses the environment's HTTP(S)_PROXY, if any)"
    scheme, rest = url.split("://", 1)
    if "@" in rest:
        creds, host = rest.rsplit("@", 1)
        rest = (creds.split(":", 1)[0] + ":***@" if ":" in creds else creds + "@") + host
    return f"QGIS proxy {scheme}://{rest}"
