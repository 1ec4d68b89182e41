"""`sensorium index` and `sensorium search`: the image collection."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from sensorium.cli.app import ConfigOption, DebugOption, app, err, out
from sensorium.cli.session import open_agent
from sensorium.tools import UserError
from sensorium.tools.encoder import compose_query
from sensorium.tools.indexer import IndexReport, index_images


@app.command()
def index(
    paths: Annotated[list[Path], typer.Argument(help="Image files and folders (walked).")],
    prune: Annotated[
        bool, typer.Option("--prune", help="Remove entries whose files are gone.")
    ] = False,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Images per forward pass.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: ConfigOption = None,
    debug: DebugOption = False,
) -> None:
    """Index images for search: new and changed files are encoded, unchanged ones skipped."""
    missing = [str(path) for path in paths if not path.exists()]
    if len(missing) == len(paths):
        raise UserError(f"nothing to index: {', '.join(missing)} not found; check the paths")
    agent = open_agent(config, no_llm=True, quiet=as_json)
    store = agent.open_index()
    size = batch_size or agent.settings.index.batch_size
    if sys.stderr.isatty():
        columns = ("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeRemainingColumn(), console=err) as bar:
            task = bar.add_task("Indexing", total=None)
            report = index_images(
                store, agent.encoder, agent.images, paths, batch_size=size, prune=prune,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )  # fmt: skip
    else:
        # Logs and pipes get one line per batch instead of a redrawn bar.
        def log(done: int, total: int) -> None:
            print(f"indexed {done}/{total}", file=sys.stderr, flush=True)

        report = index_images(
            store, agent.encoder, agent.images, paths, batch_size=size, prune=prune, progress=log
        )
    if as_json:
        typer.echo(json.dumps(report.model_dump() | {"total": store.count()}))
    else:
        show_report(report, store.count())


def show_report(report: IndexReport, total: int) -> None:
    """The counts, then every file that could not be indexed and why."""
    out.print(
        f"added {report.added}, replaced {report.replaced}, unchanged {report.unchanged}, "
        f"pruned {report.pruned}, failed {len(report.failed)}; "
        f"{total} image{'s' if total != 1 else ''} in the index",
        highlight=False,
    )
    for path, reason in report.failed:
        err.print(f"[yellow]skipped[/] {path}: {reason}", highlight=False)


@app.command()
def search(
    text: Annotated[str | None, typer.Argument(help="What to look for.")] = None,
    image: Annotated[
        Path | None, typer.Option("--image", "-i", help="Find images like this one.")
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="How many results.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    config: ConfigOption = None,
    debug: DebugOption = False,
) -> None:
    """Search indexed images by text, by an example image, or by both (the text modifies it)."""
    if text is not None and not text.strip():
        raise UserError("the search text is empty; say what to look for, e.g. 'a cat'")
    if text is None and image is None:
        raise UserError("give a TEXT to search for, --image PATH, or both")
    agent = open_agent(config, no_llm=True, quiet=as_json)
    store = agent.open_index()
    encoder = agent.encoder
    text_vector = encoder.encode_texts([text])[0] if text else None
    image_vector = encoder.encode_images([agent.images.read(image)[1]])[0] if image else None
    if text_vector is not None and image_vector is not None:
        vector = compose_query(image_vector, text_vector)
    elif text_vector is not None:
        vector = text_vector
    else:
        assert image_vector is not None
        vector = image_vector
    hits = store.search(vector, k)
    if as_json:
        typer.echo(json.dumps([hit.model_dump() for hit in hits], ensure_ascii=False))
        return
    if not hits:
        out.print("The index is empty: run `sensorium index FOLDER` first.")
        return
    table = Table(title=f"{len(hits)} results", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("path")
    table.add_column("score", justify="right")
    table.add_column("labels", style="dim")
    for rank, hit in enumerate(hits, start=1):
        table.add_row(str(rank), hit.path, f"{hit.score:.3f}", hit.labels)
    out.print(table)
