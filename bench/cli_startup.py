"""Start-up time of the CLI commands that load no model, against importing typer and rich.

    python bench/cli_startup.py            # 7 rounds: about a minute on 2 CPU cores
    python bench/cli_startup.py --quick    # smoke run: 2 rounds

Commands, each run as a new process (wall time from spawn to exit, interpreter start
included):

- baseline: `python -c "import typer, rich.console"`, what any typer + rich CLI pays;
- `sensorium --help`;
- `sensorium tools list` (the lite profile's experts: entry points, tool schemas, a table).

The commands are interleaved round by round, the order rotating, and run in a temporary folder
with an empty SENSORIUM_DATA_DIR; figures are medians, and the ratio to the baseline is the
figure to compare (the target is 6x or less), since absolute times vary with the machine's load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 150)
SENSORIUM = str(Path(sys.executable).with_name("sensorium"))
COMMANDS = {
    "import typer, rich.console": [sys.executable, "-c", "import typer, rich.console"],
    "sensorium --help": [SENSORIUM, "--help"],
    "sensorium tools list": [SENSORIUM, "tools", "list"],
}
BASELINE = "import typer, rich.console"
TARGET = 6.0


def run_once(command: list[str], folder: str, env: dict[str, str]) -> float:
    """Wall seconds of one run of `command`, which must succeed."""
    began = time.perf_counter()
    # cwd: not the checkout, whose sensorium/ folder would shadow the installed package.
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of --rounds")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    names = list(COMMANDS)
    console.print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, Python "
        f"{sys.version.split()[0]}; {SENSORIUM}"
    )
    walls: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="sensorium-cli-startup-") as folder:
        env = {**os.environ, "SENSORIUM_DATA_DIR": folder}
        for name in names:
            run_once(COMMANDS[name], folder, env)  # warms the OS page cache; not reported
        for index in range(rounds):
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                walls[name].append(run_once(COMMANDS[name], folder, env))
    baseline = statistics.median(walls[BASELINE])
    table = Table(title=f"CLI start-up, one process per run (median of {rounds} runs)")
    for column in ("command", "wall (s)", "min-max (s)", "x baseline"):
        table.add_column(column, justify="right")
    for name in names:
        median = statistics.median(walls[name])
        ratio = median / baseline
        shown = f"{ratio:.1f}x" if ratio <= TARGET else f"[red]{ratio:.1f}x[/]"
        table.add_row(
            name, f"{median:.2f}", f"{min(walls[name]):.2f}-{max(walls[name]):.2f}", shown
        )
    console.print(table)
    console.print(f"target: {TARGET:.0f}x the baseline or less")


if __name__ == "__main__":
    main()
