"""Routing accuracy: does the planner pick exactly the experts a request needs?

    python -m sensorium.evals.routing   # router alone, LLM alone, and the combined planner

The built-in set (`data/routing_foundation.jsonl`) is small and was written alongside the
router's rules, so treat its score as a smoke test, not a held-out measurement.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from pydantic import BaseModel, Field


class RoutingRow(BaseModel):
    """One request and the experts it needs."""

    id: str
    request: str
    image: bool = True
    expected_tools: list[str] = Field(min_length=1)


class RoutingScore(BaseModel):
    """Exact-set accuracy over a set of requests, with every miss listed."""

    total: int
    exact: int
    misses: list[dict[str, object]] = Field(default_factory=list)

    @property
    def accuracy(self) -> float:
        """Share of requests whose chosen tool set equals the expected set."""
        return self.exact / self.total if self.total else 0.0


def load_routing_rows(path: str | Path | None = None) -> list[RoutingRow]:
    """Rows from a JSONL file (default: the built-in foundation set)."""
    if path is None:
        text = files("sensorium.evals").joinpath("data/routing_foundation.jsonl").read_text()
    else:
        text = Path(path).read_text(encoding="utf-8")
    return [RoutingRow.model_validate(json.loads(line)) for line in text.splitlines() if line]


Chooser = Callable[["RoutingRow"], list[str]]


def score_routing(
    choose: Callable[[RoutingRow], list[str]], rows: list[RoutingRow]
) -> RoutingScore:
    """Score a tool chooser (request -> tool names) by exact-set accuracy."""
    exact = 0
    misses: list[dict[str, object]] = []
    for row in rows:
        chosen = choose(row)
        if set(chosen) == set(row.expected_tools):
            exact += 1
        else:
            misses.append(
                {
                    "id": row.id,
                    "request": row.request,
                    "expected": row.expected_tools,
                    "chosen": chosen,
                }
            )
    return RoutingScore(total=len(rows), exact=exact, misses=misses)


def _main() -> None:
    from PIL import Image

    from sensorium.agent import Agent

    agent = Agent()
    rows = load_routing_rows()
    image = agent.add_image(Image.new("RGB", (8, 8), (128, 128, 128)))

    def planned(row: RoutingRow) -> list[str]:
        plan = agent.planner.plan(row.request, [image] if row.image else [], [])
        return list(dict.fromkeys(call.tool for call in plan.calls))

    def llm_alone(row: RoutingRow) -> list[str]:
        try:
            return list(dict.fromkeys(agent.planner.llm_picks(row.request, int(row.image))))
        except Exception:
            return []

    choosers: dict[str, Chooser] = {
        "router": lambda row: agent.router.route(row.request),
        "planner (LLM vetted by router)": planned,
    }
    if agent.chat_model is not None:
        choosers["LLM alone"] = llm_alone
    for name, choose in choosers.items():
        score = score_routing(choose, rows)
        print(f"{name}: {score.exact}/{score.total} = {score.accuracy:.0%}")
        for miss in score.misses:
            print(f"   miss {miss['id']}: {miss['request']!r}", end=" ")
            print(f"expected {miss['expected']}, chose {miss['chosen']}")


if __name__ == "__main__":
    _main()
