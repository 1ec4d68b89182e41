"""`sensorium eval`: run suites, compare runs, fit fusion weights, print the suite schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from sensorium.cli.app import ConfigOption, DebugOption, NoLlmOption, Options, app, err, out
from sensorium.cli.progress import progress_reporter
from sensorium.tools import UserError

# The commands import the evals and the settings when they run: `sensorium.evals` loads the
# agent (langgraph, torch), which `sensorium --help` should not pay for.
if TYPE_CHECKING:
    from sensorium.evals import Calibration, Comparison, RunOutcome, SplitScores
    from sensorium.evals.results import RunResults, SampleRecord
    from sensorium.graphs.calibration import CalibrationMap

eval_app = typer.Typer(help="Evaluate experts, fusion and planner on suites.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@eval_app.command("run")
def run(
    suites: Annotated[
        list[str], typer.Argument(help="Suite files, or built-in names (`sensorium eval list`).")
    ],
    profile: Annotated[
        str | None, typer.Option("--profile", "-p", help="lite or standard (default: config's).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="Only the first N samples.")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, max=64, help="Samples run concurrently.")
    ] = 1,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", file_okay=False, help="Folder holding runs.")
    ] = Path("eval-runs"),
    weights: Annotated[
        Path | None,
        typer.Option("--weights", dir_okay=False, help="Fusion weights from `eval calibrate`."),
    ] = None,
    no_llm: NoLlmOption = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    debug: DebugOption = False,
) -> None:
    """Run suites (or resume them where they stopped) and write results and reports."""
    from sensorium.config import load_settings
    from sensorium.evals import load_suite, resolve_suite_paths, run_suite

    loaded = [load_suite(path) for spec in suites for path in resolve_suite_paths(spec)]
    overrides: dict[str, Any] = {}
    if profile:
        overrides["profile"] = profile
    if no_llm:
        overrides["llm"] = {"backend": "none"}
    if weights:
        overrides["fusion"] = {"weights_file": str(weights)}
    settings = load_settings(config or Options.config, overrides=overrides)
    outcomes: list[RunOutcome] = []
    for suite in loaded:
        with progress_reporter(f"{suite.name}", f"{suite.name}:") as progress:
            outcome = run_suite(
                suite,
                settings,
                out=out_dir,
                limit=limit,
                workers=workers,
                chat_model=None if no_llm else "auto",
                progress=progress,
            )
        outcomes.append(outcome)
        if not as_json:
            show_run(outcome)
    if as_json:
        typer.echo(json.dumps({"runs": [run_summary(o) for o in outcomes]}))
    failed = [o for o in outcomes if o.results.samples and o.results.errors == o.results.samples]
    if failed:
        raise UserError(f"every sample of {failed[0].results.suite} failed; see its report")


def run_summary(outcome: RunOutcome) -> dict[str, Any]:
    """The JSON shape of one run for `--json`."""
    results = outcome.results
    return {
        "suite": results.suite,
        "task": results.task,
        "run_dir": str(outcome.run_dir),
        "samples": results.samples,
        "errors": results.errors,
        "reused": outcome.reused,
        "computed": outcome.computed,
        "main_metric": results.main_metric,
        "best_single": results.best_single,
        "metrics": results.metrics,
        "counts": results.counts,
        "reports": [str(path) for path in outcome.reports],
    }


def show_run(outcome: RunOutcome) -> None:
    """The run's metrics as a table, then where the reports are."""
    results = outcome.results
    out.print(
        f"[bold]{results.suite}[/] ({results.task}): {results.samples} samples, "
        f"{outcome.computed} computed, {outcome.reused} reused from an earlier run, "
        f"{results.errors} with errors",
        highlight=False,
    )
    out.print(metrics_table(results))
    main, best = results.main_metric, results.best_single
    fused = results.metrics.get("fused", {}).get(main)
    if best and fused is not None:
        single = results.metrics[best][main]
        out.print(f"fused {main} {fused:.3f} vs best single expert ({best}) {single:.3f}")
    out.print(f"reports: {outcome.run_dir}/report.html, report.md, results.json", highlight=False)


LABELS = {
    "accuracy": "acc",
    "coverage": "coverage",
    "selective_accuracy": "acc answered",
    "latency_p50_ms": "p50 ms",
    "latency_p95_ms": "p95 ms",
    "latency_mean_ms": "mean ms",
    "exact_match": "exact",
    "precision": "P",
    "recall": "R",
    "ece": "ECE",
}


