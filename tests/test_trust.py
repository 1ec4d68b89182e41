"""Answers a user can trust, end to end on a real photo with the shipped fit: silence is not
evidence (no prior answers for silent experts), no reply claims 0% or 100%, and one confidence
per expert answer (calibrated; the expert's own only on request, labelled)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sensorium import Settings
from sensorium.agent import Agent


def test_when_every_expert_is_silent_the_reply_abstains_naming_them(
    settings: Settings, chelsea: Path
) -> None:
    result = Agent(settings, chat_model=None).ask("Does the cat have whiskers?", [chelsea])
    assert result.evidence and all(e.answer is None for e in result.evidence)  # all silent
    [decision] = result.decisions
    assert decision.abstained and decision.answer is None and decision.votes == []
    asked = sorted({e.expert for e in result.evidence})
    assert decision.reason.endswith(", ".join(asked))
    assert "could tell from the image" in result.reply
    assert "prior" not in result.reply and "%" not in result.reply


def test_no_reply_claims_certainty_and_the_table_shows_calibrated_confidences(
    cli: Any, chelsea: Path
) -> None:
    shown = cli("ask", "What animal is this?", "-i", str(chelsea), "--no-llm", "--json")
    assert shown.code == 0, shown.err
    turn = json.loads(shown.out)
    assert "100%" not in turn["reply"] and " 0%" not in turn["reply"]
    [decision] = turn["decisions"]
    assert 0.01 <= decision["confidence"] <= 0.99
    votes = {v["call_id"]: v for v in decision["votes"]}
    assert votes and all(v["confidence"] <= 0.99 for v in votes.values())

    table = cli("ask", "What animal is this?", "-i", str(chelsea), "--no-llm")
    rows = {line.split("│")[1].strip(): line for line in table.out.splitlines() if "│" in line}
    calibrated = next(v for v in votes.values() if v["expert"] == "classify")["confidence"]
    assert re.search(rf"│\s+{calibrated:.2f}\s+│", rows["classify"]), table.out
    assert " raw" not in rows["classify"]  # one confidence: the calibrated one

    raw = cli("ask", "What animal is this?", "-i", str(chelsea), "--no-llm", "--raw")
    header = next(line for line in raw.out.splitlines() if "┃ expert" in line)
    assert re.search(r"confidence\s+┃\s+raw", header), raw.out
