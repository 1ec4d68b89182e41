"""The `sensorium` command line (typer + rich). One module per command group."""

from sensorium.cli import ask, chat, evals, index, serve, tools  # noqa: F401  (registers the commands)
from sensorium.cli.app import app, main

__all__ = ["app", "main"]
