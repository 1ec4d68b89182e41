"""Cold start and peak memory of one CLI question, each run a new process.

    python bench/coldstart.py            # full run: 2-4 minutes on 2 CPU cores
    python bench/coldstart.py --quick    # smoke run: 2 rounds
    python bench/coldstart.py --no-llm-only   # skip the runs that load SmolLM2

Commands, each run as a child of a fresh wrapper process, which reports the child's wall time
and peak resident memory (`getrusage(RUSAGE_CHILDREN).ru_maxrss`, so nothing but that child):

- import: `python -c "import sensorium"` (for reference);
- ask --no-llm: `sensorium ask "What animal is this?" --image examples/images/chelsea.jpg
  --no-llm` (router, lite experts, template reply);
- ask (LLM): the same without --no-llm (SmolLM2 plans and phrases the reply).

Every run gets an empty SENSORIUM_DATA_DIR; all share one SENSORIUM_CACHE_DIR (derived data such
as label embeddings), filled by one run first, which is reported on its own as the true first
start (empty cache). The commands are interleaved round by round, the order rotating; figures
are medians. Files the runs read stay in the OS page cache after the first run.
"""

from __future__ import annotations

import argparse
import json
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
ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "examples" / "images" / "chelsea.jpg"
SENSORIUM = str(Path(sys.executable).with_name("sensorium"))
ASK = [SENSORIUM, "ask", "What animal is this?", "--image", str(IMAGE)]
COMMANDS = {
    "import sensorium": [sys.executable, "-c", "import sensorium"],
    "ask --no-llm": [*ASK, "--no-llm"],
    "ask (LLM)": ASK,
}
# Runs in a new interpreter per measurement: its RUSAGE_CHILDREN then covers one child only.
WRAPPER = """
import json, resource, subprocess, sys, time
began = time.perf_counter()
child = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall, rc = time.perf_counter() - began, child.returncode
sys.stderr.write(child.stderr.decode(errors="replace")[-2000:])
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
print(json.dumps({"rc": rc, "wall_s": wall, "peak_mb": peak / 1024}))
"""


def run_once(command: list[str], cache_dir: Path) -> dict[str, float]:
    """Wall seconds and peak RSS (MiB) of one run of `command` with a new data directory."""
    with tempfile.TemporaryDirectory(prefix="sensorium-cold-data-") as data:
        env = {**os.environ, "SENSORIUM_DATA_DIR": data, "SENSORIUM_CACHE_DIR": str(cache_dir)}
        done = subprocess.run(
            [sys.executable, "-c", WRAPPER, *command],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=data,
        )  # cwd: not the checkout, whose sensorium/ folder would shadow the installed package
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result['rc']}):\n{done.stderr}")
    return {key: float(value) for key, value in result.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of --rounds")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-llm-only", action="store_true", help="skip 'ask (LLM)'")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    names = [n for n in COMMANDS if not (args.no_llm_only and n == "ask (LLM)")]
    console.print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, Python "
        f"{sys.version.split()[0]}; {SENSORIUM}"
    )
    began = time.perf_counter()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    first: dict[str, dict[str, float]] = {}
    for name in names[1:]:  # the true first start: a cache of its own, empty
        with tempfile.TemporaryDirectory(prefix="sensorium-cold-empty-") as empty:
            first[name] = run_once(COMMANDS[name], Path(empty))
    with tempfile.TemporaryDirectory(prefix="sensorium-cold-cache-") as cache:
        for name in names[1:]:
            run_once(COMMANDS[name], Path(cache))  # fills the shared cache; not reported
        for index in range(rounds):
            order = names[index % len(names) :] + names[: index % len(names)]
            for name in order:
                results[name].append(run_once(COMMANDS[name], Path(cache)))
    table = Table(title=f"Cold start, one process per run (median of {rounds} runs)")
    for column in ("command", "cache", "wall (s)", "min-max (s)", "peak RSS (MiB)"):
        table.add_column(column, justify="right")
    for name, run in first.items():
        table.add_row(name, "empty (1 run)", f"{run['wall_s']:.2f}", "", f"{run['peak_mb']:.0f}")
    for name in names:
        walls = [r["wall_s"] for r in results[name]]
        peaks = [r["peak_mb"] for r in results[name]]
        table.add_row(
            name,
            "warm",
            f"{statistics.median(walls):.2f}",
            f"{min(walls):.2f}-{max(walls):.2f}",
            f"{statistics.median(peaks):.0f}",
        )
    console.print(table)
    console.print(
        f"took {time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
