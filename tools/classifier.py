"""The ImageNet classifier expert (EfficientNet-Lite0 on the lite profile)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.evidence import Evidence, ImageRef, yes_no_evidence
from sensorium.tools.imagenet import class_names, everyday_name, is_animal
from sensorium.tools.lite_models import class_probabilities
from sensorium.tools.questions import is_negated, question_kind, yes_no_subject


def everyday_probabilities(probs: np.ndarray, animals_only: bool = False) -> dict[str, float]:
    """Class probabilities summed by everyday word ("cat" gathers every cat breed)."""
    totals: dict[str, float] = defaultdict(float)
    for index, p in enumerate(probs):
        if animals_only and not is_animal(index):
            continue
        totals[everyday_name(index)] += float(p)
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


@expert(
    examples=[
        "What animal is this?",
        "What is in this picture?",
        "What object is this?",
        "Is this a dog?",
        "What breed is this dog?",
        "Identify the main object",
    ]
)
def classify(ctx: ToolContext, image: ImageRef, question: str = "", top_k: int = 5) -> Evidence:
    """Name the main object or animal in an image (ImageNet-1k classes).

    Args:
        image: the image to classify
        question: the user's question, if any; shapes the answer (a yes/no question gets yes/no)
        top_k: how many fine-grained labels to report
    """
    return imagenet_evidence(class_probabilities(ctx, image), question, top_k)


def imagenet_evidence(
    probs: np.ndarray, question: str, top_k: int, provenance: dict[str, str] | None = None
) -> Evidence:
    """What an ImageNet classifier (EfficientNet, CLIP zero-shot) says to `question`.

    The answer is the everyday word with the most probability ("cat" gathers every cat
    breed); a yes/no question gets yes/no from the probability of the asked-about classes;
    questions ImageNet cannot judge (colours, counts, shapes, unknown things) get no answer.
    `provenance` (the model, its device) joins the payload.
    """
    order = np.argsort(probs)[::-1][: max(1, top_k)]
    labels = [{"label": class_names()[i], "probability": round(float(probs[i]), 4)} for i in order]
    kind = question_kind(question) if question else "what"
    grouped = everyday_probabilities(probs, animals_only=kind == "animal")
    payload = {"labels": labels, "everyday": dict(list(grouped.items())[:top_k])}
    payload |= provenance or {}
    if kind == "yes_no":
        subject = yes_no_subject(question)
        p_subject = subject_probability(probs, subject) if subject else None
        if p_subject is None:  # not about a thing ImageNet knows: no opinion
            return Evidence(payload=payload | {"skipped": f"cannot judge {subject or question!r}"})
        p_yes = 1 - p_subject if is_negated(question) else p_subject
        return yes_no_evidence(p_yes, payload | {"subject": subject})
    if kind in _NOT_OBJECT_KINDS:  # colours, counts and shapes are not ImageNet classes
        return Evidence(payload=payload | {"skipped": f"cannot answer a {kind} question"})
    word, mass = next(iter(grouped.items()))
    return Evidence(answer=word, confidence=min(1.0, mass), payload=payload)


_NOT_OBJECT_KINDS = ("colour", "count", "shape")


def subject_probability(probs: np.ndarray, subject: str) -> float | None:
    """P(subject) when the subject names ImageNet classes, else None."""
    hits = subject_classes(subject)
    return min(1.0, float(sum(probs[i] for i in hits))) if hits else None


def subject_classes(subject: str) -> list[int]:
    """ImageNet classes a subject names: by everyday word ("cat") or by class name; failing
    both, the objects whose name it heads ("clock": wall, analog and digital clocks). Never
    animals by head word: a Madagascar cat is a lemur, a sea lion no lion."""
    forms = {subject, subject[:-1] if subject.endswith("s") else subject}
    names = class_names()
    exact = [
        i for i, name in enumerate(names) if everyday_name(i) in forms or name.lower() in forms
    ]
    if exact:
        return exact
    return [
        i for i, name in enumerate(names) if not is_animal(i) and name.lower().split()[-1] in forms
    ]
