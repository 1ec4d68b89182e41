"""The thread's image memory, and how a planner names an image in it.

A planner never sees pixels: it reads a numbered list of the images (`ImageMemory.describe`)
and passes a reference in its tool calls: the number, the file name, "hit 2" (the second
search result) or a sha256 (or its first 8+ characters). `resolve` turns that reference into
the stored image, or explains, in one line the planner can act on, why it cannot.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from sensorium.tools import ImageRef, ToolInputError


class ImageMemory(BaseModel):
    """The images a thread has seen, in first-seen order, and what this turn is about."""

    gallery: list[ImageRef] = Field(default_factory=list, description="every image, numbered")
    attached: list[ImageRef] = Field(default_factory=list, description="attached to this turn")
    retrieved: list[ImageRef] = Field(
        default_factory=list, description="the last search's hits, best first"
    )
    findings: dict[str, str] = Field(
        default_factory=dict, description="sha256 -> what was last found about that image"
    )

    def number(self, image: ImageRef) -> int:
        """The image's 1-based number in the gallery (0 when it is not there)."""
        for position, known in enumerate(self.gallery, start=1):
            if known.sha256 == image.sha256:
                return position
        return 0

    def label(self, image: ImageRef) -> str:
        """'image 2 (cat.jpg)': how replies and observations name an image."""
        number = self.number(image)
        name = image.name or image.short
        return f"image {number} ({name})" if number else name

    def resolve(self, reference: Any) -> ImageRef:
        """The image a reference names; raises `ToolInputError` saying what exists."""
        found = self._find(reference)
        if found is None:
            raise ToolInputError(f"no image {str(reference)[:80]!r} here; {self._choices()}")
        return found

    def _find(self, reference: Any) -> ImageRef | None:
        if isinstance(reference, ImageRef | dict):
            sha = reference.sha256 if isinstance(reference, ImageRef) else reference.get("sha256")
            return self._by_sha(str(sha or ""))
        if isinstance(reference, bool) or not isinstance(reference, int | str):
            return None
        text = str(reference).strip().strip("'\"").lower()
        if match := _POSITION.fullmatch(text):
            pool = self.retrieved if match.group("hit") else self.gallery
            return _at(pool, int(match.group("n")))
        if match := _ORDINAL_WORD.fullmatch(text):
            pool = self.attached if len(self.attached) > 1 else self.gallery
            return _at(pool, _ORDINALS[match.group(1)])
        if re.fullmatch(r"[0-9a-f]{8,64}", text):
            return self._by_sha(text)
        names = [image for image in self.gallery if _name_matches(image.name, text)]
        return names[-1] if names else None  # the latest image of that name

    def _by_sha(self, sha: str) -> ImageRef | None:
        matches = [image for image in self.gallery if sha and image.sha256.startswith(sha)]
        return matches[0] if len(matches) == 1 else None

    def _choices(self) -> str:
        if not self.gallery:
            return "no image is attached or found yet"
        listed = ", ".join(f"{n} ({i.name or i.short})" for n, i in enumerate(self.gallery, 1))
        return f"use an image number: {listed}"

    def describe(self) -> str:
        """The memory as text for a planner: numbered images, what is attached, search hits."""
        if not self.gallery:
            return "No images in this conversation yet."
        attached = {image.sha256 for image in self.attached}
        lines = ["Images in this conversation (pass the number as the image argument):"]
        for number, image in enumerate(self.gallery, start=1):
            line = f"{number}. {image.name or 'unnamed'} (sha256 {image.short})"
            if image.sha256 in attached:
                line += ", attached to the current message"
            if finding := self.findings.get(image.sha256):
                line += f"; earlier: {finding}"
            lines.append(line)
        if self.retrieved:
            hits = ", ".join(
                f"hit {n} = image {self.number(i)}" for n, i in enumerate(self.retrieved, 1)
            )
            lines.append(f"Last search results, best first: {hits}.")
        return "\n".join(lines)


_POSITION = re.compile(r"(?:(?P<hit>hit|result)|image|img|photo|picture|#)?\s*#?(?P<n>-?\d{1,4})")
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "last": -1}
_ORDINAL_WORD = re.compile(r"(?:the\s+)?(" + "|".join(_ORDINALS) + r")(?:\s+(?:one|image))?")


def _at(images: list[ImageRef], position: int) -> ImageRef | None:
    """The image at a 1-based position (-1 is the last), or None."""
    if position == 0 or not -len(images) <= position <= len(images):
        return None
    return images[position - 1] if position > 0 else images[position]


def _name_matches(name: str, text: str) -> bool:
    name = name.lower()
    return bool(name) and (name == text or name.rsplit(".", 1)[0] == text)
