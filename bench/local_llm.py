"""What running the local LLM out of process costs: llama.cpp in this process against the same
model behind the agent's child process (`ChatLocalLLM`), side by side in one run.

    python bench/local_llm.py            # 7 rounds: about a minute on 2 CPU cores
    python bench/local_llm.py --rounds 3

Both run SmolLM2-135M-Instruct (Q4_1) greedily with the same messages and token limit. Rounds
interleave the two, the order alternating; figures are medians. Start-up: loading the model
in process, against starting the child and waiting until it serves.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from rich.console import Console
from rich.table import Table

from sensorium.agent.llm import smollm2_path
from sensorium.agent.local_llm import ChatLocalLLM, LocalLLMServer

MAX_TOKENS = 48
MESSAGES = [
    ("system", "You write one short, friendly sentence that answers the user's question."),
    ("user", "Question: What animal is this?\nThe experts decided: cat (98% confidence)."),
]


def in_process() -> tuple[float, Any]:
    """Seconds to load the model into this process, and a function that runs one request."""
    from llama_cpp import Llama

    began = time.perf_counter()
    model = Llama(model_path=str(smollm2_path()), n_ctx=2048, seed=0, verbose=False)
    loaded = time.perf_counter() - began
    messages: Any = [{"role": role, "content": text} for role, text in MESSAGES]

    def ask() -> int:
        reply: Any = model.create_chat_completion(messages, max_tokens=MAX_TOKENS, temperature=0.0)
        return int(reply["usage"]["completion_tokens"])

    return loaded, ask


def out_of_process() -> tuple[float, Any, LocalLLMServer]:
    """Seconds until the child serves, a function that runs one request, and the child."""
    server = LocalLLMServer(smollm2_path())
    began = time.perf_counter()
    model = ChatLocalLLM.for_server(
        server, temperature=0.0, extra_body={"max_tokens": MAX_TOKENS}, seed=0, timeout=120
    )
    server.ready()
    started = time.perf_counter() - began
    messages = [SystemMessage(MESSAGES[0][1]), HumanMessage(MESSAGES[1][1])]

    def ask() -> int:
        reply = model.invoke(messages)
        usage = reply.usage_metadata or {}
        return int(usage.get("output_tokens", 0))

    return started, ask, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    load_in, ask_in = in_process()
    start_out, ask_out, server = out_of_process()
    times: dict[str, list[float]] = {"in process": [], "child process": []}
    tokens: dict[str, list[int]] = {"in process": [], "child process": []}
    runners = {"in process": ask_in, "child process": ask_out}
    for name in runners:  # warm-up: the first request of each pays one-off costs
        runners[name]()
    for round_ in range(rounds):
        order = list(runners) if round_ % 2 == 0 else list(reversed(runners))
        for name in order:
            began = time.perf_counter()
            tokens[name].append(runners[name]())
            times[name].append(time.perf_counter() - began)
    server.stop()

    table = Table(title=f"SmolLM2-135M, {MAX_TOKENS} tokens at most, {rounds} rounds (medians)")
    for column in ("", "start-up s", "request s", "tokens", "tokens/s", "vs in process"):
        table.add_column(column, justify="right" if column else "left")
    base = statistics.median(times["in process"])
    for name, startup in (("in process", load_in), ("child process", start_out)):
        median = statistics.median(times[name])
        count = statistics.median(tokens[name])
        table.add_row(
            name,
            f"{startup:.2f}",
            f"{median:.3f}",
            f"{count:g}",
            f"{count / median:.1f}",
            f"{median / base:.2f}x",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
