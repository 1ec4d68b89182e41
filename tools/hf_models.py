"""The `standard` profile's models: CLIP, BLIP and ViLT checkpoints loaded with transformers.

Each role (`clip`, `blip_caption`, `blip_vqa`, `vilt_vqa`) names a Hugging Face id or a local
directory in `StandardModels`; `load_pretrained(ctx, role)` loads it once per process through
the model host, with its tokenizer and a Pillow image processor (never torchvision), and
returns a `Pretrained` bundle that turns images and texts into tensors on the model's device.
A model that cannot be found or loaded raises `ModelUnavailableError` with one line naming
the model and how to provide it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field

from sensorium.tools.errors import ModelUnavailableError

if TYPE_CHECKING:
    # torch is imported where models run: settings and tool declarations import this module
    # for `StandardModels`, and must stay cheap to import (`sensorium --help`).
    import torch
    from PIL import Image

    from sensorium.tools.base import ToolContext
    from sensorium.tools.host import ModelHost

ModelRole = Literal["clip", "blip_caption", "blip_vqa", "vilt_vqa", "detector", "vlm"]
I = TypeVar("I")  # noqa: E741  (a batch item)
R = TypeVar("R")
# The experts built on these models register in this entry-point group, not in
# `sensorium.tools`: only the standard profile should discover them.
STANDARD_ENTRY_POINT_GROUP = "sensorium.tools.standard"


class StandardModels(BaseModel):
    """Which checkpoint each standard expert runs: a Hugging Face id or a local directory."""

    model_config = ConfigDict(extra="forbid")

    clip: str = Field(
        "openai/clip-vit-base-patch32",
        description="image-text encoder for clip_classify / clip_answer / clip_embed "
        "(CLIP; SigLIP works too)",
    )
    blip_caption: str = Field(
        "Salesforce/blip-image-captioning-base", description="captioner for blip_caption"
    )
    blip_vqa: str = Field("Salesforce/blip-vqa-base", description="VQA model for blip_answer")
    vilt_vqa: str = Field(
        "dandelin/vilt-b32-finetuned-vqa", description="VQA model for vilt_answer"
    )
    detector: str = Field(
        "google/owlv2-base-patch16-ensemble",
        description="zero-shot detector for detect (OWLv2 or OWL-ViT)",
    )
    vlm: str = Field(
        "HuggingFaceTB/SmolVLM-256M-Instruct",
        description="vision-language model for vlm_answer (transformers), or the model name "
        "the vlm_endpoint serves",
    )
    vlm_endpoint: str | None = Field(
        None,
        description="an OpenAI-compatible vision server for vlm_answer (vLLM, llama.cpp, "
        "Ollama's /v1, a hosted API), e.g. http://127.0.0.1:8080/v1; None: transformers",
    )
    vlm_api_key: str | None = Field(None, description="the vlm_endpoint's API key, if it needs one")
    trust_remote_code: bool = Field(
        False, description="let checkpoints run their own Python code (only for ones you trust)"
    )


@dataclass(frozen=True)
class _RoleSpec:
    label: str  # for messages: "CLIP model 'openai/...' is not available"
    model_types: frozenset[str]  # config.model_type values the experts' code can drive
    model_class: str  # the transformers class that loads it


_ROLES: dict[ModelRole, _RoleSpec] = {
    # AutoModel: CLIPModel for CLIP checkpoints, SiglipModel for SigLIP ones.
    "clip": _RoleSpec("CLIP", frozenset({"clip", "siglip"}), "AutoModel"),
    "blip_caption": _RoleSpec(
        "BLIP captioning", frozenset({"blip"}), "BlipForConditionalGeneration"
    ),
    "blip_vqa": _RoleSpec("BLIP VQA", frozenset({"blip"}), "BlipForQuestionAnswering"),
    "vilt_vqa": _RoleSpec("ViLT VQA", frozenset({"vilt"}), "ViltForQuestionAnswering"),
    "detector": _RoleSpec(
        "zero-shot detector", frozenset({"owlvit", "owlv2"}), "AutoModelForZeroShotObjectDetection"
    ),
    "vlm": _RoleSpec(
        "vision-language model",
        frozenset({"idefics3", "smolvlm", "llava", "qwen2_vl", "qwen2_5_vl", "paligemma"}),
        "AutoModelForImageTextToText",
    ),
}


@dataclass(frozen=True)
class Pretrained:
    """A loaded checkpoint: the model, its tokenizer and image processor, and its device."""

    model_id: str
    model: Any  # a transformers PreTrainedModel, in eval mode on `device`
    tokenizer: Any
    image_processor: Any
    device: torch.device
    processor: Any = None  # the multimodal processor (chat template, image tokens) of a VLM

    @property
    def model_type(self) -> str:
        """`config.model_type` of the checkpoint ("clip", "siglip", "blip", "vilt")."""
        return str(self.model.config.model_type)

    def payload(self) -> dict[str, str]:
        """What every piece of evidence says about where it came from."""
        return {"model": self.model_id, "device": str(self.device)}

    def images(self, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        """Preprocess a batch of images into tensors on the model's device."""
        batch = self.image_processor(images=[i.convert("RGB") for i in images], return_tensors="pt")
        return self._placed(batch)

    def texts(self, texts: Sequence[str], padding: bool | str = True) -> dict[str, torch.Tensor]:
        """Tokenise a batch of texts (truncated to the model's length) on the model's device."""
        batch = self.tokenizer(
            list(texts),
            padding=padding,
            truncation=True,
            max_length=self.max_text_length,
            return_tensors="pt",
        )
        return self._placed(batch)

    @property
    def max_text_length(self) -> int:
        """The longest token sequence the text tower takes."""
        config = getattr(self.model.config, "text_config", self.model.config)
        limits = [self.tokenizer.model_max_length, config.max_position_embeddings]
        return int(min(limit for limit in limits if isinstance(limit, int)))

    def _placed(self, batch: Any) -> dict[str, torch.Tensor]:
        import torch

        placed: dict[str, torch.Tensor] = {}
        for name, value in batch.items():
            if isinstance(value, torch.Tensor):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(self.model.dtype)
                placed[name] = value
        return placed


