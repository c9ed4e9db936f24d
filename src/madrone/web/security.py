"""Headers every response carries: a Content Security Policy that allows no inline script
and nothing from other origins but the configured basemap's tiles, no sniffing, no framing,
no referrer beyond this site."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response


def content_security_policy(basemap_url: str = "") -> str:
    """The policy: scripts, styles and fonts from this site only; images also from data:
    and blob: URLs (map canvases) and from the basemap's origin when one is set."""
    images = ["'self'", "data:", "blob:"]
    origin = _origin(basemap_url)
    if origin:
        images.append(origin)
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {' '.join(images)}",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def install_security_headers(app: Flask, basemap_url: str = "") -> None:
    """Add the headers to every response of ``app`` (a view's own values are kept)."""
    headers = {
        "Content-Security-Policy": content_security_policy(basemap_url),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
    }

    @app.after_request
    def _secure(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a tile URL template such as
    ``https://{s}.tile.example.org/{z}/{x}/{y}.png`` (subdomain placeholders widened)."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    host = parts.netloc.replace("{s}.", "*.")
    return f"{parts.scheme}://{host}"
