"""The standard profile's transformers experts, on tiny random checkpoints built from config.

The checkpoints are saved with `save_pretrained` and loaded back through the experts' own
`from_pretrained` code, as real CLIP / BLIP / ViLT weights would be. Every confidence is
recomputed here independently of the expert (CLIP's own forward, a hand-written greedy
decoder, ViLT's logits), so the formulas are pinned, not just the ranges.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import (
    CLIP_PROJECTION,
    HIDDEN,
    VQA_LABELS,
)

from sensorium.tools import (
    Evidence,
    ImageRef,
    ImageStore,
    ModelHost,
    ModelUnavailableError,
    Registry,
    Tool,
    ToolContext,
)
from sensorium.tools.blip_experts import (
    MAX_ANSWER_TOKENS,
    MAX_CAPTION_TOKENS,
    blip_answer,
    blip_caption,
)
from sensorium.tools.clip_experts import ClipJointEncoder, clip_answer, clip_classify, clip_embed
from sensorium.tools.colour import COLOUR_NAMES
from sensorium.tools.detector import detect
from sensorium.tools.hf_models import STANDARD_ENTRY_POINT_GROUP, StandardModels, load_pretrained
from sensorium.tools.imagenet import class_names, everyday_name
from sensorium.tools.profiles import EXPERT_MODELS
from sensorium.tools.vilt_expert import vilt_answer
from sensorium.tools.vlm import vlm_answer

CHELSEA = Path(__file__).resolve().parents[1] / "examples" / "images" / "chelsea.jpg"
STANDARD_EXPERTS = EXPERT_MODELS  # expert -> the `[models]` checkpoint it loads


def make_ctx(root: Path, **models: Any) -> ToolContext:
    return ToolContext(
        host=ModelHost("cpu"),
        images=ImageStore(root / "images"),
        cache_dir=root / "cache",
        models=StandardModels(**models),
    )


@pytest.fixture(scope="module")
def ctx(tiny: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> ToolContext:
    roles = ("clip", "blip_caption", "blip_vqa", "vilt_vqa")
    return make_ctx(tmp_path_factory.mktemp("standard"), **{r: str(tiny[r]) for r in roles})


@pytest.fixture(scope="module")
def cat(ctx: ToolContext) -> ImageRef:
    return ctx.images.add(CHELSEA)


def check(evidence: Evidence, tool: Tool, ctx: ToolContext) -> Evidence:
    """The common contract: no error, a confidence in [0, 1], the model named in the payload."""
    assert evidence.error is None, evidence.error
    assert evidence.expert == tool.name
    assert 0.0 <= evidence.confidence <= 1.0
    role = STANDARD_EXPERTS[tool.name]
    assert evidence.payload["model"] == getattr(ctx.models, role)
    assert evidence.payload["device"] == "cpu"
    return evidence


def clip_softmax(ctx: ToolContext, image: ImageRef, prompts: list[str]) -> np.ndarray:
    """Softmax over prompts from CLIP's own forward pass (`logits_per_image`)."""
    clip = load_pretrained(ctx, "clip")
    inputs = clip.images([ctx.images.load(image)]) | clip.texts(prompts)
    with torch.inference_mode():
        logits = clip.model(**inputs).logits_per_image[0]
    return np.asarray(logits.softmax(-1).numpy(), dtype=np.float64)


# Settings and declarations.


def test_standard_models_defaults_are_the_documented_checkpoints(tmp_path: Path) -> None:
    models = StandardModels()
    assert (models.clip, models.blip_caption, models.blip_vqa, models.vilt_vqa) == (
        "openai/clip-vit-base-patch32",
        "Salesforce/blip-image-captioning-base",
        "Salesforce/blip-vqa-base",
        "dandelin/vilt-b32-finetuned-vqa",
    )
    assert (models.detector, models.vlm, models.vlm_endpoint) == (
        "google/owlv2-base-patch16-ensemble",
        "HuggingFaceTB/SmolVLM-256M-Instruct",
        None,
    )
    assert models.trust_remote_code is False
    assert ToolContext(host=ModelHost("cpu"), images=ImageStore(tmp_path)).models == models
    with pytest.raises(ValueError, match="clipp"):
        StandardModels.model_validate({"clipp": "x"})


