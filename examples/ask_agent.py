"""Ask Sensorium about an image through the `Agent` facade.

Run from the repository root:

    python examples/ask_agent.py            # with the configured LLM (none by default)
    python examples/ask_agent.py --no-llm   # router + template replies, no LLM
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sensorium import Agent, LLMSettings, Settings, TurnResult

IMAGES = Path(__file__).parent / "images"


def show(result: TurnResult) -> None:
    """Print the reply, the decision and one line per expert call."""
    print(f"you: {result.question}")
    print(f"reply: {result.reply}")
    print(f"  answer: {result.answer}, confidence {result.confidence:.2f}")
    for item in result.evidence:
        said = item.answer if item.error is None else f"error: {item.error}"
        print(f"  {item.expert:<16} {said:<28} confidence {item.confidence:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-llm", action="store_true", help="plan with the router only")
    args = parser.parse_args()
    settings = Settings(llm=LLMSettings(backend="none")) if args.no_llm else Settings()

    agent = Agent(settings)
    for warning in agent.warnings:  # e.g. the LLM extra is not installed
        print(f"warning: {warning}")

    cat = agent.add_image(IMAGES / "chelsea.jpg")  # an ImageRef: the image is stored once
    first = agent.ask("What animal is this?", [cat])
    show(first)

    # Same thread, two images: one decision per image. Images are given per turn.
    second = agent.ask(
        "What colour is it?", [cat, IMAGES / "coffee.jpg"], thread_id=first.thread_id
    )
    show(second)
    for number, decision in enumerate(second.decisions, start=1):
        print(f"  image {number}: {decision.best_guess} ({decision.reason})")

    print(f"thread {first.thread_id} holds {len(agent.history(first.thread_id))} messages")


if __name__ == "__main__":
    main()
