"""`sensorium eval`: run, resume after a kill, compare, calibrate, schema, list, and errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_eval_run import VQA_ROWS
from test_eval_suite import write_suite

SENSORIUM = Path(sys.executable).with_name("sensorium")


def many_rows(count: int) -> list[dict[str, object]]:
    """`count` VQA rows cycling through the four example questions."""
    return [VQA_ROWS[n % 4] | {"id": f"q{n:03d}"} for n in range(count)]


def test_run_prints_one_json_object_and_reuses_finished_samples(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    suite = write_suite(tmp_path / "suite", VQA_ROWS[:2])
    args = ["eval", "run", str(suite), "--no-llm", "--json", "--out", str(tmp_path / "runs")]
    first = cli(*args)
    assert first.code == 0, first.err
    summary = json.loads(first.out)["runs"][0]
    assert (summary["suite"], summary["computed"], summary["reused"]) == ("mine", 2, 0)
    assert {"fused", "classify"} <= set(summary["metrics"])
    assert Path(summary["run_dir"], "report.html").is_file()
    again = json.loads(cli(*args).out)["runs"][0]
    assert (again["computed"], again["reused"]) == (0, 2)


def test_run_shows_a_table_and_where_the_reports_are(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    suite = write_suite(tmp_path / "suite", VQA_ROWS[:1])
    result = cli("eval", "run", str(suite), "--no-llm", "--out", str(tmp_path / "runs"))
    assert result.code == 0, result.err
    assert "mine (vqa): 1 samples, 1 computed" in result.out
    assert "best single expert" in result.out and "report.html" in result.out
    assert "mine: 1/1" in result.err  # progress lines when stderr is not a terminal


def test_a_killed_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    suite = write_suite(tmp_path / "suite", many_rows(150))
    runs = tmp_path / "runs"
    command = [str(SENSORIUM), "eval", "run", str(suite), "--no-llm", "--out", str(runs)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        records = next(runs.glob("*/samples.jsonl"), None) if runs.exists() else None
        if records and records.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert records is not None
    finished = [json.loads(line)["id"] for line in records.read_text().splitlines()]
    assert 3 <= len(finished) < 150, "the run ended before it could be interrupted"
    rerun = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)["runs"][0]
    assert summary["reused"] >= len(finished)
    assert summary["reused"] + summary["computed"] == 150
    ids = [json.loads(line)["id"] for line in records.read_text().splitlines()]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 150  # nothing computed twice
    assert ids[: len(finished)] == finished


def test_compare_prints_differences_with_sample_counts(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    suite = write_suite(tmp_path / "suite", VQA_ROWS)
    runs = tmp_path / "runs"
    base = ["eval", "run", str(suite), "--no-llm", "--json", "--out", str(runs)]
    a = json.loads(cli(*base).out)["runs"][0]["run_dir"]
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"weights": {"colours": 0.0, "classify": 0.0}}))
    b = json.loads(cli(*base, "--weights", str(weights)).out)["runs"][0]["run_dir"]
    assert a != b
    shown = cli("eval", "compare", a, b)
    assert shown.code == 0, shown.err
    assert "B - A" in shown.out and "per sample (4 in both)" in shown.out
    data = json.loads(cli("eval", "compare", a, b, "--json").out)
    fused = next(
        d for d in data["differences"] if (d["scope"], d["metric"]) == ("fused", "accuracy")
    )
    assert (fused["n_a"], fused["n_b"]) == (4, 4)
    assert data["same_suite"] is True and data["paired"]["common"] == 4


def test_calibrate_writes_weights_that_a_run_can_use(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    suite = write_suite(tmp_path / "suite", many_rows(12))
    runs = tmp_path / "runs"
    run_dir = json.loads(
        cli("eval", "run", str(suite), "--no-llm", "--json", "--out", str(runs)).out
    )["runs"][0]["run_dir"]
    result = cli("eval", "calibrate", run_dir, "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["fitted"]["fused_fitted"] >= data["fitted"]["best_single_accuracy"]
    weights = Path(data["weights_file"])
    assert json.loads(weights.read_text())["weights"]
    # The reliability of every expert and of the decision, before and after calibration.
    page = Path(data["calibration_report"]).read_text()
    assert page.startswith("<!DOCTYPE html>") and "fused, calibrated" in page
    assert all(f"{name}, as run" in page for name in data["fitted"]["experts"])
    rerun = cli(
        "eval",
        "run",
        str(suite),
        "--no-llm",
        "--json",
        "--out",
        str(runs),
        "--weights",
        str(weights),
    )
    fitted = json.loads(rerun.out)["runs"][0]
    best = fitted["best_single"]
    assert fitted["metrics"]["fused"]["accuracy"] >= fitted["metrics"][best]["accuracy"]


def test_calibrate_fits_two_runs_on_their_train_split_and_checks_the_file(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    run_dirs = []
    for name, rows in (("first", many_rows(12)), ("second", many_rows(14))):
        suite = write_suite(tmp_path / name, rows, name=name)
        out = cli("eval", "run", str(suite), "--no-llm", "--json", "--out", str(runs)).out
        run_dirs.append(json.loads(out)["runs"][0]["run_dir"])
    weights = tmp_path / "fit.json"
    fitted = cli(
        "eval", "calibrate", *run_dirs, "--fit-on", "train", "--holdout", "0.4", "--out",
        str(weights), "--json",
    )  # fmt: skip
    assert fitted.code == 0, fitted.err
    data = json.loads(fitted.out)
    assert data["weights"]["fitted_on"]["runs"] == run_dirs
    assert data["weights"]["fitted_on"]["split"] == "train"
    checked = cli("eval", "calibrate", *run_dirs, "--holdout", "0.4", "--check", str(weights))
    assert checked.code == 0, checked.err
    assert "held-out split" in checked.out and "calibration error" in checked.out
    as_json = cli(
        "eval", "calibrate", *run_dirs, "--holdout", "0.4", "--check", str(weights), "--json"
    )  # fmt: skip
    held_out = json.loads(as_json.out)["held-out split"]
    # The file scores on the held-out samples what the fit reported for them.
    assert held_out["fused_fitted"] == data["held_out"]["fused_fitted"]
    assert held_out["samples"] == data["held_out"]["samples"]


def test_schema_and_list(cli) -> None:  # type: ignore[no-untyped-def]
    schema = json.loads(cli("eval", "schema").out)
    assert "vqa_row" in schema["$defs"]
    listed = json.loads(cli("eval", "list", "--json").out)
    assert {"easy-vqa", "photos-vqa", "photos-captions", "routing", "retrieval"} <= set(listed)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "run", "nope"], "no suite file or built-in suite named 'nope'"),
        (["eval", "run", "BAD", "--no-llm"], "data.jsonl:2: field 'answers'"),
        (["eval", "run", "GOOD", "--profile", "huge"], "invalid setting profile"),
        (["eval", "run", "GOOD", "--weights", "missing.json"], "missing.json not found"),
        (["eval", "compare", "nowhere", "nowhere"], "no results at nowhere"),
        (["eval", "calibrate", "."], "is not a run folder"),
        (["eval", "calibrate", ".", "--fit-on", "most"], "--fit-on must be 'all' or 'train'"),
    ],
)
def test_errors_are_one_line_with_exit_1(
    cli, tmp_path: Path, args: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    good = write_suite(tmp_path / "good", VQA_ROWS[:1])
    bad = write_suite(tmp_path / "bad", [VQA_ROWS[0], VQA_ROWS[1] | {"answers": []}])
    args = [{"BAD": str(bad), "GOOD": str(good)}.get(a, a) for a in args]
    result = cli(*args, "--out", str(tmp_path / "runs")) if args[1] == "run" else cli(*args)
    assert result.code == 1
    assert message in result.err
    assert result.err.strip().count("\n") == 0, result.err
