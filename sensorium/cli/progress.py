"""Progress on long work: a bar on a terminal, one plain line per step in logs and pipes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from sensorium.cli.app import err


@contextmanager
def progress_reporter(title: str, verb: str) -> Iterator[Callable[[int, int], None]]:
    """A `(done, total)` callback: it redraws a bar on a TTY, else prints `verb done/total`."""
    if sys.stderr.isatty():
        columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeRemainingColumn(), console=err) as bar:
            task = bar.add_task(title, total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)
        return

    def log(done: int, total: int) -> None:
        print(f"{verb} {done}/{total}", file=sys.stderr, flush=True)

    yield log
