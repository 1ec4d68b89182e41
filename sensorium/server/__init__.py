"""`sensorium serve`: the agent over HTTP (native API with Server-Sent Events, an
OpenAI-compatible endpoint, and a web chat). `docs/server.md` documents it."""

from sensorium.server.app import create_app

__all__ = ["create_app"]
