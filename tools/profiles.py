"""Profiles: which experts an agent runs. `lite` runs the small models that ship in packages;
`standard` runs CLIP, BLIP and ViLT through transformers, in the roles the lite experts play.

The router names roles ("classify", "answer", ...), not experts, so its rules hold for both
profiles; third-party plugins are discovered in every profile.
"""

from __future__ import annotations

from typing import Literal

from sensorium.tools.hf_models import STANDARD_ENTRY_POINT_GROUP, ModelRole

Profile = Literal["lite", "standard"]

ENTRY_POINT_GROUPS: dict[str, tuple[str, ...]] = {
    "lite": ("sensorium.tools",),
    "standard": ("sensorium.tools", STANDARD_ENTRY_POINT_GROUP),
}
# Lite experts that the standard profile's transformers experts replace (unless named in
# `tools`): one expert per role keeps plans and fusion easy to read.
REPLACED_IN_STANDARD = frozenset({"classify", "answer_question", "caption", "embed_image"})

# role -> the experts that play it, best first.
ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    "lite": {
        "classify": ("classify",),
        "answer": ("answer_question",),
        "colours": ("colours",),  # ConSE carries no colour: zero-shot VQA only adds noise
        "caption": ("caption",),
        "embed": ("embed_image",),
        "read": ("read_text",),
        "texts": ("match_text",),
    },
    "standard": {
        "classify": ("clip_classify",),
        "answer": ("vilt_answer", "blip_answer"),
        "colours": ("colours", "vilt_answer"),
        "caption": ("blip_caption",),
        "embed": ("clip_embed",),
        "read": ("read_text",),
        "detect": ("detect",),
        "texts": ("match_text",),
    },
}

# Which configured checkpoint (`[models]`) each transformers expert loads.
EXPERT_MODELS: dict[str, ModelRole] = {
    "clip_classify": "clip",
    "clip_answer": "clip",
    "clip_embed": "clip",
    "blip_caption": "blip_caption",
    "blip_answer": "blip_vqa",
    "vilt_answer": "vilt_vqa",
    "detect": "detector",
    "vlm_answer": "vlm",
}


def in_profile(experts: list[str], profile: Profile) -> list[str]:
    """Lite expert names as `profile` names them: each lite expert that plays a role becomes
    the experts that play that role in `profile` (others, e.g. plugins, stay). Routing data is
    written with lite names; this scores the same requests on the standard profile."""
    role_of = {expert: role for role, names in ROLES["lite"].items() for expert in names}
    translated: list[str] = []
    for expert in experts:
        role = role_of.get(expert)
        translated += ROLES[profile][role] if role else (expert,)
    return list(dict.fromkeys(translated))
