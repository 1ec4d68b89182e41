"""The deterministic router: which experts suit a request, without an LLM.

Two signals. The form of the question ("what colour", "is this a", "describe") names the
built-in experts that answer that form. The meaning of the request, embedded with the text
encoder, is compared with each tool's description and examples, which also lets plugin tools
be routed to without any rule naming them. The same comparison with the declared limits
(`LIMITS`: what no expert does) finds requests to decline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from sensorium.tools import Registry, Tool
from sensorium.tools.profiles import ROLES
from sensorium.tools.questions import QuestionKind, asks_for_my_texts, question_kind

# The roles that answer each form of question, best first; a profile names the experts that
# play each role (`sensorium.tools.profiles.ROLES`).
_RULES: dict[QuestionKind, tuple[str, ...]] = {
    "read": ("read",),
    "colour": ("colours",),
    "count": ("detect", "answer"),
    "shape": ("answer",),
    "describe": ("caption",),
    "animal": ("classify", "answer"),
    "what": ("classify", "answer"),
    "yes_no": ("classify", "answer"),
    "other": (),
}
_COLOUR_WORDS = {
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white",
    "gray", "grey",
}  # fmt: skip
_EMBED_WORDS = {"embed", "embedding", "embeddings", "vector", "vectors"}


Embedder = Callable[[list[str]], np.ndarray]


class Limit(NamedTuple):
    """Something Sensorium cannot do, declared like a tool: what it is, and example requests."""

    description: str
    examples: tuple[str, ...]


# What no built-in expert does. A plugin that does one of these wins: a request is declined
# only when it is closer to a limit than to every installed tool.
LIMITS: dict[str, Limit] = {
    "video": Limit(
        "Watch, summarise, track objects in, make or edit a video clip or movie",
        (
            "What happens in this video?",
            "Summarise this clip",
            "Cut the first minute of the movie",
            "Make a video of my dog",
            "Track the ball across the frames",
        ),
    ),
    "audio": Limit(
        "Listen to, transcribe, recognise or produce sound, speech or music",
        (
            "Transcribe this recording",
            "What song is this?",
            "Read this text aloud to me",
            "Compose some music",
            "Who is speaking in this audio?",
        ),
    ),
    "image generation": Limit(
        "Create, draw or generate a new picture from a description",
        (
            "Draw me a dragon",
            "Generate an image of a sunset",
            "Make a logo for my shop",
            "Create a picture of a cat astronaut",
            "Paint a portrait of me",
        ),
    ),
    "image editing": Limit(
        "Edit or transform a picture: remove or add objects, restyle, recolour, enhance, upscale",
        (
            "Remove the person from this photo",
            "Make it look like a painting",
            "Upscale this",
            "Change the sky to blue",
            "Blur the faces",
        ),
    ),
    "segmentation": Limit(
        "Segment a picture: mask or cut out objects pixel by pixel",
        (
            "Segment the cat from the background",
            "Give me a mask of the road",
            "Cut out the dog",
            "Outline every object pixel by pixel",
        ),
    ),
    "3D and depth": Limit(
        "Estimate depth, or build a 3D model or scene from pictures",
        ("Build a 3D model from this photo", "Estimate the depth of this scene"),
    ),
}


class Router:
    """Scores tools for a request; `route` returns tool names, best first."""

    def __init__(
        self,
        registry: Registry,
        embed: Embedder | None = None,
        *,
        similarity_floor: float = 0.45,
        decisive_similarity: float = 0.75,
        limit_margin: float = 0.0,
        max_tools: int = 3,
        profile: str = "lite",
    ) -> None:
        self.registry = registry
        self.roles = ROLES[profile]
        self.embed = embed
        self.similarity_floor = similarity_floor
        self.decisive_similarity = decisive_similarity
        self.limit_margin = limit_margin
        self.max_tools = max_tools
        self._tool_vectors: dict[str, np.ndarray] | None = None
        self._limit_vectors: dict[str, np.ndarray] | None = None
        self._last_similarities: tuple[str, dict[str, float]] | None = None

    def _vectors(self) -> dict[str, np.ndarray]:
        if self._tool_vectors is None:
            assert self.embed is not None
            self._tool_vectors = {}
            for tool in self.registry:
                texts = [tool.description, *tool.examples]
                self._tool_vectors[tool.name] = self.embed(texts)
        return self._tool_vectors

    def similarities(self, request: str) -> dict[str, float]:
        """Cosine similarity of the request to each tool's closest description or example."""
        if self.embed is None or not request.strip():
            return {}
        # route() and unsupported() ask about the same request.
        if self._last_similarities is None or self._last_similarities[0] != request:
            query = self.embed([request])[0]
            scores = {name: float((rows @ query).max()) for name, rows in self._vectors().items()}
            self._last_similarities = (request, scores)
        return self._last_similarities[1]

    def route(self, request: str) -> list[str]:
        """Tool names for a request, best first (empty when nothing fits)."""
        words = set(request.lower().replace("?", " ").replace(",", " ").split())
        kind = question_kind(request)
        chosen: list[str] = []
        if words & _EMBED_WORDS:
            roles: tuple[str, ...] = ("embed",)
        elif asks_for_my_texts(request):
            roles = ("texts",)
        elif kind == "yes_no" and words & _COLOUR_WORDS:
            roles = ("colours",)
        else:
            roles = _RULES[kind]
        chosen = [name for role in roles for name in self.roles.get(role, ())]
        chosen = [name for name in chosen if name in self.registry]
        scores = self.similarities(request)
        if scores:
            best, best_score = max(scores.items(), key=lambda item: item[1])
            rules_best = max((scores.get(name, 0.0) for name in chosen), default=0.0)
            if best not in chosen and best_score >= self.similarity_floor:
                if not chosen:
                    chosen = [best]  # no rule applies: the closest tool by meaning
                elif best_score >= self.decisive_similarity and best_score - rules_best > 0.25:
                    chosen = [best]  # the request all but quotes another tool's example
                elif _is_plugin(self.registry.get(best)):
                    chosen.append(best)  # plugins have no rules; meaning is their only route
        return list(dict.fromkeys(chosen))[: self.max_tools]

    def unsupported(self, request: str) -> str | None:
        """The declared limit a request asks for (e.g. "video"), when it is closer in meaning
        to that limit than to every tool; None when some tool fits better."""
        tools = self.similarities(request)
        if not tools:
            return None
        assert self.embed is not None
        if self._limit_vectors is None:
            self._limit_vectors = {
                name: self.embed([limit.description, *limit.examples])
                for name, limit in LIMITS.items()
            }
        query = self.embed([request])[0]  # similarities() checked that embed is set
        limits = {name: float((rows @ query).max()) for name, rows in self._limit_vectors.items()}
        name, score = max(limits.items(), key=lambda item: item[1])
        if score >= self.similarity_floor and score > max(tools.values()) + self.limit_margin:
            return name
        return None


def _is_plugin(tool: Tool) -> bool:
    return not tool.fn.__module__.startswith("sensorium.")
