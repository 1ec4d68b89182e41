"""The root `sensorium` command and the error boundary every subcommand shares."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from sensorium.tools import SensoriumError

app = typer.Typer(
    name="sensorium",
    help="Ask questions about images; experts answer, fusion decides, you see the evidence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tools_app = typer.Typer(help="Inspect the installed modality experts.", no_args_is_help=True)
app.add_typer(tools_app, name="tools")

out = Console()
err = Console(stderr=True)


class Options:
    """Options of the root command, shared by every subcommand."""

    debug = False
    config: Path | None = None


ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file.", dir_okay=False),
]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
NoLlmOption = Annotated[
    bool, typer.Option("--no-llm", help="Plan with the router and reply with templates.")
]


@app.callback()
def root(config: ConfigOption = None, debug: DebugOption = False) -> None:
    """Sensorium: a multimodal agent that shows its evidence."""
    Options.config = config
    Options.debug = debug


def fail(message: str, code: int = 1) -> None:
    """Print a one-line error and exit."""
    # Escaped: a message may hold brackets ("pip install 'sensorium[ray]'").
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise SystemExit(code)


def main() -> None:
    """Entry point: run the CLI; errors are one line (a traceback only with --debug)."""
    Options.debug = "--debug" in sys.argv[1:]
    try:
        # Standalone mode: typer reports usage errors itself (exit 2) and exits via SystemExit.
        app()
    except SensoriumError as exc:
        if Options.debug:
            raise
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:
        if Options.debug:
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        fail(f"unexpected {type(exc).__name__}: {first} (rerun with --debug for details)")
