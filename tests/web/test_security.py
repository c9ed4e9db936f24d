"""Security headers: a CSP without inline script, no sniffing, no framing; the basemap's
origin is the only foreign image source."""

from __future__ import annotations

from flask import Flask

from madrone.web.security import content_security_policy, install_security_headers


def test_policy_allows_no_inline_script_and_only_the_basemap() -> None:
    policy = content_security_policy("https://{s}.tile.example.org/{z}/{x}/{y}.png")
    directives = dict(part.split(" ", 1) for part in policy.split("; "))
    assert directives["script-src"] == "'self'"
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert directives["img-src"] == "'self' data: blob: https://*.tile.example.org"
    assert directives["frame-ancestors"] == "'none'"
    assert "img-src 'self' data: blob:;" in content_security_policy("") + ";"
    assert "javascript" not in content_security_policy("javascript:alert(1)")


def test_every_response_carries_the_headers() -> None:
    app = Flask(__name__)
    install_security_headers(app)

    @app.get("/x")
    def x():
        return "x"

    client = app.test_client()
    for path in ("/x", "/missing"):
        headers = client.get(path).headers
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["Content-Security-Policy"].startswith("default-src 'self'")
