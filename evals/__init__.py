"""The evaluation harness: suites (YAML + JSONL), metrics, a resumable runner, reports,
run comparison, and fusion weights learned from results. `docs/evals.md` documents it.
"""

from sensorium.evals.calibrate import (
    Calibration,
    SplitScores,
    calibrate,
    check_weights,
    held_out_split,
    load_run_records,
)
from sensorium.evals.compare import Comparison, Difference, compare_runs
from sensorium.evals.report import calibration_html
from sensorium.evals.results import RunResults, SampleRecord, read_results
from sensorium.evals.runner import RunOutcome, run_suite
from sensorium.evals.suite import (
    Suite,
    SuiteError,
    builtin_suites,
    load_suite,
    resolve_suite_paths,
    suite_json_schema,
)

__all__ = [
    "Calibration",
    "Comparison",
    "Difference",
    "RunOutcome",
    "RunResults",
    "SampleRecord",
    "SplitScores",
    "Suite",
    "SuiteError",
    "builtin_suites",
    "calibrate",
    "calibration_html",
    "check_weights",
    "compare_runs",
    "held_out_split",
    "load_run_records",
    "load_suite",
    "read_results",
    "resolve_suite_paths",
    "run_suite",
    "suite_json_schema",
]