def model_id(ctx: ToolContext, role: ModelRole) -> str:
    """The configured id or path for a role."""
    return cast(str, getattr(ctx.models, role))


def load_pretrained(ctx: ToolContext, role: ModelRole) -> Pretrained:
    """The checkpoint configured for `role`, loaded on first use and then shared."""
    name = model_id(ctx, role)
    trust = ctx.models.trust_remote_code
    return ctx.host.get(
        f"transformers:{role}:{name}", lambda device: _load(role, name, trust, ctx.host)
    )


def batched(
    ctx: ToolContext,
    role: ModelRole,
    run: Callable[[Pretrained, list[I]], Sequence[R]],
    item: I,
) -> R:
    """`run(model, [item])[0]`, sharing one forward pass with concurrent requests for the same
    checkpoint and function (the host's micro-batcher; `[batching]` in the settings).

    `run` must give each item the result it would get alone: pad inputs and pass their masks.
    Errors that concern one item (a missing question, an unreadable image) belong before
    this call, in the caller's thread, so they never fail a whole batch.
    """
    name = model_id(ctx, role)
    trust = ctx.models.trust_remote_code
    key = f"{role}:{name}:{trust}:{run.__module__}.{run.__qualname__}"
    return ctx.host.submit(key, lambda items: run(load_pretrained(ctx, role), items), item)


def unavailable(role: ModelRole, name: str, reason: str) -> ModelUnavailableError:
    """The one-line error for a model that cannot be loaded, saying how to provide it."""
    return ModelUnavailableError(
        f"{_ROLES[role].label} model {name!r} is not available ({reason}); download it with "
        f"network access, or set [models] {role} = '/path/to/dir'"
    )


def _looks_like_path(name: str) -> bool:
    # A hub id is "name" or "owner/name"; anything else is meant as a folder.
    return name.startswith(("/", "./", "../", "~", "\\")) or name.count("/") > 1 or ":" in name


