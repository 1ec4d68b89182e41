"""Building the agent the CLI talks to: settings from file, env and flags; SQLite threads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from sensorium.cli.app import Options, err

if TYPE_CHECKING:
    from sensorium.agent import Agent


def open_agent(config: Path | None, *, no_llm: bool = False, quiet: bool = False) -> Agent:
    """The agent for one CLI invocation, with threads persisted in the data directory."""
    # Imported here, not at the top: the agent loads langgraph and torch, which commands that
    # run no agent (`--help`, `tools list`) should not pay for.
    from sensorium.agent import Agent
    from sensorium.config import load_settings
    from sensorium.graphs import sqlite_checkpointer

    overrides: dict[str, Any] = {"llm": {"backend": "none"}} if no_llm else {}
    settings = load_settings(config or Options.config, overrides=overrides)
    agent = Agent(settings, checkpointer=sqlite_checkpointer(settings.threads_path))
    if not quiet:
        for warning in agent.warnings:
            err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    return agent
