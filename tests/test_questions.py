"""Reading requests: question kinds, yes/no subjects, search requests and image references."""

from __future__ import annotations

import pytest

from sensorium.tools.questions import (
    described_reference,
    is_negated,
    is_search_request,
    ordinal_reference,
    question_kind,
    split_search_request,
    yes_no_subject,
)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Is this a cat?", "yes_no"),
        ("How many dogs are there?", "count"),
        ("What colour is the car?", "colour"),
        ("What color is it?", "colour"),
        ("Which shape is drawn?", "shape"),
        ("Describe this image", "describe"),
        ("What do you see?", "describe"),
        ("What animal is this?", "animal"),
        ("What is in the picture?", "what"),
        ("Hello there", "other"),
        ("What does the sign say?", "read"),
        ("Can you read this page?", "read"),
        ("What is written on the label?", "read"),
        ("Write alt text for this image", "other"),
        ("Is the text handwritten?", "yes_no"),
        ("How do you say 'thank you' in Japanese?", "other"),
    ],
)
def test_question_kind(question: str, kind: str) -> None:
    assert question_kind(question) == kind


@pytest.mark.parametrize(
    ("question", "subject"),
    [
        ("Is this a cat?", "cat"),
        ("Is there a dog in this photo?", "dog"),
        ("Is that an airplane?", "airplane"),
        ("Are these bananas?", "bananas"),
        ("What is this?", None),
        ("does the image contain a circle?", "circle"),
        ("Does this photo not show any dogs?", "dogs"),
        ("is a green shape present?", "green shape"),
        ("is no blue shape present?", "blue shape"),
        ("is there not a black shape in the image?", "black shape"),
        ("Is the man wearing a coat?", None),
    ],
)
def test_yes_no_subject(question: str, subject: str | None) -> None:
    assert yes_no_subject(question) == subject


@pytest.mark.parametrize(
    ("question", "negated"),
    [
        ("Is there not a cat?", True),
        ("is no blue shape present?", True),
        ("Isn't this a dog?", True),
        ("Is this a cat?", False),
        ("What is not in the picture?", False),  # not a yes/no question
    ],
)
def test_is_negated(question: str, negated: bool) -> None:
    assert is_negated(question) is negated


@pytest.mark.parametrize(
    ("request_", "search", "split"),
    [
        (
            "find my photos of cats and describe the first one",
            True,
            ("cats", "describe the first one"),
        ),
        ("Show me pictures of the beach", True, ("the beach", "")),
        ("search for a red car", True, ("a red car", "")),
        ("search my images for a red car", True, ("a red car", "")),
        (
            "Find images with dogs, then tell me their colour",
            True,
            ("dogs", "tell me their colour"),
        ),
        ("What colour is the picture of the car?", False, None),
        ("Is this a photo of a cat?", False, None),
    ],
)
def test_search_requests(request_: str, search: bool, split: tuple[str, str] | None) -> None:
    assert is_search_request(request_) is search
    if split is not None:
        assert split_search_request(request_) == split


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("describe the first one", 1),
        ("What is in the second one?", 2),
        ("and the 3rd picture?", 3),
        ("show the last image", -1),
        ("What is this?", None),
    ],
)
def test_ordinal_reference(text: str, position: int | None) -> None:
    assert ordinal_reference(text) == position


@pytest.mark.parametrize(
    ("text", "described"),
    [
        ("Describe that cat picture", "cat"),
        ("what colour is the red car photo?", "red car"),
        ("the second one", None),
        ("What is in this picture?", None),
    ],
)
def test_described_reference(text: str, described: str | None) -> None:
    assert described_reference(text) == described