def test_the_experts_are_declared_tools_that_coexist_with_the_lite_ones() -> None:
    tools = [
        clip_classify, clip_answer, clip_embed, blip_caption, blip_answer, vilt_answer, detect,
        vlm_answer,
    ]  # fmt: skip
    assert all(isinstance(tool, Tool) for tool in tools)
    assert [tool.name for tool in tools] == list(STANDARD_EXPERTS)
    assert all(tool.needs_image and tool.description for tool in tools)
    assert {t.name for t in tools if t.takes_question} == {
        "clip_classify",
        "clip_answer",
        "blip_answer",
        "vilt_answer",
        "detect",
        "vlm_answer",
    }
    assert not clip_embed.answers_questions
    assert clip_answer.argument_schema()["required"] == ["question"]
    registered = {p.name: p.load() for p in entry_points(group=STANDARD_ENTRY_POINT_GROUP)}
    assert registered == {tool.name: tool for tool in tools}
    # Their own group: the lite profile's discovery is unchanged.
    assert not set(Registry.discover().names()) & set(STANDARD_EXPERTS)


# Loading failures: one line naming the model and how to provide it.


@pytest.mark.parametrize(
    ("role", "label", "tool", "arguments"),
    [
        ("clip", "CLIP", clip_classify, {}),
        ("blip_caption", "BLIP captioning", blip_caption, {}),
        ("blip_vqa", "BLIP VQA", blip_answer, {"question": "What is it?"}),
        ("vilt_vqa", "ViLT VQA", vilt_answer, {"question": "What is it?"}),
    ],
)
def test_a_missing_model_folder_is_one_line_naming_the_model(
    tmp_path: Path, role: str, label: str, tool: Tool, arguments: dict[str, Any]
) -> None:
    missing = str(tmp_path / "nowhere" / role)
    ctx = make_ctx(tmp_path, **{role: missing})
    evidence = tool.run(ctx, {"image": ctx.images.add(CHELSEA), **arguments})
    assert evidence.error == (
        f"ModelUnavailableError: {label} model '{missing}' is not available (no such "
        f"directory); download it with network access, or set [models] {role} = '/path/to/dir'"
    )


def test_a_checkpoint_of_the_wrong_kind_is_refused_naming_both(
    tiny: dict[str, Path], tmp_path: Path
) -> None:
    ctx = make_ctx(tmp_path, blip_caption=str(tiny["clip"]))
    with pytest.raises(
        ModelUnavailableError,
        match=r"^BLIP captioning model '.*clip' is not available \(it is a clip checkpoint, "
        r"not blip\); download it .* set \[models\] blip_caption = '/path/to/dir'$",
    ):
        load_pretrained(ctx, "blip_caption")


def test_a_folder_that_is_not_a_checkpoint_says_why_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    ctx = make_ctx(tmp_path, vilt_vqa=str(tmp_path / "empty"))
    with pytest.raises(ModelUnavailableError) as caught:
        load_pretrained(ctx, "vilt_vqa")
    assert str(caught.value) == (
        f"ViLT VQA model '{tmp_path / 'empty'}' is not available (the folder has no "
        "config.json; save_pretrained writes one); download it with network access, or set "
        "[models] vilt_vqa = '/path/to/dir'"
    )
    (tmp_path / "empty" / "config.json").write_text("{not json")
    with pytest.raises(ModelUnavailableError) as caught:
        load_pretrained(ctx, "vilt_vqa")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"ViLT VQA model '{tmp_path / 'empty'}' is not available (cannot")
    assert message.endswith("or set [models] vilt_vqa = '/path/to/dir'")


def test_a_hub_id_that_is_not_cached_offline_names_the_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    ctx = make_ctx(tmp_path, clip="openai/clip-vit-base-patch32")
    with pytest.raises(
        ModelUnavailableError,
        match=r"^CLIP model 'openai/clip-vit-base-patch32' is not available \(not in the "
        r"Hugging Face cache, and the hub could not be reached\); download it with network "
        r"access, or set \[models\] clip = '/path/to/dir'$",
    ):
        load_pretrained(ctx, "clip")


# CLIP.


def test_clip_classify_is_the_zero_shot_softmax_over_imagenet_prompts(
    ctx: ToolContext, cat: ImageRef
) -> None:
    evidence = check(clip_classify.run(ctx, {"image": cat}), clip_classify, ctx)
    probs = clip_softmax(ctx, cat, [f"a photo of a {name}" for name in class_names()])
    top = int(np.argmax(probs))
    assert evidence.payload["labels"][0] == {
        "label": class_names()[top],
        "probability": round(float(probs[top]), 4),
    }
    # The answer is the everyday word with the most probability; its mass is the confidence.
    mass: dict[str, float] = {}
    for index, p in enumerate(probs):
        mass[everyday_name(index)] = mass.get(everyday_name(index), 0.0) + float(p)
    word = max(mass, key=lambda w: mass[w])
    assert evidence.answer == word
    assert evidence.confidence == pytest.approx(mass[word], abs=1e-5)


