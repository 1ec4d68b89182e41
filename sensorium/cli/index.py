"""`sensorium index`, `index-texts` and `search`: the image collection and the text one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from sensorium.cli.app import ConfigOption, DebugOption, app, err, out
from sensorium.cli.progress import progress_reporter
from sensorium.cli.session import open_agent
from sensorium.tools import UserError

if TYPE_CHECKING:
    from sensorium.tools.indexer import IndexReport
    from sensorium.tools.text_index import TextHit


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
    with progress_reporter("Indexing", "indexed") as progress:
        report = agent.index(paths, prune=prune, batch_size=batch_size, progress=progress)
    total = agent.open_index().count()
    if as_json:
        typer.echo(json.dumps(report.model_dump() | {"total": total}))
    else:
        show_report(report, total)


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


@app.command("index-texts")
def index_texts(
    files: Annotated[
        list[Path],
        typer.Argument(help="JSONL files ({id, text, ...}) or text files (a line each)."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: ConfigOption = None,
    debug: DebugOption = False,
) -> None:
    """Index a collection of texts (captions, descriptions, notes) to find by image or text:
    new and changed entries are embedded, unchanged ones skipped."""
    agent = open_agent(config, no_llm=True, quiet=as_json)
    with progress_reporter("Indexing texts", "indexed") as progress:
        report = agent.index_texts(files, progress=progress)
    if as_json:
        typer.echo(json.dumps(report.model_dump()))
        return
    out.print(
        f"added {report.added}, replaced {report.replaced}, unchanged {report.unchanged}; "
        f"{report.total} text{'s' if report.total != 1 else ''} in the collection",
        highlight=False,
    )


@app.command()
def search(
    text: Annotated[str | None, typer.Argument(help="What to look for.")] = None,
    image: Annotated[
        Path | None, typer.Option("--image", "-i", help="Find images like this one.")
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", min=1, help="How many results.")] = 10,
    texts: Annotated[
        bool, typer.Option("--texts", help="Search the text collection instead of the images.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    config: ConfigOption = None,
    debug: DebugOption = False,
) -> None:
    """Search indexed images (or, with --texts, indexed texts) by text, by an example image,
    or by both (the text modifies it)."""
    if text is None and image is None:
        raise UserError("give a TEXT to search for, --image PATH, or both")
    agent = open_agent(config, no_llm=True, quiet=as_json)
    if texts:
        show_text_hits(agent.search_texts(text, image=image, k=k), as_json)
        return
    hits = agent.search(text, image=image, k=k)
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


def show_text_hits(hits: list[TextHit], as_json: bool) -> None:
    """Texts found, best first, with their scores and metadata."""
    if as_json:
        typer.echo(json.dumps([hit.model_dump() for hit in hits], ensure_ascii=False))
        return
    if not hits:
        out.print("The text collection is empty: run `sensorium index-texts FILE` first.")
        return
    table = Table(title=f"{len(hits)} results", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    table.add_column("text")
    for rank, hit in enumerate(hits, start=1):
        table.add_row(str(rank), hit.id, f"{hit.score:.3f}", hit.text)
    out.print(table)
