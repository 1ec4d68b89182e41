"""Whether an LLM's reply adds nothing the experts did not decide: a lexical check.

A reply about decisions may rephrase them; it may not add to them ("The cat is a friendly,
fluffy little creature that loves to play" states four things no expert said). The check is
lexical and deliberately strict: every content word of the reply must come from the user's
question, the decided answers (their best guess, more specific and runner-up forms), who
decided them (expert names, confidences), what the experts reported without voting, or a
short list of connective words that any rephrasing needs ("the image shows", "likely",
"confidence"). One extra content word and the reply is refused; the template reply stands in.

Content words are what is left of the lower-cased word tokens once function words are
removed: articles, pronouns, copulas, prepositions and conjunctions of English, French,
Spanish, German, Italian and Portuguese (closed classes: they carry no claim about an
image). Negations and quantifiers are never function words ("It is not a cat" is refused),
except that negations restate a decided "no". Number words count as their digits; a trailing
plural "s" / "es" is ignored.

A reply in another language passes when it keeps the decided answer in the experts' words
(the answers are English labels), either as it is ("Cet animal est un cat") or after a
translation followed by the answer in parentheses ("C'est un chat (cat)"): the words just
before a parenthesised answer, as many as the answer has, are taken as its translation. Limits
of a lexical check: it cannot tell a translation from a different word, nor a synonym from a
new claim (so "kitten" for "cat" is refused); function words of other languages count as
content, so replies in them are refused; Chinese and Japanese characters are each a word,
and Thai, written without spaces, splits into whole clauses: such replies pass only when every
character or clause comes from the question or the answers, that is, almost never.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sensorium.graphs import Decision, normalise_answer
from sensorium.tools import Evidence

_EN = """a an the this that these those it its itself is are was were be been being am
has have had do does did of in on at to for with by from as and or but so than then there
here what which who whom whose where when how why i me my we our us you your he him his she
her they them their one s t d ll re ve m"""
_FR = """le la les l un une des du de d au aux ce c cet cette ces ça cela ceci il elle ils
elles est sont était étaient être a ont et ou à en dans sur avec pour par que qui quel quelle
quels quelles qu je j tu vous nous on se s y voici voilà me m te t son sa ses mon ma mes
votre vos notre nos leur leurs"""
_ES = """el la los las lo un una unos unas de del al a en y o es son está están era que qué
cuál cuáles este esta esto estos estas ese esa eso esos esas se su sus con por para hay mi tu
yo usted"""
_DE = """der die das den dem des ein eine einen einem einer eines ist sind war waren und
oder es er sie ich du wir ihr im auf mit von vom zu zum zur für an am bei dies diese dieser
dieses diesem was wer welche welcher welches hier da"""
_IT = """il lo la i gli le un uno una di del della dello dei degli delle a al alla allo in
nel nella su sul sulla con per da e è sono che questo questa questi queste quello quella ci
c"""
_PT = """o a os as um uma de do da dos das em na nas ao aos e é são que este esta isto
esse essa isso com por para"""
FUNCTION_WORDS = frozenset(" ".join((_EN, _FR, _ES, _DE, _IT, _PT)).split())
"""Closed-class words of a few languages: free in any reply. Negations are not among them."""

_CONNECTIVES = """image images picture photo photograph shows show showing shown depicts
contains appears appear looks look like likely probably possibly seems seem confidence
confident sure percent expert experts found says say said answer according see visible"""
# The same few words in the other five languages: 'image', 'shows', 'found', 'likely',
# 'seems', 'sure', 'confidence', 'percent', 'experts'.
_CONNECTIVES_ELSEWHERE = """montre trouvé probablement semble sûr confiance cent imagen
muestra encontrado encontró probablemente parece seguro confianza ciento expertos bild zeigt
gefunden wahrscheinlich scheint sicher konfidenz prozent experten immagine mostra trovato
probabilmente sembra sicuro fiducia cento esperti imagem encontrou provavelmente certeza
confiança especialistas foto"""
CONNECTIVES = frozenset(_CONNECTIVES.split() + _CONNECTIVES_ELSEWHERE.split())
"""Words a rephrasing of a decision needs ('The image shows...', 'likely', '87% confidence')."""

_NEGATIONS = """no not never none nothing isn aren wasn weren don doesn didn ne n pas non
nicht kein keine nein nunca nada não nao"""
NEGATIONS = frozenset(_NEGATIONS.split())
"""Allowed only to restate a decided 'no' (elsewhere they are content: 'it is not a cat')."""

# Han and kana: written without spaces, so each character is a word of its own (never a
# function word); other scripts split on spaces and punctuation.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_PARENTHESES = re.compile(r"\(([^()]*)\)")


def content_words(text: str) -> list[str]:
    """The lower-cased words of a text that are not function words, number words as digits."""
    words = (normalise_answer(word) or word for word in _WORD.findall(text.lower()))
    return [word for word in words if word not in FUNCTION_WORDS]


def grounding_sources(
    question: str, decisions: Iterable[Decision], evidence: Iterable[Evidence] = ()
) -> list[str]:
    """What a reply about these decisions may draw its words from."""
    sources = [question]
    voters: set[str] = set()
    for decision in decisions:
        forms = [decision.answer, decision.best_guess, decision.more_specific, decision.runner_up]
        sources += [form for form in forms if form]
        for confidence in (
            decision.confidence,
            decision.more_specific_confidence,
            decision.runner_up_confidence,
        ):
            sources.append(f"{confidence:.0%} {confidence:.2f}")
        for vote in decision.votes:
            voters.add(vote.expert)
            sources.append(vote.expert)
    # What informed the turn without voting (a retrieval's hits) is shown in the template too.
    sources += [f"{e.expert} {e.answer}" for e in evidence if e.ok and e.expert not in voters]
    return sources


def ungrounded_words(reply: str, sources: Iterable[str], answers: Iterable[str] = ()) -> list[str]:
    """The content words of `reply` found nowhere in `sources` (empty: the reply is grounded).

    `answers` are the decided answers: a parenthesised one vouches for the words just before
    it, as many as it has, as its translation.
    """
    known = {word for source in sources for word in content_words(source)} | CONNECTIVES
    answer_lengths = {normalise_answer(a): len(content_words(a)) for a in answers if a}
    if "no" in answer_lengths:
        known |= NEGATIONS
    missing: list[str] = []
    start = 0
    for match in _PARENTHESES.finditer(reply):
        before = content_words(reply[start : match.start()])
        answer = normalise_answer(match.group(1))
        if answer in answer_lengths:
            before = _without_gloss(before, answer_lengths[answer], len(answer))
        missing += [w for w in before + content_words(match.group(1)) if not _known(w, known)]
        start = match.end()
    missing += [w for w in content_words(reply[start:]) if not _known(w, known)]
    return list(dict.fromkeys(missing))


def _without_gloss(words: list[str], count: int, chars: int) -> list[str]:
    """`words` less the translation of an answer at their end: its last `count` words (at
    least one), each no longer than a translation of the answer could be. The length bound
    keeps a run of an unspaced script (a whole Thai clause is one word) from passing as one."""
    count = max(count, 1)
    if len(words) < count or any(len(w) > 2 * chars + 8 for w in words[-count:]):
        return words
    return words[:-count]


def _known(word: str, known: set[str]) -> bool:
    """Whether a word, or its singular or plural form, is known."""
    if word in known or f"{word}s" in known or f"{word}es" in known:
        return True
    return (word.endswith("s") and word[:-1] in known) or (
        word.endswith("es") and word[:-2] in known
    )
