"""Answer normalisation, following the official VQA evaluation rules.

Lower-case; strip punctuation (keeping decimal points and digit commas); number words to
digits ("two" -> "2", "none" -> "0"); drop articles; restore contractions ("dont" -> "don't").
"""

from __future__ import annotations

import re

_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "id've": "i'd've", "i'dve": "i'd've", "im": "i'm",
    "ive": "i've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
    "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've",
    "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've",
    "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip
_NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
_ARTICLES = {"a", "an", "the"}
_PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">",
                "<", "@", "`", ",", "?", "!"]  # fmt: skip
# vqaEval.py is Python 2, where a pattern compiled without re.UNICODE matches only ASCII
# digits with \d: hence re.ASCII. "(?!<=" (not "(?<!") is sic.
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)", re.ASCII)
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)", re.ASCII)


def strip_punctuation(text: str) -> str:
    """The official VQA evaluation's punctuation rule (vqaEval.py's processPunctuation)."""
    out = text
    for mark in _PUNCTUATION:
        # A mark touching a space, or any digit comma in the text, is deleted; otherwise it
        # separates words ("black-white" -> "black white").
        if f"{mark} " in text or f" {mark}" in text or _COMMA_STRIP.search(text):
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    # vqaEval.py passes re.UNICODE (32) where re.sub takes its count: at most 32 periods go.
    return _PERIOD_STRIP.sub("", out, count=32)


def normalise_answer(answer: str) -> str:
    """An answer in the official VQA normal form, so equal answers compare equal."""
    return _normal_form(answer, _CONTRACTIONS)


# The official script's own contraction table has "Im", "Ive", "Id've" and "I'dve" in
# capitals, which never match the lower-cased words they are looked up with.
_OFFICIAL_CONTRACTIONS = {
    word: full
    for word, full in _CONTRACTIONS.items()
    if word not in {"im", "ive", "id've", "i'dve"}
}


def official_form(answer: str) -> str:
    """`normalise_answer` to the letter of vqaEval.py (GT-Vision-Lab/VQA a013f00), quirks
    included: the metric's form (evals/metrics.py), pinned against a transcription of the
    reference in tests/test_eval_metrics.py."""
    return _normal_form(answer, _OFFICIAL_CONTRACTIONS)


def _normal_form(answer: str, contractions: dict[str, str]) -> str:
    """Whitespace, punctuation, then lower case, number words to digits, articles dropped,
    contractions restored."""
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    words = []
    for word in strip_punctuation(text).lower().split():
        word = _NUMBERS.get(word, word)
        if word not in _ARTICLES:
            words.append(contractions.get(word, word))
    return " ".join(words)
