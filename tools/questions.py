"""What kind of question is this? Shared by experts (to choose candidate answers) and the
router (to choose experts). Plain rules: fast, predictable, and easy to test.
"""

from __future__ import annotations

import re
from typing import Literal

QuestionKind = Literal["yes_no", "colour", "count", "animal", "shape", "describe", "what", "other"]

_YES_NO_START = re.compile(
    r"^(is|are|was|were|does|do|did|can|could|has|have|will|would|should)\b", re.IGNORECASE
)
_COLOUR = re.compile(r"\b(colou?rs?|hue|shade)\b", re.IGNORECASE)
_COUNT = re.compile(r"\bhow many\b|\bcount\b|\bnumber of\b", re.IGNORECASE)
_ANIMAL = re.compile(r"\b(animal|creature|pet|species|breed|beast)s?\b", re.IGNORECASE)
_SHAPE = re.compile(r"\bshapes?\b", re.IGNORECASE)
_DESCRIBE = re.compile(
    r"\b(describe|description|caption|summari[sz]e|what(?:'s| is) (?:happening|going on)|"
    r"tell me about|what do you see)\b",
    re.IGNORECASE,
)
_WHAT = re.compile(r"\b(what|which|who)\b", re.IGNORECASE)
_ARTICLE = re.compile(r"^(?:a|an|the|any|some)\s+", re.IGNORECASE)


def question_kind(question: str) -> QuestionKind:
    """Classify a question by the form of answer it expects."""
    text = question.strip()
    if _YES_NO_START.match(text):
        return "yes_no"
    if _COUNT.search(text):
        return "count"
    if _COLOUR.search(text):
        return "colour"
    if _SHAPE.search(text):
        return "shape"
    if _DESCRIBE.search(text):
        return "describe"
    if _ANIMAL.search(text):
        return "animal"
    if _WHAT.search(text):
        return "what"
    return "other"


_SUBJECT = re.compile(
    r"^(?:is|are|was|were)\s+(?:this|that|it|there|these|those)\s+(?:an?\s+|any\s+|some\s+)?"
    r"(?:picture|photo|image)?\s*(?:of\s+)?(?:an?\s+|the\s+)?(?P<subject>[\w\s'-]+?)\s*"
    r"(?:in (?:the|this) (?:picture|photo|image))?\s*\??$",
    re.IGNORECASE,
)


def yes_no_subject(question: str) -> str | None:
    """The thing a yes/no question asks about: "Is this a cat?" -> "cat"."""
    match = _SUBJECT.match(question.strip())
    if not match:
        return None
    subject = _ARTICLE.sub("", match.group("subject").strip().lower())
    return subject or None
