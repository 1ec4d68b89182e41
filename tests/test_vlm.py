"""The VLM expert: on a tiny random LLaVA built from config (confidence recomputed from the raw
logits), and through an OpenAI-compatible vision server on loopback (the request carries the
image and the question; the token log-probabilities become the confidence)."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from sensorium.tools import ImageStore, ModelHost, ToolContext
from sensorium.tools.hf_models import StandardModels, load_pretrained
from sensorium.tools.vlm import SHORT_ANSWER, vlm_answer
from sensorium.tools.vlm_local import answers


def context(tmp_path: Path, **models: Any) -> ToolContext:
    return ToolContext(
        host=ModelHost("cpu"),
        images=ImageStore(tmp_path / "images"),
        models=StandardModels(**models),
    )


def test_the_confidence_is_the_mean_token_probability_from_the_raw_logits(
    tmp_path: Path, tiny: dict[str, Path], chelsea: Path
) -> None:
    ctx = context(tmp_path, vlm=str(tiny["vlm"]))
    evidence = vlm_answer.run(ctx, {"image": ctx.images.add(chelsea), "question": "What is this?"})
    assert evidence.error is None and evidence.payload["model"] == str(tiny["vlm"])
    # The same greedy generation, straight from transformers.
    processor = AutoProcessor.from_pretrained(tiny["vlm"])
    model = AutoModelForImageTextToText.from_pretrained(tiny["vlm"]).eval()
    content = [{"type": "image"}, {"type": "text", "text": f"What is this? {SHORT_ANSWER}"}]
    text = processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True
    )
    inputs = processor(
        text=[text], images=[[Image.open(chelsea).convert("RGB")]], return_tensors="pt"
    )
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            max_new_tokens=48,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    new = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    chosen = [
        torch.log_softmax(step[0].float(), -1)[token].item()
        for step, token in zip(out.logits, new, strict=True)
    ]
    end = next(
        (i + 1 for i, token in enumerate(new) if token == processor.tokenizer.eos_token_id),
        len(new),
    )
    expected = math.exp(sum(chosen[:end]) / end)
    if evidence.answer is None:  # a random model may say only special tokens
        assert "skipped" in evidence.payload
    else:
        assert evidence.confidence == pytest.approx(expected, rel=1e-4)


class VisionServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that records each request and answers with logprobs."""

    requests: ClassVar[list[dict[str, Any]]] = []
    logprobs: ClassVar[list[float] | None] = [-0.1, -0.2, -0.3]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        VisionServer.requests.append(body)
        tokens = [
            {"token": token, "logprob": logprob, "bytes": None, "top_logprobs": []}
            for token, logprob in zip(["A", " cat", "."], self.logprobs or [], strict=False)
        ]
        reply = {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{
                "index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "A cat."},
                "logprobs": {"content": tokens} if self.logprobs is not None else None,
            }],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        }  # fmt: skip
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    VisionServer.requests = []
    VisionServer.logprobs = [-0.1, -0.2, -0.3]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), VisionServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def test_an_openai_compatible_server_answers_with_its_logprobs_as_confidence(
    tmp_path: Path, server: str, chelsea: Path
) -> None:
    ctx = context(tmp_path, vlm="tiny-vlm", vlm_endpoint=server)
    evidence = vlm_answer.run(
        ctx, {"image": ctx.images.add(chelsea), "question": "What animal is this?"}
    )
    assert evidence.error is None and evidence.answer == "A cat"
    assert evidence.confidence == pytest.approx(math.exp(-0.2))  # exp(mean(-0.1, -0.2, -0.3))
    (request,) = VisionServer.requests
    assert request["model"] == "tiny-vlm" and request["logprobs"] is True
    parts = request["messages"][0]["content"]
    assert any(p["type"] == "text" and "What animal is this?" in p["text"] for p in parts)
    image = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    assert image.startswith("data:image/png;base64,")
    assert evidence.payload["endpoint"] == server


def test_without_logprobs_the_confidence_is_unknown(
    tmp_path: Path, server: str, chelsea: Path
) -> None:
    VisionServer.logprobs = None
    ctx = context(tmp_path, vlm="tiny-vlm", vlm_endpoint=server)
    evidence = vlm_answer.run(ctx, {"image": ctx.images.add(chelsea)})
    assert evidence.answer == "A cat." and evidence.confidence == 0.0
    assert "no log-probabilities" in evidence.payload["note"]


def test_a_dead_endpoint_is_one_line_naming_it(tmp_path: Path, chelsea: Path) -> None:
    ctx = context(tmp_path, vlm="tiny-vlm", vlm_endpoint="http://127.0.0.1:9/v1")
    evidence = vlm_answer.run(ctx, {"image": ctx.images.add(chelsea), "question": "What?"})
    assert evidence.answer is None and evidence.error is not None
    assert (
        "the VLM endpoint http://127.0.0.1:9/v1 failed" in evidence.error
        and "\n" not in evidence.error
    )


def test_a_missing_checkpoint_says_how_to_provide_it(tmp_path: Path, chelsea: Path) -> None:
    ctx = context(tmp_path, vlm=str(tmp_path / "no-such-model"))
    evidence = vlm_answer.run(ctx, {"image": ctx.images.add(chelsea), "question": "What?"})
    assert evidence.error is not None and "vision-language model" in evidence.error
    assert "[models] vlm" in evidence.error


def test_a_batch_gives_each_request_what_it_gets_alone(
    tmp_path: Path, tiny: dict[str, Path], chelsea: Path, red_image: Path
) -> None:
    ctx = context(tmp_path, vlm=str(tiny["vlm"]))
    model = load_pretrained(ctx, "vlm")
    first = (Image.open(chelsea).convert("RGB"), "What is this?")
    second = (Image.open(red_image).convert("RGB"), "Is this a photo of a red cat or a dog?")
    together = answers(model, [first, second])  # prompts of different lengths: left padding
    for item, (text, log_probs) in zip([first, second], together, strict=True):
        ((alone_text, alone_log_probs),) = answers(model, [item])
        assert text == alone_text
        assert log_probs == pytest.approx(alone_log_probs, abs=1e-4)
