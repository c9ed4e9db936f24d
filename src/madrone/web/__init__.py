"""The web app: ``create_app(settings)`` builds a Flask app on a catalog; nothing is built
at import time, so every test makes its own app on its own database."""

from madrone.web.app import create_app

__all__ = ["create_app"]
