"""The zero-shot detector on a tiny random OWL-ViT built from config: boxes and scores
recomputed independently from the raw logits, presence / counting / location answers, the
thing a question names, and routing on the standard profile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

from sensorium import Settings
from sensorium.agent import Agent
from sensorium.tools import ImageStore, ModelHost, ToolContext, detector
from sensorium.tools.detector import THRESHOLD, _things_asked, box_scores, detect
from sensorium.tools.hf_models import StandardModels, load_pretrained


@pytest.fixture
def ctx(tiny: dict[str, Path], tmp_path: Path) -> ToolContext:
    models = StandardModels(detector=str(tiny["detector"]))
    return ToolContext(host=ModelHost("cpu"), images=ImageStore(tmp_path / "images"), models=models)


def raw_scores(path: Path, image: Path, labels: list[str]) -> torch.Tensor:
    """Each candidate box's probability per label, straight from transformers."""
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(path).eval()
    queries = [f"a photo of a {label}" for label in labels]
    inputs = processor(
        text=[queries], images=Image.open(image).convert("RGB"), return_tensors="pt",
        padding="max_length", max_length=16, truncation=True,
    )  # fmt: skip
    with torch.inference_mode():
        return torch.sigmoid(model(**inputs).logits[0])


@pytest.mark.parametrize("threshold", [THRESHOLD, 0.0])
def test_presence_and_counting_come_from_the_models_box_scores(
    ctx: ToolContext,
    tiny: dict[str, Path],
    chelsea: Path,
    threshold: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(detector, "THRESHOLD", threshold)  # 0: a random model's boxes count
    ref = ctx.images.add(chelsea)
    best = float(raw_scores(tiny["detector"], chelsea, ["cat"]).max())
    present = detect.run(ctx, {"image": ref, "question": "Is there a cat in this picture?"})
    assert present.error is None and present.payload["labels"] == ["cat"]
    boxes = present.payload["boxes"]
    if best >= threshold:
        assert present.answer == "yes"
        assert present.confidence == pytest.approx(best, abs=1e-5)
        assert boxes[0]["score"] == pytest.approx(best, abs=1e-5)
    else:
        assert (present.answer, present.confidence) == ("no", pytest.approx(1 - best, abs=1e-5))
    counted = detect.run(ctx, {"image": ref, "question": "How many cats are there?"})
    assert counted.answer == str(len(boxes))
    if boxes:
        mean = sum(b["score"] for b in boxes) / len(boxes)
        assert counted.confidence == pytest.approx(mean)
    for box in boxes:  # inside the picture's pixels, corners in order
        assert box["box"][0] <= box["box"][2] and box["box"][1] <= box["box"][3]
    where = detect.run(ctx, {"image": ref, "question": "Where is the cat?"})
    assert where.answer in {"top left", "top", "top right", "left", "centre", "right",
                            "bottom left", "bottom", "bottom right", "not found"}  # fmt: skip
    negated = detect.run(ctx, {"image": ref, "question": "Is there not a cat in this picture?"})
    assert negated.answer != present.answer


def test_labels_win_over_the_question_and_nothing_named_is_nothing_done(
    ctx: ToolContext, chelsea: Path
) -> None:
    ref = ctx.images.add(chelsea)
    listed = detect.run(ctx, {"image": ref, "labels": ["cat", "dog"]})
    assert listed.payload["labels"] == ["cat", "dog"] and listed.answer
    nothing = detect.run(ctx, {"image": ref, "question": "Hello"})
    assert nothing.answer is None and "say what to look for" in nothing.payload["skipped"]


@pytest.mark.parametrize(
    ("question", "things"),
    [
        ("How many coins are there?", ["coin"]),
        ("How many boxes are on the table?", ["box"]),
        ("How many puppies?", ["puppy"]),
        ("Where is the cat?", ["cat"]),
        ("Is there a dog in this picture?", ["dog"]),
        ("What is this?", []),
    ],
)
def test_the_thing_a_question_names(question: str, things: list[str]) -> None:
    assert _things_asked(question) == things


def test_counting_questions_reach_the_detector_on_the_standard_profile(
    tmp_path: Path, tiny: dict[str, Path], chelsea: Path
) -> None:
    models = {
        role: str(tiny[role])
        for role in ("clip", "blip_caption", "blip_vqa", "vilt_vqa", "detector")
    }
    settings = Settings(
        profile="standard", data_dir=tmp_path / "data", llm={"backend": "none"}, models=models
    )  # type: ignore[arg-type]
    result = Agent(settings, chat_model=None).ask("How many cats are there?", [chelsea])
    assert result.plan.calls[0].tool == "detect"
    detected = next(e for e in result.evidence if e.expert == "detect")
    assert detected.error is None and detected.payload["model"] == str(tiny["detector"])


def test_tools_list_names_the_new_senses_with_their_models_and_devices(cli) -> None:  # type: ignore[no-untyped-def]
    listed = json.loads(cli("tools", "list", "--profile", "standard", "--json").out)
    tools = {tool["name"]: (tool["model"], tool["device"]) for tool in listed}
    assert tools["detect"] == ("google/owlv2-base-patch16-ensemble", "cpu")
    assert tools["vlm_answer"] == ("HuggingFaceTB/SmolVLM-256M-Instruct", "cpu")
    assert tools["read_text"][0].startswith("PP-OCRv4") and tools["read_text"][1] == "cpu"


def test_the_cli_saves_the_image_with_the_boxes(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, tiny: dict[str, Path], chelsea: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detector, "THRESHOLD", 0.0)  # a random model's boxes all count
    config = tmp_path / "config.toml"
    models = "\n".join(
        f'{role} = "{tiny[role]}"'
        for role in ("clip", "blip_caption", "blip_vqa", "vilt_vqa", "detector")
    )
    config.write_text(f'profile = "standard"\n[models]\n{models}\n')
    out = tmp_path / "boxes.png"
    result = cli(
        "--config",
        str(config),
        "ask",
        "How many cats are there?",
        "-i",
        str(chelsea),
        "--no-llm",
        "--json",
        "--boxes",
        str(out),
    )
    assert result.code == 0, result.err
    found = next(e for e in json.loads(result.out)["evidence"] if e["expert"] == "detect")[
        "payload"
    ]["boxes"]
    assert found
    drawn = Image.open(out)
    assert drawn.size == Image.open(chelsea).size
    assert drawn.tobytes() != Image.open(chelsea).convert("RGB").tobytes()
    monkeypatch.setattr(detector, "THRESHOLD", 1.0)  # nothing found: nothing drawn
    out.unlink()
    again = cli(
        "--config",
        str(config),
        "ask",
        "How many cats are there?",
        "-i",
        str(chelsea),
        "--no-llm",
        "--boxes",
        str(out),
    )
    assert again.code == 0 and not out.exists() and "nothing saved" in again.err


def test_a_batch_gives_each_image_what_it_gets_alone(
    ctx: ToolContext, chelsea: Path, red_image: Path
) -> None:
    model = load_pretrained(ctx, "detector")
    cat = (Image.open(chelsea).convert("RGB"), ("cat",))
    red = (Image.open(red_image).convert("RGB"), ("square", "circle", "dog"))  # more labels
    together = box_scores(model, [cat, red])
    for item, (scores, boxes) in zip([cat, red], together, strict=True):
        ((alone_scores, alone_boxes),) = box_scores(model, [item])
        assert scores.shape == alone_scores.shape == (len(boxes), len(item[1]))
        np.testing.assert_allclose(scores, alone_scores, atol=1e-5)
        np.testing.assert_allclose(boxes, alone_boxes, atol=1e-3)
