"""Zero-shot visual question answering: score candidate answers in the joint space.

The question picks a candidate set (animals, colours, shapes, counts, everything the
classifier knows); each candidate becomes a sentence ("a photo of a cat"); the softmax of
the scaled cosine similarities to the image gives each candidate's probability. The standard
profile runs the same recipe with CLIP.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.colour import COLOUR_NAMES
from sensorium.tools.evidence import Evidence, ImageRef
from sensorium.tools.imagenet import class_names, everyday_name, is_animal
from sensorium.tools.lite_models import (
    conse_embedding,
    embed_phrases,
    embed_texts,
    label_embeddings,
)
from sensorium.tools.questions import QuestionKind, is_negated, question_kind, yes_no_subject

LOGIT_SCALE = 40.0  # MiniLM cosines spread less than CLIP's (which uses 100)
SHAPES = ("circle", "rectangle", "square", "triangle")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@cache
def candidate_answers(kind: QuestionKind) -> tuple[str, ...]:
    """The answers considered for a kind of question."""
    if kind == "animal":
        return tuple(dict.fromkeys(everyday_name(i) for i in range(1000) if is_animal(i)))
    if kind == "colour":
        return COLOUR_NAMES
    if kind == "shape":
        return SHAPES
    if kind == "count":
        return NUMBERS
    return tuple(name.lower() for name in class_names())


def _prompt(kind: QuestionKind, answer: str) -> str:
    if kind == "colour":
        return f"a {answer} photo"
    if kind == "count":
        return f"a photo of {answer} things"
    return f"a photo of a {answer}"


def _candidate_embeddings(ctx: ToolContext, kind: QuestionKind) -> np.ndarray:
    if kind == "what":  # the ImageNet label prompts, shared with ConSE
        return label_embeddings(ctx)
    prompts = tuple(_prompt(kind, a) for a in candidate_answers(kind))
    return embed_phrases(ctx, f"vqa-{kind}", prompts)


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max())
    return np.asarray(shifted / shifted.sum())


@expert(
    examples=[
        "What animal is this?",
        "Is this a cat?",
        "What shape is in the image?",
        "What is the object in the picture?",
        "Is there a dog in this photo?",
    ]
)
def answer_question(ctx: ToolContext, image: ImageRef, question: str) -> Evidence:
    """Answer a short question about an image by scoring candidate answers (zero-shot VQA).

    Args:
        image: the image the question is about
        question: the question, in plain language
    """
    if not question.strip():
        raise ValueError("answer_question needs a question; pass the user's question")
    image_vector, _ = conse_embedding(ctx, image)
    kind = question_kind(question)
    if kind == "yes_no":
        subject = yes_no_subject(question)
        if subject is None or set(subject.split()) & _UNJUDGED:
            # The joint space carries no colour or count, and an unparsed question has no
            # subject to test: say nothing rather than answer with an unrelated label.
            return Evidence(payload={"skipped": f"cannot judge {subject or question!r}"})
        verdict = _yes_no(ctx, image_vector, subject)
        return _flipped(verdict) if is_negated(question) else verdict
    if kind in ("describe", "other"):
        kind = "what"
    answers = candidate_answers(kind)
    scores = _candidate_embeddings(ctx, kind) @ image_vector
    probs = _softmax(LOGIT_SCALE * scores)
    order = np.argsort(probs)[::-1][:5]
    return Evidence(
        answer=answers[order[0]],
        confidence=float(probs[order[0]]),
        payload={"candidates": {answers[i]: round(float(probs[i]), 4) for i in order}},
    )


_UNJUDGED = (
    frozenset(COLOUR_NAMES)
    | {"grey", "colour", "color"}
    | set(NUMBERS)
    | {str(n) for n in range(100)}
)


def _flipped(evidence: Evidence) -> Evidence:
    """The answer to the negated question: yes <-> no, same confidence."""
    flipped = {"yes": "no", "no": "yes"}.get(evidence.answer or "", evidence.answer)
    return evidence.model_copy(
        update={"answer": flipped, "payload": evidence.payload | {"negated": True}}
    )


def _yes_no(ctx: ToolContext, image_vector: np.ndarray, subject: str) -> Evidence:
    """Yes when the subject scores above its strongest alternative in the joint space; a
    shape is tested against the other shapes."""
    if subject in SHAPES or subject.rstrip("s") in SHAPES:
        probs = _softmax(LOGIT_SCALE * (_candidate_embeddings(ctx, "shape") @ image_vector))
        p_yes = float(probs[SHAPES.index(subject.rstrip("s"))])
        answer = "yes" if p_yes == float(probs.max()) else "no"
        confidence = p_yes if answer == "yes" else 1 - p_yes
        return Evidence(answer=answer, confidence=confidence, payload={"subject": subject})
    alternatives = _candidate_embeddings(ctx, "what")
    subject_vector = embed_texts(ctx, [_prompt("what", subject)])[0]
    # Alternatives too close to the subject are synonyms, not competitors.
    distinct = alternatives @ subject_vector < 0.8
    best_other = float((alternatives[distinct] @ image_vector).max())
    p_yes = float(
        1 / (1 + np.exp(-LOGIT_SCALE * (float(subject_vector @ image_vector) - best_other)))
    )
    answer = "yes" if p_yes >= 0.5 else "no"
    return Evidence(
        answer=answer,
        confidence=p_yes if answer == "yes" else 1 - p_yes,
        payload={"subject": subject, "p_yes": round(p_yes, 4)},
    )
