"""The vision-language model expert (standard profile): a VLM answers the question, or writes a
caption, and its confidence comes from its own token probabilities.

Two backends behind the one expert, chosen by `[models]`:
- `vlm_endpoint` set: any OpenAI-compatible vision server (vLLM, llama.cpp's server, Ollama's
  `/v1`, hosted APIs) through `langchain-openai`, the image as a data URL, asking for
  `logprobs`; the model is `[models] vlm`.
- otherwise: `[models] vlm` in transformers (`AutoModelForImageTextToText`: SmolVLM/Idefics3,
  LLaVA, Qwen2-VL, ...) on the model host, greedy decoding, the log-probabilities read from
  the raw logits.

Either way the confidence is exp(mean log-probability) of the answer's tokens, the geometric-
mean probability per token (as for BLIP), so a long caption is not punished for its length.
"""

from __future__ import annotations

import base64
import math
from typing import Any

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.errors import ModelUnavailableError
from sensorium.tools.evidence import Evidence, ImageRef
from sensorium.tools.vlm_local import MAX_NEW_TOKENS, generate_answer

SHORT_ANSWER = "Answer with a single word or a short phrase."
CAPTION = "Describe this image in one sentence."


@expert(
    examples=[
        "What is the person in this photo doing?",
        "What breed is this dog?",
        "Describe this picture in detail",
        "What is unusual about this image?",
        "Ask the vision-language model about this image",
    ]
)
def vlm_answer(ctx: ToolContext, image: ImageRef, question: str = "") -> Evidence:
    """Answer a question about an image, or describe it, with a vision-language model (open
    questions, reasoning about the scene, fine detail).

    Args:
        image: the image to look at
        question: the question (none: a one-sentence description)
    """
    prompt = f"{question.strip()} {SHORT_ANSWER}" if question.strip() else CAPTION
    if ctx.models.vlm_endpoint:  # the stored PNG as it is: no decoding and encoding again
        png = ctx.images.require(image).read_bytes()
        text, log_probs, details = _ask_endpoint(ctx, png, prompt)
    else:
        text, log_probs, details = generate_answer(ctx, ctx.images.load(image), prompt)
    text = text.strip().rstrip(".") if question.strip() else text.strip()
    if not text:
        return Evidence(payload=details | {"skipped": "the model answered nothing"})
    return Evidence(answer=text, confidence=mean_probability(log_probs), payload=details)


def mean_probability(log_probs: list[float]) -> float:
    """exp(mean log-probability) of the answer's tokens (0 when there are none)."""
    if not log_probs:
        return 0.0
    return min(1.0, math.exp(sum(log_probs) / len(log_probs)))


def data_url(png: bytes) -> str:
    """PNG bytes as a data URL, as vision APIs take an image."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _ask_endpoint(
    ctx: ToolContext, png: bytes, prompt: str
) -> tuple[str, list[float], dict[str, Any]]:
    try:
        from langchain_core.messages import HumanMessage
        from langchain_openai import ChatOpenAI
    except ImportError:
        raise ModelUnavailableError(
            "the VLM endpoint needs langchain-openai: pip install 'sensorium[llm]'"
        ) from None
    models = ctx.models
    chat = ChatOpenAI(
        base_url=models.vlm_endpoint,
        api_key=models.vlm_api_key or "unused",  # type: ignore[arg-type]
        model=models.vlm,
        temperature=0,
        max_completion_tokens=MAX_NEW_TOKENS,  # as many as the transformers backend
        logprobs=True,
        max_retries=0,
        timeout=120,
    )
    message = HumanMessage(
        content=[
            {"type": "text", "text": prompt},
            {"type": "image_url", "image_url": {"url": data_url(png)}},
        ]
    )
    try:
        reply = chat.invoke([message])
    except Exception as exc:  # the server's own words, in one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelUnavailableError(
            f"the VLM endpoint {models.vlm_endpoint} failed: {first}; is the server up, and "
            f"does it serve {models.vlm!r} with images?"
        ) from None
    tokens = (reply.response_metadata.get("logprobs") or {}).get("content") or []
    log_probs = [float(token["logprob"]) for token in tokens]
    details: dict[str, Any] = {"model": models.vlm, "endpoint": models.vlm_endpoint}
    if not log_probs:
        details["note"] = "the server returned no log-probabilities; confidence unknown (0)"
    return str(reply.content), log_probs, details
