"""Tiny random transformers checkpoints built from config, for testing the standard experts.

Each builder saves a model, its tokenizer and its image processor with `save_pretrained`,
exactly as a downloaded checkpoint lies on disk, so the experts load them through the same
`from_pretrained` code as the real CLIP / BLIP / ViLT weights. Everything here takes a few
seconds on a CPU; no network, no torchvision.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch

HIDDEN = 32  # every tower: small enough to run in milliseconds
IMAGE = 32  # pixels per side, 4x4 patches of 8
PATCH = 8
CLIP_PROJECTION = 16
VQA_LABELS = ("yes", "no", "2", "cat", "red")
VLM_WORDS = ("a", "cat", "dog", "yes", "no", "is", "this", "what", "the", "photo", "of", "red", "2")

_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]")
_BERT_WORDS = ("a", "cat", "dog", "on", "the", "is", "this", "what", "animal", "red", "yes", "no")


def _tower(**extra: Any) -> dict[str, Any]:
    return {
        "hidden_size": HIDDEN,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        **extra,
    }


def _vision() -> dict[str, Any]:
    return _tower(image_size=IMAGE, patch_size=PATCH)


def build_clip(path: Path) -> Path:
    """A tiny `CLIPModel` with a character-level BPE tokenizer (vocab.json + merges.txt)."""
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

    torch.manual_seed(0)
    path.mkdir(parents=True, exist_ok=True)
    symbols = string.ascii_lowercase + string.digits + "-'.,"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:
        vocab[symbol] = len(vocab)
        vocab[f"{symbol}</w>"] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(vocab=str(path / "vocab.json"), merges=str(path / "merges.txt"))
    config = CLIPConfig(
        text_config=_tower(
            vocab_size=len(vocab),
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=_vision(),
        projection_dim=CLIP_PROJECTION,
    )
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE}
    ).save_pretrained(path)
    return path


def build_siglip(path: Path) -> Path:
    """A tiny `SiglipModel` (no projection: embeddings are `HIDDEN` wide), reusing the CLIP
    tokenizer: what matters is that the experts' CLIP code drives a SigLIP checkpoint."""
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel

    build_clip(path)  # the tokenizer files; the model and processor are replaced below
    torch.manual_seed(4)
    vocab_size = len(json.loads((path / "vocab.json").read_text()))
    config = SiglipConfig(
        text_config=_tower(
            vocab_size=vocab_size,
            max_position_embeddings=64,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=_vision(),
    )
    SiglipModel(config).save_pretrained(path)
    SiglipImageProcessorPil(size={"height": IMAGE, "width": IMAGE}).save_pretrained(path)
    return path


def _bert_tokenizer() -> tuple[Any, int]:
    from transformers import BertTokenizer

    tokens = [*_BERT_SPECIALS, *string.ascii_lowercase, *_BERT_WORDS]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return BertTokenizer(vocab=vocab, bos_token="[DEC]"), len(vocab)


def _blip_config(vocab_size: int) -> Any:
    from transformers import BlipConfig

    return BlipConfig(
        text_config=_tower(
            vocab_size=vocab_size,
            encoder_hidden_size=HIDDEN,  # cross-attention reads the vision tower's states
            max_position_embeddings=64,
            pad_token_id=0,
            sep_token_id=3,
            eos_token_id=3,
            bos_token_id=5,  # [DEC]
        ),
        vision_config=_vision(),
        projection_dim=CLIP_PROJECTION,
        image_text_hidden_size=CLIP_PROJECTION,
    )


def _save_blip(model: Any, tokenizer: Any, path: Path) -> Path:
    from transformers import BlipImageProcessorPil

    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    BlipImageProcessorPil(size={"height": IMAGE, "width": IMAGE}).save_pretrained(path)
    return path


def build_blip_caption(path: Path) -> Path:
    """A tiny `BlipForConditionalGeneration` with a BERT word-piece vocabulary."""
    from transformers import BlipForConditionalGeneration

    torch.manual_seed(1)
    tokenizer, size = _bert_tokenizer()
    return _save_blip(BlipForConditionalGeneration(_blip_config(size)), tokenizer, path)


def build_blip_vqa(path: Path) -> Path:
    """A tiny `BlipForQuestionAnswering` with a BERT word-piece vocabulary."""
    from transformers import BlipForQuestionAnswering

    torch.manual_seed(2)
    tokenizer, size = _bert_tokenizer()
    return _save_blip(BlipForQuestionAnswering(_blip_config(size)), tokenizer, path)


def build_vilt_vqa(path: Path) -> Path:
    """A tiny `ViltForQuestionAnswering` whose answer vocabulary is `VQA_LABELS`."""
    from transformers import ViltConfig, ViltForQuestionAnswering, ViltImageProcessorPil

    torch.manual_seed(3)
    tokenizer, size = _bert_tokenizer()
    config = ViltConfig(
        **_tower(),
        vocab_size=size,
        image_size=IMAGE,
        patch_size=PATCH,
        max_position_embeddings=40,
        max_image_length=-1,  # every patch: ViLT samples patches at random above the limit
        id2label=dict(enumerate(VQA_LABELS)),
        label2id={label: index for index, label in enumerate(VQA_LABELS)},
    )
    ViltForQuestionAnswering(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    ViltImageProcessorPil(size={"shortest_edge": IMAGE}, size_divisor=PATCH).save_pretrained(path)
    return path


def build_owlvit(path: Path) -> Path:
    """A tiny `OwlViTForObjectDetection` (16 candidate boxes) with the CLIP character tokenizer."""
    from transformers import (
        CLIPTokenizer,
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessorPil,
        OwlViTProcessor,
    )

    build_clip(path)  # the tokenizer files
    vocab = json.loads((path / "vocab.json").read_text())
    vocab["!"] = len(vocab)  # OWL-ViT pads queries with "!"
    (path / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = CLIPTokenizer(
        vocab=str(path / "vocab.json"), merges=str(path / "merges.txt"), pad_token="!"
    )
    torch.manual_seed(5)
    config = OwlViTConfig(
        text_config=_tower(
            vocab_size=len(vocab),
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=vocab["!"],
        ),
        vision_config=_vision(),
        projection_dim=HIDDEN,
    )
    OwlViTForObjectDetection(config).save_pretrained(path)
    size = {"height": IMAGE, "width": IMAGE}
    image_processor = OwlViTImageProcessorPil(size=size, crop_size=size)
    OwlViTProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def build_llava(path: Path) -> Path:
    """A tiny `LlavaForConditionalGeneration` (CLIP vision tower, Llama text model) with a
    word-level tokenizer, a chat template and its `LlavaProcessor`."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessorPil,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    path.mkdir(parents=True, exist_ok=True)
    words = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "USER:", "ASSISTANT:", *VLM_WORDS]
    vocab = {word: number for number, word in enumerate(words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # type: ignore[assignment]
    template = (
        "{% for m in messages %}{% if m['role'] == 'user' %}USER: {% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        chat_template=template,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    torch.manual_seed(6)
    config = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", **_vision()},
        text_config={
            "model_type": "llama",
            **_tower(vocab_size=len(vocab), num_key_value_heads=4, max_position_embeddings=128),
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 0,
        },
        image_token_index=vocab["<image>"],
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    LlavaForConditionalGeneration(config).save_pretrained(path)
    size = {"height": IMAGE, "width": IMAGE}
    LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": IMAGE}, crop_size=size),
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        chat_template=template,
        num_additional_image_tokens=1,
    ).save_pretrained(path)
    return path
