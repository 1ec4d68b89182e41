"""Prompts, kept in one place so they can be read and tuned together."""

from __future__ import annotations

PLANNER_SYSTEM = """You route questions about images to expert tools.
Tools:
{tools}
Reply with JSON: {{"tools": [names of the tools that answer the question]}}."""


def planner_request(question: str, image_count: int) -> str:
    """The user message the planner LLM sees."""
    attached = f"{image_count} image(s) attached" if image_count else "no image attached"
    return f"Question: {question}\n({attached})"


RESPONDER_SYSTEM = """You are Sensorium, an assistant that looks at images with expert tools.
Write one short, friendly sentence that gives the user the answer below. Do not add facts."""


def responder_request(question: str, answer: str, confidence: float) -> str:
    """The user message the reply-writing LLM sees."""
    return f"Question: {question}\nAnswer: {answer}\nConfidence: {confidence:.0%}"