def test_clip_classify_answers_yes_no_from_the_class_mass_and_flips_negations(
    ctx: ToolContext, cat: ImageRef
) -> None:
    probs = clip_softmax(ctx, cat, [f"a photo of a {name}" for name in class_names()])
    p_cat = float(sum(probs[i] for i in range(1000) if everyday_name(i) == "cat"))
    asked = check(
        clip_classify.run(ctx, {"image": cat, "question": "Is this a cat?"}), clip_classify, ctx
    )
    assert asked.answer == ("yes" if p_cat >= 0.5 else "no")
    assert asked.confidence == pytest.approx(max(p_cat, 1 - p_cat), abs=1e-5)
    negated = clip_classify.run(ctx, {"image": cat, "question": "Is this not a cat?"})
    assert {asked.answer, negated.answer} == {"yes", "no"}
    unknown = clip_classify.run(ctx, {"image": cat, "question": "Is this a flibbertigibbet?"})
    assert unknown.answer is None and "cannot judge" in unknown.payload["skipped"]


def test_clip_answer_scores_the_candidate_answers(ctx: ToolContext, cat: ImageRef) -> None:
    evidence = check(
        clip_answer.run(ctx, {"image": cat, "question": "What colour is the cat?"}),
        clip_answer,
        ctx,
    )
    probs = clip_softmax(ctx, cat, [f"a {colour} photo" for colour in COLOUR_NAMES])
    assert evidence.answer == COLOUR_NAMES[int(np.argmax(probs))]
    assert evidence.confidence == pytest.approx(float(probs.max()), abs=1e-5)
    assert len(evidence.payload["candidates"]) == 5


def test_clip_answer_yes_no_counts_the_named_classes_for_the_subject(
    ctx: ToolContext, cat: ImageRef
) -> None:
    evidence = check(
        clip_answer.run(ctx, {"image": cat, "question": "Is there a cat in the picture?"}),
        clip_answer,
        ctx,
    )
    prompts = ["a photo of a cat", *(f"a photo of a {name}" for name in class_names())]
    probs = clip_softmax(ctx, cat, prompts)
    p_yes = probs[0] + sum(probs[1 + i] for i in range(1000) if everyday_name(i) == "cat")
    assert evidence.payload["p_yes"] == round(float(p_yes), 4)
    assert evidence.confidence == pytest.approx(max(p_yes, 1 - p_yes), abs=1e-5)
    shape = clip_answer.run(ctx, {"image": cat, "question": "Is this a circle?"})
    assert shape.answer in {"yes", "no"} and shape.payload["subject"] == "circle"


def test_clip_answer_needs_a_question(ctx: ToolContext, cat: ImageRef) -> None:
    evidence = clip_answer.run(ctx, {"image": cat, "question": " "})
    assert evidence.error == "ValueError: clip_answer needs a question; pass the user's question"


def test_clip_embed_and_the_joint_encoder_give_unit_vectors_of_the_projection_size(
    ctx: ToolContext, cat: ImageRef
) -> None:
    evidence = check(clip_embed.run(ctx, {"image": cat}), clip_embed, ctx)
    vector = np.asarray(evidence.payload["vector"])
    assert evidence.payload["dimension"] == CLIP_PROJECTION == vector.shape[0]
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-3)
    assert len(evidence.payload["concepts"]) == 3 and not clip_embed.answers_questions

    encoder = ClipJointEncoder(ctx)
    assert (encoder.id, encoder.dimension) == (f"clip:{ctx.models.clip}", CLIP_PROJECTION)
    images = encoder.encode_images([ctx.images.load(cat), Image.new("RGB", (40, 20), "red")])
    texts = encoder.encode_texts(["cats", "a photo of a dog"])
    for vectors in (images, texts):
        assert vectors.shape == (2, CLIP_PROJECTION)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(images[0], vector, atol=1e-4)
    described, labels = encoder.describe_images([ctx.images.load(cat)])
    assert described.shape == (1, CLIP_PROJECTION) and labels[0].count(", ") == 2


def test_clip_prompt_embeddings_are_cached_on_disk_per_model(
    ctx: ToolContext, cat: ImageRef
) -> None:
    clip_classify.run(ctx, {"image": cat})
    assert ctx.cache_dir is not None
    cached = list((ctx.cache_dir / "embeddings").glob("clip-imagenet-*.npy"))
    assert len(cached) == 1 and np.load(cached[0]).shape == (1000, CLIP_PROJECTION)


