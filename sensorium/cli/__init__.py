"""The `sensorium` command line (typer + rich). One module per command group."""

from sensorium.cli import (  # noqa: F401  (registers the commands)
    ask,
    chat,
    evals,
    experts,
    index,
    serve,
    tools,
)
from sensorium.cli.app import app, main

__all__ = ["app", "main"]