def _load(role: ModelRole, name: str, trust: bool, host: ModelHost) -> Pretrained:
    from sensorium.tools.host import TRANSFORMERS_LOAD_LOCK  # imports torch

    local = Path(name).expanduser()
    if not local.exists() and _looks_like_path(name):
        raise unavailable(role, name, "no such directory")
    if local.is_dir() and not (local / "config.json").is_file():
        raise unavailable(role, name, "the folder has no config.json; save_pretrained writes one")
    source = str(local) if local.exists() else name
    try:
        with TRANSFORMERS_LOAD_LOCK:
            return _from_pretrained(role, name, source, trust, host)
    except ModelUnavailableError:
        raise
    except Exception as exc:
        raise unavailable(role, name, _reason(exc, hub=not local.exists())) from exc


def _from_pretrained(
    role: ModelRole, name: str, source: str, trust: bool, host: ModelHost
) -> Pretrained:
    import transformers
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    spec = _ROLES[role]
    config = transformers.AutoConfig.from_pretrained(source, trust_remote_code=trust)
    if config.model_type not in spec.model_types and not trust:
        expected = " or ".join(sorted(spec.model_types))
        raise unavailable(role, name, f"it is a {config.model_type} checkpoint, not {expected}")
    # use_safetensors is left to transformers: it prefers model.safetensors and falls back
    # to pytorch_model.bin for older checkpoints (dandelin/vilt-b32-finetuned-vqa).
    model = getattr(transformers, spec.model_class).from_pretrained(
        source, config=config, trust_remote_code=trust
    )
    if role == "vlm":  # a chat template and image tokens: the processor puts them together
        processor = transformers.AutoProcessor.from_pretrained(  # type: ignore[no-untyped-call]
            source, trust_remote_code=trust, **_pillow_backend()
        )
        placed = host.place(model)
        return Pretrained(
            name, placed, processor.tokenizer, processor.image_processor, host.device, processor
        )
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=trust)
    image_processor = transformers.AutoImageProcessor.from_pretrained(  # type: ignore[no-untyped-call]
        source, trust_remote_code=trust, **_pillow_backend()
    )
    # On the host's device, in its dtype (fp16 on CUDA, fp32 on CPU), in eval mode.
    return Pretrained(name, host.place(model), tokenizer, image_processor, host.device)


def _pillow_backend() -> dict[str, str]:
    """transformers 5 picks torchvision image processors when asked for "fast" ones; torchvision
    breaks beside CPU torch, so ask for the Pillow backend (4.x processors are Pillow-only)."""
    import transformers

    major = int(transformers.__version__.split(".", 1)[0])
    return {"backend": "pil"} if major >= 5 else {}


def _reason(exc: Exception, hub: bool) -> str:
    """Why loading failed, in a few words (transformers' messages run to paragraphs)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    if hub and isinstance(exc, OSError):
        if "connect" in first or "offline" in first or "cached files" in first:
            return "not in the Hugging Face cache, and the hub could not be reached"
        if "not a valid model identifier" in first:
            return "no such folder, and no such model on the Hugging Face hub"
    return f"cannot load it: {first[:160]}"


def generated_log_probs(
    sequences: torch.Tensor, logits: Sequence[torch.Tensor], stop_ids: Sequence[int], row: int = 0
) -> tuple[list[int], torch.Tensor]:
    """The tokens a greedy `generate` produced for sequence `row` of the batch, up to and
    including the first stop token, and the model's log-probability of each (from the raw
    logits). Tokens after the stop (padding while other rows went on) are dropped."""
    import torch

    steps = len(logits)
    tokens = sequences[row, sequences.shape[1] - steps :].tolist()
    log_probs = torch.stack([step[row] for step in logits]).float().log_softmax(-1)
    chosen = log_probs[torch.arange(steps), torch.tensor(tokens, device=log_probs.device)]
    end = next((i + 1 for i, token in enumerate(tokens) if token in stop_ids), steps)
    return tokens[:end], chosen[:end]


def sequence_confidence(log_probs: torch.Tensor) -> float:
    """exp(mean token log-probability): the geometric-mean probability of the tokens, so a
    long sentence is not punished for its length the way the product would."""
    import torch

    if log_probs.numel() == 0:
        return 0.0
    return float(torch.exp(log_probs.mean()).clamp(0.0, 1.0))
