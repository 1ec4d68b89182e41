"""CLIP experts (standard profile): zero-shot classification, zero-shot VQA, image embeddings.

One CLIP checkpoint (`[models] clip`; SigLIP works too) puts images and sentences in one
space. Classification and VQA both score prompts ("a photo of a tabby") against the image:
the softmax of the scaled cosine similarities, at the model's own learnt logit scale, is each
candidate's probability. Prompt embeddings are computed once per model and kept on disk.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.classifier import imagenet_evidence, subject_classes
from sensorium.tools.colour import COLOUR_NAMES
from sensorium.tools.evidence import Evidence, ImageRef, yes_no_evidence
from sensorium.tools.hf_models import Pretrained, batched, load_pretrained, model_id
from sensorium.tools.imagenet import class_names
from sensorium.tools.lite_models import cached_phrases
from sensorium.tools.questions import QuestionKind, is_negated, question_kind, yes_no_subject
from sensorium.tools.vqa import SHAPES, candidate_answers

TEXT_BATCH = 256  # prompts per forward pass: 1000 at once would hold GBs of activations
_PHOTO_PREFIX = ("a photo", "a picture", "an image", "photo of", "picture of", "image of")


def _clip(ctx: ToolContext) -> Pretrained:
    return load_pretrained(ctx, "clip")


def _unit(features: Any) -> np.ndarray:
    # transformers 5 returns an output object whose pooler_output is the projected embedding.
    tensor = features if isinstance(features, torch.Tensor) else features.pooler_output
    return torch.nn.functional.normalize(tensor.float(), dim=-1).cpu().numpy()


def image_vectors(ctx: ToolContext, images: Sequence[Image.Image]) -> np.ndarray:
    """Unit CLIP image embeddings, one row per image, in one forward pass."""
    return np.stack(embed_images(_clip(ctx), list(images)))


def embed_images(clip: Pretrained, images: list[Image.Image]) -> list[np.ndarray]:
    """Unit embeddings of a batch of images, one array each (the micro-batcher's batch)."""
    with torch.inference_mode():
        return list(_unit(clip.model.get_image_features(**clip.images(images))))


def text_vectors(ctx: ToolContext, texts: Sequence[str]) -> np.ndarray:
    """Unit CLIP text embeddings, one row per text (batched)."""
    clip = _clip(ctx)
    # SigLIP was trained on text padded to its full length; CLIP pools at the end token.
    padding = "max_length" if clip.model_type.startswith("siglip") else True
    rows = []
    with torch.inference_mode():
        for start in range(0, len(texts), TEXT_BATCH):
            batch = clip.texts(texts[start : start + TEXT_BATCH], padding=padding)
            rows.append(_unit(clip.model.get_text_features(**batch)))
    return np.concatenate(rows).astype(np.float32)


def logit_scale(ctx: ToolContext) -> float:
    """The temperature CLIP learnt for its softmax over image-text similarities (100 for the
    OpenAI checkpoints)."""
    return float(_clip(ctx).model.logit_scale.detach().exp())


def image_vector(ctx: ToolContext, image: ImageRef) -> np.ndarray:
    """The unit CLIP embedding of a stored image (memoised per model and image; concurrent
    requests from other conversations share a forward pass)."""
    return ctx.host.memo(
        f"clip-image:{model_id(ctx, 'clip')}",
        image.sha256,
        lambda: batched(ctx, "clip", embed_images, ctx.images.load(image)),
    )


def phrase_vectors(ctx: ToolContext, namespace: str, phrases: tuple[str, ...]) -> np.ndarray:
    """CLIP embeddings of a fixed phrase list (label prompts), cached per model on disk."""
    return cached_phrases(
        ctx, f"clip-{namespace}", _fingerprint(ctx), phrases, lambda: text_vectors(ctx, phrases)
    )


def _fingerprint(ctx: ToolContext) -> str:
    """The model id and hub revision, plus file sizes and times for a local folder: new
    weights under the same name must not reuse stale prompt embeddings."""
    name = model_id(ctx, "clip")
    revision = getattr(_clip(ctx).model.config, "_commit_hash", None)
    folder = os.path.expanduser(name)
    if not os.path.isdir(folder):
        return f"{name}@{revision}"
    stats = sorted(
        f"{entry.name}:{entry.stat().st_size}:{entry.stat().st_mtime_ns}"
        for entry in os.scandir(folder)
        if entry.is_file()
    )
    return "|".join([name, *stats])


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max())
    return np.asarray(shifted / shifted.sum())


def label_vectors(ctx: ToolContext) -> np.ndarray:
    """CLIP embeddings of "a photo of a {label}" for the 1000 ImageNet classes."""
    return phrase_vectors(ctx, "imagenet", tuple(f"a photo of a {n}" for n in class_names()))


def imagenet_probabilities(ctx: ToolContext, image: ImageRef) -> np.ndarray:
    """Zero-shot softmax over the 1000 ImageNet classes (memoised per model and image)."""
    return ctx.host.memo(
        f"clip-imagenet:{model_id(ctx, 'clip')}",
        image.sha256,
        lambda: _softmax(logit_scale(ctx) * (label_vectors(ctx) @ image_vector(ctx, image))),
    )


@expert(
    examples=[
        "What animal is this?",
        "What is in this picture?",
        "Is this a dog?",
        "Identify the main object with CLIP",
    ]
)
def clip_classify(
    ctx: ToolContext, image: ImageRef, question: str = "", top_k: int = 5
) -> Evidence:
    """Name the main object or animal in an image with CLIP (zero-shot over ImageNet-1k).

    Args:
        image: the image to classify
        question: the user's question, if any; shapes the answer (a yes/no question gets yes/no)
        top_k: how many fine-grained labels to report
    """
    return imagenet_evidence(
        imagenet_probabilities(ctx, image), question, top_k, _clip(ctx).payload()
    )


