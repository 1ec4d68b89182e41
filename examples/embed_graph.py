"""Embed Sensorium's turn graph in an application, like any LangGraph graph.

Run from the repository root:

    python examples/embed_graph.py            # with the configured LLM (none by default)
    python examples/embed_graph.py --no-llm   # router + template replies, no LLM

The graph carries images by reference: put each image in the image store the graph's
experts read from (`settings.images_dir`) and pass the returned `ImageRef`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage

from sensorium import Evidence, ImageStore, LLMSettings, Settings, build_graph

IMAGE = Path(__file__).parent / "images" / "chelsea.jpg"


def show(state: dict[str, Any]) -> None:
    """Print the reply, then one line per expert call."""
    print(f"reply: {state['reply']}")
    evidence: list[Evidence] = state["evidence"]
    for item in evidence:
        said = item.answer if item.error is None else f"error: {item.error}"
        print(f"  {item.expert:<16} {said:<28} confidence {item.confidence:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-llm", action="store_true", help="plan with the router only")
    args = parser.parse_args()
    settings = Settings(llm=LLMSettings(backend="none")) if args.no_llm else Settings()

    graph = build_graph(settings)  # threads live in memory; pass checkpointer= to persist
    store = ImageStore(
        settings.images_dir,
        max_pixels=settings.max_image_pixels,
        max_bytes=settings.max_image_bytes,
    )
    image = store.add(IMAGE)
    config = {"configurable": {"thread_id": "embed-demo"}}

    question = "What animal is this?"
    state = graph.invoke(
        {"messages": [HumanMessage(question)], "question": question, "images": [image]}, config
    )
    print(f"you: {question}")
    show(state)

    # `images` is plain state: a turn that does not pass it keeps the thread's last images.
    question = "What colour is it?"
    state = graph.invoke({"messages": [HumanMessage(question)], "question": question}, config)
    print(f"you: {question}")
    show(state)

    messages = graph.get_state(config).values["messages"]
    print(f"thread embed-demo holds {len(messages)} messages")


if __name__ == "__main__":
    main()
