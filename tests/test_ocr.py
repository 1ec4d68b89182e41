"""The OCR reader (RapidOCR, PP-OCRv4 in ONNX, shipped in its wheel): it reads scikit-image's
`page` photo and a rendered sign, its confidence is the recogniser's, it says nothing on a
picture without text, the router sends reading requests to it, and a missing package is one
line saying what to install."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from skimage import data

from sensorium.tools import ImageStore, ModelHost, ToolContext
from sensorium.tools.ocr import MIN_LINE_SCORE, ocr_engine, read_text


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> ToolContext:
    root = tmp_path_factory.mktemp("ocr")
    return ToolContext(host=ModelHost("cpu"), images=ImageStore(root / "images"), cache_dir=root)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("page") / "page.png"
    Image.fromarray(data.page()).save(path)
    return path


def test_it_reads_a_page_line_by_line_with_the_recognisers_confidence(
    ctx: ToolContext, page: Path
) -> None:
    ref = ctx.images.add(page)
    evidence = read_text.run(ctx, {"image": ref})
    assert evidence.error is None
    assert "markers of the coins" in evidence.answer  # type: ignore[operator]
    assert evidence.answer.splitlines()[0].startswith("Region")  # type: ignore[union-attr]
    # Recomputed from the engine's raw output: line scores weighted by their length.
    raw, _ = ocr_engine(ctx)(np.asarray(Image.open(page).convert("RGB")))
    kept = [(text, score) for _, text, score in raw if score >= MIN_LINE_SCORE and text.strip()]
    expected = sum(len(t.strip()) * s for t, s in kept) / sum(len(t.strip()) for t, _ in kept)
    assert evidence.confidence == pytest.approx(expected)
    assert 0.9 < evidence.confidence <= 1.0
    assert [line["text"] for line in evidence.payload["lines"]] == [t for t, _ in kept]


def test_it_reads_a_sign_and_finds_nothing_where_there_is_no_text(ctx: ToolContext) -> None:
    sign = Image.new("RGB", (420, 120), "white")
    ImageDraw.Draw(sign).text(
        (20, 30), "OPEN 24 HOURS", fill="black", font=ImageFont.load_default(size=40)
    )
    evidence = read_text.run(ctx, {"image": ctx.images.add_image(sign)})
    assert evidence.answer is not None and evidence.answer.replace(" ", "") == "OPEN24HOURS"
    blank = read_text.run(ctx, {"image": ctx.images.add_image(Image.new("RGB", (200, 200), "red"))})
    assert blank.answer is None and blank.error is None
    assert blank.payload["skipped"] == "no text found in the image"


def test_without_the_package_the_expert_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: Path
) -> None:
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # import fails
    fresh = ToolContext(host=ModelHost("cpu"), images=ImageStore(tmp_path / "images"))
    evidence = read_text.run(fresh, {"image": fresh.images.add(page)})
    assert evidence.answer is None
    assert evidence.error is not None and "pip install 'sensorium[ocr]'" in evidence.error
    assert "\n" not in evidence.error


@pytest.mark.parametrize(
    "question",
    ["What does the text say?", "What is written on this page?", "Could you read this for me?"],
)
def test_reading_requests_reach_the_reader(cli, page: Path, question: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("ask", question, "-i", str(page), "--no-llm", "--json")
    assert result.code == 0, result.err
    turn = json.loads(result.out)
    assert [call["tool"] for call in turn["plan"]] == ["read_text"]
    assert (
        "markers of the coins" in turn["reply"] and turn["answer"] == turn["evidence"][0]["answer"]
    )
