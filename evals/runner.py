"""Run a suite: one record per sample, appended as it finishes, so a run that is interrupted
(Ctrl-C, a kill, a crash) resumes where it stopped.

A run lives in `OUT/<suite>-<key>/`, where the key hashes the suite's content, the
configuration that shapes results and the code (Sensorium's and the experts'); re-running
the same command finds the same folder and computes only the samples it lacks. The agent
works in its own data folder inside the run, so an evaluation never touches the user's image
store, index or threads.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, ConfigDict, ValidationError

from sensorium.agent import Agent, Settings
from sensorium.evals.report import write_reports
from sensorium.evals.results import RunResults, SampleRecord
from sensorium.evals.scoring import summarise
from sensorium.evals.suite import Row, Suite
from sensorium.evals.tasks import RUNNERS
from sensorium.tools import Registry

RECORDS_FILE = "samples.jsonl"
Progress = Callable[[int, int], None]


class RunOutcome(BaseModel):
    """What `run_suite` did: where, how many samples were reused and computed, the results."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    run_dir: Path
    results: RunResults
    reused: int
    computed: int
    reports: list[Path]


def config_digest(settings: Settings) -> str:
    """sha256 of the settings that shape results (paths, the index server and where the
    experts run excluded)."""
    # Where experts run (`experts`) changes no answer: a run resumes locally or on a cluster.
    shaping = settings.model_dump(
        mode="json", exclude={"data_dir", "cache_dir", "index", "experts"}
    )
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()


def code_digest(settings: Settings) -> str:
    """sha256 of Sensorium's source and of every enabled expert's module: after a code change
    a run starts afresh instead of reusing what the old code produced."""
    modules = [importlib.import_module(name) for name in _PACKAGES]
    files = {p for m in modules if m.__file__ for p in Path(m.__file__).parent.glob("*.py")}
    for tool in Registry.discover(settings.tools):
        if source := inspect.getsourcefile(tool.fn):
            files.add(Path(source))
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: (p.name, str(p))):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


_PACKAGES = (
    "sensorium",
    "sensorium.agent",
    "sensorium.graphs",
    "sensorium.tools",
    "sensorium.evals",
)


def run_key(suite: Suite, settings: Settings) -> str:
    """The key of a run: the suite's content, the configuration and the code, hashed."""
    parts = f"{suite.digest}:{config_digest(settings)}:{code_digest(settings)}"
    return hashlib.sha256(parts.encode()).hexdigest()[:12]


def run_suite(
    suite: Suite,
    settings: Settings,
    *,
    out: Path = Path("eval-runs"),
    limit: int | None = None,
    workers: int = 1,
    chat_model: BaseChatModel | Literal["auto"] | None = "auto",
    progress: Progress | None = None,
) -> RunOutcome:
    """Run (or resume) a suite and write its records and reports.

    Args:
        suite: a loaded suite (`load_suite`)
        settings: the agent's configuration (its data folder is replaced by the run's own)
        out: the folder holding runs
        limit: only the first N samples
        workers: samples run concurrently (threads sharing one agent and its models)
        chat_model: as for `Agent` ("auto" loads the configured LLM)
        progress: called with (samples done, samples total) as samples finish
    """
    key = run_key(suite, settings)
    run_dir = out.expanduser() / f"{suite.name}-{key}"
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_manifest(run_dir, suite, settings, key)
    rows = suite.rows[:limit] if limit is not None else suite.rows
    records_path = run_dir / RECORDS_FILE
    done = read_records(records_path, key)
    todo = [row for row in rows if row.id not in done]
    reused = len(rows) - len(todo)
    if progress:
        progress(reused, len(rows))
    if todo:
        agent = _workspace_agent(settings, run_dir, chat_model)
        if suite.texts is not None:  # image -> text retrieval searches a text collection
            agent.index_texts([suite.texts])
        elif suite.corpus is not None:  # retrieval, and agent suites searching a collection
            agent.index([suite.corpus])
        _run_samples(agent, suite, todo, key, records_path, done, workers, progress, len(rows))
    records = [done[row.id] for row in rows]
    results = summarise(suite, records, settings, config_digest(settings))
    reports = write_reports(results, run_dir)
    return RunOutcome(
        run_dir=run_dir, results=results, reused=reused, computed=len(todo), reports=reports
    )


def _run_samples(
    agent: Agent,
    suite: Suite,
    rows: list[Row],
    key: str,
    records_path: Path,
    done: dict[str, SampleRecord],
    workers: int,
    progress: Progress | None,
    total: int,
) -> None:
    run_sample = RUNNERS[suite.task]

    def one(row: Row) -> SampleRecord:
        try:
            return run_sample(agent, suite, row, f"{key}:{row.id}")
        except Exception as exc:  # one bad sample is a recorded failure, not a lost run
            where = traceback.extract_tb(exc.__traceback__)[-1]
            return SampleRecord(
                key=f"{key}:{row.id}",
                id=row.id,
                task=suite.task,
                error=f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})",
            )

    finished = total - len(rows)
    executor = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures: list[Future[SampleRecord]] = [executor.submit(one, row) for row in rows]
        with records_path.open("a", encoding="utf-8") as sink:
            for future in as_completed(futures):
                record = future.result()
                sink.write(record.model_dump_json() + "\n")
                sink.flush()
                done[record.id] = record
                finished += 1
                if progress:
                    progress(finished, total)
    finally:
        # On Ctrl-C, samples not started are dropped; finished ones are already on disk.
        executor.shutdown(wait=False, cancel_futures=True)


def read_records(path: Path, key: str) -> dict[str, SampleRecord]:
    """The finished samples of a run, by id; a line torn by a kill is cut off and ignored."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        path.write_bytes(data)  # later appends must start on a fresh line
    records: dict[str, SampleRecord] = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            record = SampleRecord.model_validate_json(line)
        except ValidationError:
            continue
        if record.key == f"{key}:{record.id}":
            records[record.id] = record
    return records


def _workspace_agent(
    settings: Settings, run_dir: Path, chat_model: BaseChatModel | Literal["auto"] | None
) -> Agent:
    """An agent whose images, index and threads live in the run folder (the cache is shared)."""
    experts = settings.experts
    if experts.backend == "ray" and experts.address is None:
        # The workspace holds no record of the cluster `experts up` started: name it, and
        # the file holding its token.
        from sensorium.tools.ray_cluster import find_cluster

        cluster = find_cluster(None, experts.auth_token_file, settings.data_dir)
        experts = experts.model_copy(
            update={"address": cluster.address, "auth_token_file": cluster.token_file}
        )
    workspace = settings.model_copy(
        update={
            "data_dir": run_dir / "workspace",
            "cache_dir": settings.cache_dir,
            "index": settings.index.model_copy(update={"url": None}),
            "experts": experts,
        }
    )
    return Agent(workspace, chat_model=chat_model)


def _write_manifest(run_dir: Path, suite: Suite, settings: Settings, key: str) -> None:
    manifest: dict[str, Any] = {
        "key": key,
        "suite": suite.name,
        "suite_path": str(suite.path),
        "suite_digest": suite.digest,
        "config_digest": config_digest(settings),
        "settings": settings.model_dump(mode="json"),
    }
    temporary = run_dir / "run.json.tmp"
    temporary.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(temporary, run_dir / "run.json")