def _prompt(kind: QuestionKind, answer: str) -> str:
    if kind == "colour":
        return f"a {answer} photo"
    if kind == "count":
        return f"a photo of {answer} things"
    return f"a photo of a {answer}"


@expert(
    examples=[
        "What colour is the car?",
        "How many dogs are there?",
        "What shape is in the image?",
        "Is there a cat in this photo?",
    ]
)
def clip_answer(ctx: ToolContext, image: ImageRef, question: str) -> Evidence:
    """Answer a short question about an image by scoring candidate answers with CLIP.

    Args:
        image: the image the question is about
        question: the question, in plain language
    """
    if not question.strip():
        raise ValueError("clip_answer needs a question; pass the user's question")
    kind = question_kind(question)
    if kind == "yes_no":
        return _answer_yes_no(ctx, image, question)
    if kind in ("describe", "other"):
        kind = "what"
    answers = candidate_answers(kind)
    prompts = tuple(_prompt(kind, answer) for answer in answers)
    scores = phrase_vectors(ctx, f"vqa-{kind}", prompts) @ image_vector(ctx, image)
    probs = _softmax(logit_scale(ctx) * scores)
    order = np.argsort(probs)[::-1][:5]
    return Evidence(
        answer=answers[order[0]],
        confidence=float(probs[order[0]]),
        payload={"candidates": {answers[i]: round(float(probs[i]), 4) for i in order}}
        | _clip(ctx).payload(),
    )


def _answer_yes_no(ctx: ToolContext, image: ImageRef, question: str) -> Evidence:
    subject = yes_no_subject(question)
    if subject is None:
        return Evidence(payload={"skipped": f"cannot judge {question!r}"} | _clip(ctx).payload())
    p_yes = _p_subject(ctx, image, subject)
    if is_negated(question):
        p_yes = 1 - p_yes
    payload = {"subject": subject, "p_yes": round(p_yes, 4), "negated": is_negated(question)}
    return yes_no_evidence(p_yes, payload | _clip(ctx).payload())


_CLOSED_SETS: tuple[tuple[QuestionKind, tuple[str, ...]], ...] = (
    ("shape", SHAPES),
    ("colour", COLOUR_NAMES),
)


def _p_subject(ctx: ToolContext, image: ImageRef, subject: str) -> float:
    """P(the image shows the subject): the subject's prompt competes in one softmax with its
    alternatives (the other shapes or colours, else the 1000 ImageNet prompts), and classes
    the subject names ("cat" -> tabby, Egyptian cat) count for it."""
    vector = image_vector(ctx, image)
    singular = subject[:-1] if subject.endswith("s") else subject
    for kind, answers in _CLOSED_SETS:
        if singular in answers or subject in answers:
            name = subject if subject in answers else singular
            prompts = tuple(_prompt(kind, answer) for answer in answers)
            scores = phrase_vectors(ctx, f"vqa-{kind}", prompts) @ vector
            return float(_softmax(logit_scale(ctx) * scores)[answers.index(name)])
    subject_score = text_vectors(ctx, [_prompt("what", subject)])[0] @ vector
    scores = np.concatenate([[subject_score], label_vectors(ctx) @ vector])
    probs = _softmax(logit_scale(ctx) * scores)
    named = [1 + i for i in subject_classes(subject)]
    return min(1.0, float(probs[0] + probs[named].sum()))


@expert(
    examples=[
        "Embed this image with CLIP",
        "Compute a CLIP embedding vector for this photo",
    ],
    answers_questions=False,
)
def clip_embed(ctx: ToolContext, image: ImageRef) -> Evidence:
    """Map an image into CLIP's joint image-text space; reports the concepts nearest to it.

    Args:
        image: the image to embed
    """
    vector = image_vector(ctx, image)
    probs = imagenet_probabilities(ctx, image)
    top = np.argsort(probs)[::-1][:3]
    concepts = [class_names()[i] for i in top]
    return Evidence(
        answer=f"{len(vector)}-d CLIP embedding near: {', '.join(concepts)}",
        # How well the reported concepts describe the image: their zero-shot probability.
        confidence=min(1.0, float(probs[top].sum())),
        payload={
            "dimension": len(vector),
            "space": f"CLIP ({model_id(ctx, 'clip')})",
            "concepts": concepts,
            "vector": [round(float(x), 5) for x in vector],
        }
        | _clip(ctx).payload(),
    )


class ClipJointEncoder:
    """CLIP's joint space for the image index: unit vectors of the projection dimension.

    Loads the configured CLIP checkpoint on construction (through the model host).
    """

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        clip = _clip(ctx)
        self.id = f"clip:{clip.model_id}"
        config = clip.model.config
        self.dimension = int(
            getattr(config, "projection_dim", None) or config.text_config.hidden_size
        )

    def describe_images(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, list[str]]:
        """Unit vectors for a batch of images (one forward pass), and each one's top labels."""
        vectors = image_vectors(self.ctx, images)
        scores = vectors @ label_vectors(self.ctx).T
        names = class_names()
        labels = [", ".join(names[i] for i in np.argsort(row)[::-1][:3]) for row in scores]
        return vectors, labels

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Unit vectors for a batch of images."""
        return image_vectors(self.ctx, images)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for text queries, phrased like CLIP's training captions."""
        phrased = [
            text if text.lower().startswith(_PHOTO_PREFIX) else f"a photo of {text}"
            for text in texts
        ]
        return text_vectors(self.ctx, phrased)