def test_siglip_runs_through_the_same_code(tiny: dict[str, Path], tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, clip=str(tiny["siglip"]))
    image = ctx.images.add(CHELSEA)
    evidence = check(
        clip_answer.run(ctx, {"image": image, "question": "What shape is it?"}), clip_answer, ctx
    )
    assert evidence.answer in {"circle", "rectangle", "square", "triangle"}
    encoder = ClipJointEncoder(ctx)
    assert encoder.dimension == HIDDEN  # SigLIP has no projection: the towers' width
    assert encoder.encode_texts(["a cat"]).shape == (1, HIDDEN)


# BLIP and ViLT.


def greedy_by_hand(
    next_logits: Callable[[torch.Tensor], torch.Tensor], bos: int, stop: int, steps: int
) -> tuple[list[int], list[float]]:
    """Greedy decoding without `generate`: the tokens and each one's log-probability."""
    sequence, log_probs = [bos], []
    with torch.inference_mode():
        for _ in range(steps):
            scores = next_logits(torch.tensor([sequence])).float().log_softmax(-1)
            token = int(scores.argmax())
            sequence.append(token)
            log_probs.append(float(scores[token]))
            if token == stop:
                break
    return sequence[1:], log_probs


def test_blip_caption_confidence_is_exp_mean_token_log_prob(
    ctx: ToolContext, cat: ImageRef
) -> None:
    evidence = check(blip_caption.run(ctx, {"image": cat}), blip_caption, ctx)
    blip = load_pretrained(ctx, "blip_caption")
    pixels = blip.images([ctx.images.load(cat)])["pixel_values"]
    text = blip.model.config.text_config
    tokens, log_probs = greedy_by_hand(
        lambda ids: blip.model(pixel_values=pixels, input_ids=ids).logits[0, -1],
        text.bos_token_id,
        text.sep_token_id,
        MAX_CAPTION_TOKENS,
    )
    assert evidence.answer == blip.tokenizer.decode(tokens, skip_special_tokens=True).strip()
    assert evidence.payload["tokens"] == len(tokens)
    assert evidence.confidence == pytest.approx(math.exp(np.mean(log_probs)), rel=1e-4)


def test_blip_answer_confidence_is_the_answers_probability(ctx: ToolContext, cat: ImageRef) -> None:
    question = "What animal is this?"
    evidence = check(blip_answer.run(ctx, {"image": cat, "question": question}), blip_answer, ctx)
    blip = load_pretrained(ctx, "blip_vqa")
    pixels = blip.images([ctx.images.load(cat)])["pixel_values"]
    with torch.inference_mode():
        image_states = blip.model.vision_model(pixel_values=pixels).last_hidden_state
        question_states = blip.model.text_encoder(
            input_ids=blip.texts([question])["input_ids"], encoder_hidden_states=image_states
        ).last_hidden_state
    text = blip.model.config.text_config
    tokens, log_probs = greedy_by_hand(
        lambda ids: blip.model.text_decoder(
            input_ids=ids, encoder_hidden_states=question_states
        ).logits[0, -1],
        text.bos_token_id,
        text.sep_token_id,
        MAX_ANSWER_TOKENS,
    )
    assert evidence.answer == blip.tokenizer.decode(tokens, skip_special_tokens=True).strip()
    assert evidence.confidence == pytest.approx(math.exp(np.mean(log_probs)), rel=1e-4)
    assert blip_answer.run(ctx, {"image": cat, "question": ""}).error == (
        "ValueError: blip_answer needs a question; pass the user's question"
    )


def test_vilt_answer_is_the_top_of_the_softmax_over_its_vocabulary(
    ctx: ToolContext, cat: ImageRef
) -> None:
    question = "What animal is this?"
    evidence = check(vilt_answer.run(ctx, {"image": cat, "question": question}), vilt_answer, ctx)
    vilt = load_pretrained(ctx, "vilt_vqa")
    with torch.inference_mode():
        logits = vilt.model(**vilt.images([ctx.images.load(cat)]), **vilt.texts([question])).logits
    probs = logits[0].softmax(-1)
    assert evidence.answer == VQA_LABELS[int(probs.argmax())]
    assert evidence.confidence == pytest.approx(float(probs.max()), abs=1e-6)
    assert next(iter(evidence.payload["answers"])) == evidence.answer
    assert sum(evidence.payload["answers"].values()) == pytest.approx(1.0, abs=1e-3)


def test_each_model_loads_once_per_host(ctx: ToolContext, cat: ImageRef) -> None:
    for tool, arguments in [
        (clip_embed, {}),
        (clip_answer, {"question": "How many cats are there?"}),
        (vilt_answer, {"question": "Is it red?"}),
    ]:
        check(tool.run(ctx, {"image": cat, **arguments}), tool, ctx)
    keys = [key for key in ctx.host.loaded() if key.startswith("transformers:")]
    assert keys and all(ctx.host.loads[key] == 1 for key in keys)
