"""One function per task: run one sample through the agent's public API and record it.

`vqa` and `caption` ask a fixed set of experts on every sample (through `Agent.ask(...,
tools=...)`), so each expert can be scored alone beside the fused decision; `agent` and
`routing` let the planner choose, as a user's turn would (every step runs, so a search's hits
exist for the step after it), and score the experts it called; `retrieval` searches an index
of the suite's corpus.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image

from sensorium.agent import Agent, TurnResult
from sensorium.evals.metrics import ANSWER_METRICS, reciprocal_rank
from sensorium.evals.results import ExpertAnswer, SampleRecord
from sensorium.evals.suite import (
    AgentRow,
    CaptionRow,
    RetrievalRow,
    RoutingRow,
    Row,
    Suite,
    VqaRow,
)
from sensorium.graphs import Decision
from sensorium.tools import ImageRef
from sensorium.tools.profiles import ROLES, in_profile
from sensorium.tools.questions import question_kind

SampleRunner = Callable[[Agent, Suite, Row, str], SampleRecord]


def default_experts(agent: Agent, task: str) -> list[str]:
    """The experts a vqa suite (those that answer questions) or caption suite (describers) asks."""
    if task == "vqa":
        return [t.name for t in agent.registry if t.answers_questions and t.takes_question]
    roles = ROLES[agent.settings.profile]
    # Readers transcribe and matchers look texts up: neither describes.
    readers = (*roles.get("read", ()), *roles.get("texts", ()))
    return [
        t.name
        for t in agent.registry
        if t.answers_questions and not t.takes_question and t.needs_image and t.name not in readers
    ]


def run_vqa(agent: Agent, suite: Suite, row: Row, key: str) -> SampleRecord:
    """Every chosen expert answers the question; each answer and the fusion are scored."""
    assert isinstance(row, VqaRow)
    image = suite.image_path(row.image)
    experts = suite.file.experts or default_experts(agent, "vqa")
    result, latency = _timed_turn(agent, row.question, [image], experts)
    record = _answers(agent, result, row.answers, key, row.id, suite, latency)
    domain = agent.images.domain(result.images[0]) if result.images else None
    return record.model_copy(
        update={
            "image": str(image),
            "prompt": row.question,
            "kind": question_kind(row.question),
            "domain": domain,
        }
    )


def run_caption(agent: Agent, suite: Suite, row: Row, key: str) -> SampleRecord:
    """The describing experts caption the image (scored against the references later)."""
    assert isinstance(row, CaptionRow)
    image = suite.image_path(row.image)
    experts = suite.file.experts or default_experts(agent, "caption")
    result, latency = _timed_turn(agent, suite.file.request, [image], experts)
    record = _answers(agent, result, None, key, row.id, suite, latency)
    return record.model_copy(
        update={"image": str(image), "prompt": suite.file.request, "expected": row.references}
    )


def run_retrieval(agent: Agent, suite: Suite, row: Row, key: str) -> SampleRecord:
    """Search the indexed corpus; the record keeps the ranking and its reciprocal rank."""
    assert isinstance(row, RetrievalRow) and suite.corpus is not None
    corpus = suite.corpus.resolve()
    query_image = (corpus / row.query_image) if row.query_image else None
    start = time.perf_counter()
    if suite.texts is not None:  # texts for an image (or a text): ranked by their ids
        ranked = [hit.id for hit in agent.search_texts(row.query, image=query_image, k=10)]
    else:
        hits = agent.search(row.query, image=query_image, k=10)
        ranked = [_relative(Path(hit.path), corpus) for hit in hits]
    latency = (time.perf_counter() - start) * 1000
    return SampleRecord(
        key=key,
        id=row.id,
        task="retrieval",
        latency_ms=latency,
        image=str(query_image) if query_image else None,
        prompt=row.query or "",
        expected=row.relevant,
        ranked=ranked,
        score=reciprocal_rank(ranked, row.relevant),
    )


def run_routing(agent: Agent, suite: Suite, row: Row, key: str) -> SampleRecord:
    """A whole turn: which experts did the planner call, over all its steps?"""
    assert isinstance(row, RoutingRow)
    images: list[ImageRef] = []
    if isinstance(row.image, str):
        images = [agent.add_image(suite.image_path(row.image))]
    elif row.image:
        images = [agent.add_image(_stand_in_image())]
    result, latency = _timed_turn(agent, row.request, images, None)
    chosen = called_tools(result)
    expected = in_profile(row.expected_tools, agent.settings.profile)
    return SampleRecord(
        key=key,
        id=row.id,
        task="routing",
        latency_ms=latency,
        prompt=row.request,
        expected=expected,
        chosen=chosen,
        reply=result.reply,
        score=float(set(chosen) == set(expected)),
    )


def run_agent(agent: Agent, suite: Suite, row: Row, key: str) -> SampleRecord:
    """A whole turn as a user would run it: the planner chooses, fusion decides."""
    assert isinstance(row, AgentRow)
    names = [row.image] if isinstance(row.image, str) else row.image or []
    images = [suite.image_path(name) for name in names]
    result, latency = _timed_turn(agent, row.request, images, None)
    record = _answers(agent, result, row.answers, key, row.id, suite, latency)
    return record.model_copy(
        update={
            "image": str(images[0]) if images else None,
            "prompt": row.request,
            "kind": question_kind(row.request),
            "chosen": called_tools(result),
            "expected": in_profile(row.expected_tools or [], agent.settings.profile),
            "reply": result.reply,
            "score": record.fused.score if record.fused and row.answers else None,
        }
    )


def called_tools(result: TurnResult) -> list[str]:
    """The experts a turn ran, in the order first called (refused calls do not count)."""
    return list(dict.fromkeys(call.tool for call in result.plan.calls if call.error is None))


RUNNERS: dict[str, SampleRunner] = {
    "vqa": run_vqa,
    "caption": run_caption,
    "retrieval": run_retrieval,
    "routing": run_routing,
    "agent": run_agent,
}


def _timed_turn(
    agent: Agent, question: str, images: Sequence[Path | ImageRef], tools: list[str] | None
) -> tuple[TurnResult, float]:
    start = time.perf_counter()
    result = agent.ask(question, images, tools=tools)
    latency = (time.perf_counter() - start) * 1000
    agent.forget(result.thread_id)  # a long run must not keep every turn in memory
    return result, latency


def _answers(
    agent: Agent,
    result: TurnResult,
    answers: list[str] | None,
    key: str,
    sample_id: str,
    suite: Suite,
    latency: float,
) -> SampleRecord:
    """Each answering expert's answer and the fused decision, scored with the suite's answer
    metric when answers exist (a retrieval or an embedding is not an answer)."""
    metric = ANSWER_METRICS[suite.answer_metric]

    def score(answer: str | None) -> float | None:
        return metric(answer, answers) if answers else None

    experts = {
        evidence.expert: ExpertAnswer(
            answer=evidence.answer,
            confidence=evidence.confidence,
            latency_ms=evidence.latency_ms,
            error=evidence.error,
            score=score(evidence.answer if evidence.ok else None),
        )
        for evidence in result.evidence
        if evidence.expert not in agent.registry
        or agent.registry.get(evidence.expert).answers_questions
    }
    decision = result.decisions[0] if result.decisions else Decision()
    # The user was told the decided answer, or "I am not sure" (an abstention scores 0); the
    # leading answer is kept either way, to show in the failures.
    fused = ExpertAnswer(
        answer=decision.best_guess,
        confidence=decision.confidence,
        score=score(None if decision.abstained else decision.answer),
        abstained=decision.abstained,
    )
    errors = [f"{name}: {e.error}" for name, e in experts.items() if e.error]
    return SampleRecord(
        key=key,
        id=sample_id,
        task=suite.task,
        latency_ms=latency,
        expected=answers or [],
        experts=experts,
        fused=fused,
        error="; ".join(errors) or None,
        score=fused.score,
        answer_metric=suite.answer_metric,
    )


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _stand_in_image() -> Image.Image:
    """A neutral image for routing rows that only say an image is attached."""
    return Image.new("RGB", (8, 8), (128, 128, 128))