def metrics_table(results: RunResults) -> Table:
    """One row per scope with its metrics in short form (the reports spell them out)."""
    table = Table(title_justify="left")
    table.add_column("scope", no_wrap=True)
    table.add_column("metrics")
    table.add_column("n", justify="right")
    for scope, values in results.metrics.items():
        cells = " · ".join(
            f"{LABELS.get(name, name)} {_number(value, name)}" for name, value in values.items()
        )
        style = "bold" if scope == "fused" else None
        table.add_row(scope, cells, str(results.counts.get(scope, "")), style=style)
    return table


def _number(value: float | None, name: str, signed: bool = False) -> str:
    if value is None:
        return ""
    sign = "+" if signed else ""
    precision = 1 if name.endswith("_ms") or name == "support" else 3
    return f"{value:{sign}.{precision}f}"


@eval_app.command("compare")
def compare(
    run_a: Annotated[Path, typer.Argument(help="The first run folder (the baseline).")],
    run_b: Annotated[Path, typer.Argument(help="The second run folder.")],
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Print how run B differs from run A, metric by metric, with sample counts."""
    from sensorium.evals import compare_runs

    comparison = compare_runs(run_a, run_b)
    if as_json:
        typer.echo(json.dumps(comparison_summary(comparison)))
        return
    a, b = comparison.a, comparison.b
    out.print(f"A: {a.suite} ({a.samples} samples)   B: {b.suite} ({b.samples} samples)")
    if not comparison.same_suite:
        err.print("[yellow]warning:[/] the runs scored different suite content", highlight=False)
    table = Table()
    for column in ("scope", "metric", "A", "B", "B - A", "n A", "n B"):
        table.add_column(column, justify="left" if column in {"scope", "metric"} else "right")
    for d in comparison.differences:
        delta = d.delta
        shown = "" if delta is None else _number(delta, d.metric, signed=True)
        if delta:  # green when B is better: lower is better for latency and ECE
            better = (delta < 0) == (d.metric.endswith("_ms") or d.metric == "ece")
            shown = f"[{'green' if better else 'red'}]{shown}[/]"
        table.add_row(
            d.scope,
            d.metric,
            _number(d.a, d.metric),
            _number(d.b, d.metric),
            shown,
            str(d.n_a),
            str(d.n_b),
        )
    out.print(table)
    if comparison.paired:
        p = comparison.paired
        out.print(
            f"per sample ({p.common} in both): B better on {p.better}, worse on {p.worse}, "
            f"same on {p.same}"
        )


def comparison_summary(comparison: Comparison) -> dict[str, Any]:
    """The JSON shape of a comparison."""
    return {
        "a": comparison.a.suite,
        "b": comparison.b.suite,
        "same_suite": comparison.same_suite,
        "differences": [d.model_dump() | {"delta": d.delta} for d in comparison.differences],
        "paired": comparison.paired.model_dump() if comparison.paired else None,
    }


@eval_app.command("calibrate")
def calibrate_command(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run folders of vqa or agent suites (fitted together).")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", dir_okay=False, help="Weights file (default FIRST_RUN/weights.json)."
        ),
    ] = None,
    holdout: Annotated[
        float, typer.Option("--holdout", min=0.0, max=0.9, help="Share held out to test the fit.")
    ] = 0.3,
    min_kind_samples: Annotated[
        int, typer.Option("--min-kind-samples", min=1, help="Samples a question kind needs.")
    ] = 20,
    fit_on: Annotated[
        str,
        typer.Option(
            "--fit-on",
            help="'all' samples, or 'train': leave the held-out split out of the written fit.",
        ),
    ] = "all",
    check: Annotated[
        Path | None,
        typer.Option(
            "--check",
            dir_okay=False,
            help="Fit nothing: score this weights file on the runs (data it was not fitted on).",
        ),
    ] = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Fit calibration maps, a language prior and fusion weights from runs' results."""
    from sensorium.evals import calibrate, calibration_html, load_run_records

    if fit_on not in ("all", "train"):
        raise UserError(f"--fit-on must be 'all' or 'train', not {fit_on!r}")
    records = [record for run_dir in run_dirs for record in load_run_records(run_dir)]
    if check is not None:
        check_command(records, check, holdout, as_json)
        return
    result = calibrate(
        records,
        holdout=holdout,
        min_kind_samples=min_kind_samples,
        fit_on="train" if fit_on == "train" else "all",
    )
    result.weights.fitted_on["runs"] = [str(run_dir) for run_dir in run_dirs]
    target = output or run_dirs[0] / "weights.json"
    target.write_text(result.weights.model_dump_json(indent=2), encoding="utf-8")
    page = target.with_name(f"{target.stem}.calibration.html")
    page.write_text(calibration_html(result, run_dirs[0].name), encoding="utf-8")
    if as_json:
        files = {"weights_file": str(target), "calibration_report": str(page)}
        typer.echo(json.dumps(result.model_dump() | files))
        return
    show_calibration(result)
    out.print(
        f"reliability before and after: {page}\nweights: {target}\n"
        f"use them: `sensorium eval run SUITE --weights {target}`, or "
        f'[fusion] weights_file = "{target}" in the config file',
        highlight=False,
        markup=False,
    )


def check_command(
    records: list[SampleRecord], weights_file: Path, holdout: float, as_json: bool
) -> None:
    """Score a weights file on every sample of the runs, and on their held-out split (the
    part a file written with `--fit-on train` on the same runs never saw)."""
    from sensorium.evals import check_weights, held_out_split
    from sensorium.graphs import read_weights_file

    weights = read_weights_file(weights_file)
    splits = {"all samples": check_weights(records, weights)}
    held_out = held_out_split(records, holdout)
    if held_out:
        splits["held-out split"] = check_weights(held_out, weights)
    if as_json:
        typer.echo(json.dumps({label: scores.model_dump() for label, scores in splits.items()}))
        return
    show_accuracy(splits)
    for label, scores in splits.items():
        show_ece(scores, label, {})


def show_calibration(result: Calibration, domain: str = "") -> None:
    """Accuracy of each expert, fusion as run, and fusion with the fitted weights; then the
    same for each kind of picture that got a fit of its own."""
    title = f"{domain} pictures: " if domain else ("all pictures: " if result.domains else "")
    out.print(f"{title}chosen weighting: {result.chosen}", highlight=False)
    splits = {"fitted on": result.fitted, "held out": result.held_out}
    show_accuracy({label: scores for label, scores in splits.items() if scores is not None})
    maps = result.weights.calibration | (
        {"fused": result.weights.fused_calibration} if result.weights.fused_calibration else {}
    )
    where = "held out" if result.held_out else "fitted on (no held-out split)"
    show_ece(result.held_out or result.fitted, f"{domain} {where}".strip(), maps)
    for name, own in result.domains.items():
        show_calibration(own, name)


def show_accuracy(splits: dict[str, SplitScores]) -> None:
    """Fused accuracy as run and fitted beside the best single expert and the prior."""
    table = Table()
    for column in ("split", "n", "fused as run", "fused, fitted", "best single expert", "prior"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for label, scores in splits.items():
        prior = scores.prior
        table.add_row(
            label,
            str(scores.samples),
            f"{scores.fused_as_run:.3f}",
            f"{scores.fused_fitted:.3f}",
            f"{scores.best_single_accuracy:.3f} ({scores.best_single})",
            "-" if prior is None else f"{prior:.3f}",
        )
    out.print(table)


def show_ece(scores: SplitScores, where: str, maps: dict[str, CalibrationMap]) -> None:
    """Each expert's and the decision's calibration error, as run and calibrated."""
    ece = Table(title=f"calibration error (ECE), {where}")
    for column in ("answers of", "as run", "calibrated", "map"):
        ece.add_column(column, justify="left" if column in ("answers of", "map") else "right")
    for name, before in scores.ece_as_run.items():
        after = scores.ece_fitted.get(name)
        method = maps[name].method if name in maps else "-"
        ece.add_row(name, f"{before:.3f}", "-" if after is None else f"{after:.3f}", method)
    out.print(ece)


@eval_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of suite files (rows of each task under $defs)."""
    from sensorium.evals import suite_json_schema

    typer.echo(json.dumps(suite_json_schema(), indent=2))


@eval_app.command("list")
def list_suites(as_json: JsonOption = False) -> None:
    """The built-in suites."""
    from sensorium.evals import builtin_suites

    suites = {name: load_suite_quietly(path) for name, path in builtin_suites().items()}
    if as_json:
        typer.echo(json.dumps(suites))
        return
    table = Table()
    for column in ("suite", "task", "description"):
        table.add_column(column)
    for name, info in suites.items():
        table.add_row(name, info["task"], info["description"])
    out.print(table)


def load_suite_quietly(path: Path) -> dict[str, str]:
    """A built-in suite's task and description, read without loading its data."""
    import yaml

    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {"task": str(raw.get("task", "")), "description": str(raw.get("description", ""))}
