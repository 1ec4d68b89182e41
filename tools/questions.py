"""What kind of question is this? Shared by experts (to choose candidate answers) and the
router (to choose experts). Plain rules: fast, predictable, and easy to test.
"""

from __future__ import annotations

import re
from typing import Literal

QuestionKind = Literal[
    "read", "yes_no", "colour", "count", "animal", "shape", "describe", "what", "other"
]

_YES_NO_START = re.compile(
    r"^(is|are|was|were|does|do|did|can|could|has|have|will|would|should)(?:n't)?\b",
    re.IGNORECASE,
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
# Asks for the words in the picture ("What does the sign say?", "Can you read this page?"),
# not about them ("Is the text handwritten?", "Write alt text for this").
_READ = re.compile(
    r"\b(read|transcribe)\b|\bwritten\b|\bwhat (?:does|do) .+ say\b|"
    r"\bwhat(?:'s| is| are) the (?:text|words?|title)\b|\bwhat (?:text|words?)\b",
    re.IGNORECASE,
)
_ARTICLE = re.compile(r"^(?:a|an|the|any|some)\s+", re.IGNORECASE)


def question_kind(question: str) -> QuestionKind:
    """Classify a question by the form of answer it expects."""
    text = question.strip()
    if _READ.search(text):
        return "read"
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


_THING = r"(?:an?\s+|any\s+|some\s+|the\s+)?(?P<subject>[\w\s'-]+?)"
_IN_IMAGE = r"(?:\s+in (?:the|this) (?:picture|photo|image))?\s*\??$"
_SUBJECT_FORMS = [
    # "Is this a cat?", "Is there a dog in the picture?", "Is there no red shape?"
    re.compile(
        r"^(?:is|are|was|were)(?:n't)?\s+(?:this|that|it|there|these|those)\s+(?:not\s+|no\s+)?"
        r"(?:an?\s+|any\s+|some\s+)?(?:picture|photo|image)?\s*(?:of\s+)?" + _THING + _IN_IMAGE,
        re.IGNORECASE,
    ),
    # "Does the image contain a circle?", "Does this photo not show any dogs?"
    re.compile(
        r"^(?:does|do)\s+(?:the|this|that)\s+(?:picture|photo|image)\s+(?:not\s+)?"
        r"(?:contain|show|have|include|depict)\s+" + _THING + r"\s*\??$",
        re.IGNORECASE,
    ),
    # "Is a green shape present?", "Is no circle visible in the image?"
    re.compile(
        r"^(?:is|are)\s+(?:no\s+)?" + _THING + r"\s+(?:present|visible|shown|there)" + _IN_IMAGE,
        re.IGNORECASE,
    ),
]
_NEGATION = re.compile(r"\b(?:not|no|never)\b|n't\b", re.IGNORECASE)


def yes_no_subject(question: str) -> str | None:
    """The thing a yes/no question asks about: "Is this a cat?" -> "cat", "Does the image
    contain a red circle?" -> "red circle"."""
    for form in _SUBJECT_FORMS:
        if match := form.match(question.strip()):
            subject = _ARTICLE.sub("", match.group("subject").strip().lower())
            return subject or None
    return None


def is_negated(question: str) -> bool:
    """True for a yes/no question asked in the negative ("Is there not a cat?"): experts
    judge the positive form and flip their answer."""
    return question_kind(question) == "yes_no" and bool(_NEGATION.search(question))


_SEARCH = re.compile(
    r"\b(find|search|look for|show me|retrieve|fetch|which of my|any of my|"
    r"my (?:photos|pictures|images))\b",
    re.IGNORECASE,
)
_SEARCH_LEAD = re.compile(
    r"^\s*(?:please\s+)?(?:can you\s+|could you\s+)?"
    r"(?:find|search(?: for)?|look for|show(?: me)?|retrieve|fetch|get)?\s*"
    r"(?:me\s+)?(?:all\s+)?(?:of\s+)?(?:my|the|some|any)?\s*"
    r"(?:photos?|pictures?|images?|shots?|snaps?)?\s*(?:of|with|showing|that show|for)?\s*",
    re.IGNORECASE,
)
_ORDINALS = {
    "first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
    "fifth": 5, "5th": 5, "last": -1,
}  # fmt: skip
_ORDINAL = re.compile(
    r"\b(?:the\s+)?(" + "|".join(_ORDINALS) + r")\s+(?:one|image|photo|picture|result)s?\b",
    re.IGNORECASE,
)


def is_search_request(request: str) -> bool:
    """True for requests to find images in the user's collection ("find my photos of cats")."""
    if asks_for_my_texts(request):
        return False
    return bool(_SEARCH.search(request)) and question_kind(request) != "yes_no"


# The user's own texts, not images and not a new caption: "which of my captions fits this?",
# "find the description that matches this photo".
_MY_TEXTS = re.compile(
    r"\bmy (?:\w+ )?(?:captions?|descriptions?|notes?|texts?|labels?)\b|"
    r"\b(?:captions?|descriptions?|texts?|notes?) (?:that|which) (?:fits?|match(?:es)?|goes)\b",
    re.IGNORECASE,
)


def asks_for_my_texts(request: str) -> bool:
    """True for requests to pick texts from the user's text collection for an image."""
    return bool(_MY_TEXTS.search(request))


def split_search_request(request: str) -> tuple[str, str]:
    """("find my photos of cats and describe the first one") -> ("cats", "describe the first
    one"): what to search for, and what to do with the results (may be empty)."""
    parts = re.split(r"\s+(?:and|then)\s+", request.strip(), maxsplit=1)
    head, tail = parts[0], parts[1] if len(parts) > 1 else ""
    phrase = _SEARCH_LEAD.sub("", head, count=1).strip(" ?.!,") or head.strip(" ?.!,")
    return phrase, tail.strip()


def ordinal_reference(text: str) -> int | None:
    """1-based position named in "the second one" (-1 for "the last one"), else None."""
    match = _ORDINAL.search(text)
    return _ORDINALS[match.group(1).lower()] if match else None


_DESCRIBED = re.compile(
    r"\b(?:that|the)\s+(?P<what>[a-z-]+(?:\s+[a-z-]+)?)\s+(?:picture|photo|image|shot|one)\b",
    re.IGNORECASE,
)
_NOT_DESCRIPTIONS = set(_ORDINALS) | {"same", "other", "next", "previous", "in", "of", "this"}


def described_reference(text: str) -> str | None:
    """The description in "that cat picture" / "the red one" ("cat", "red"), else None."""
    match = _DESCRIBED.search(text)
    if not match:
        return None
    what = match.group("what").lower()
    return None if set(what.split()) & _NOT_DESCRIPTIONS else what
