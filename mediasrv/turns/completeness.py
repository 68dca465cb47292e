"""Text completeness: does the transcript so far read like a finished turn?

Theory of operation
-------------------
:func:`assess_completeness` looks only at the *end* of the partial transcript and returns a
:class:`Completeness` verdict with the rule that decided it. The turn detector maps each verdict
to how much silence it waits for before it ends the turn (short when the words look finished,
long when they clearly are not). The rules are lexical and language-general for English phone
calls; none is tuned to a particular utterance. They are applied in this order, first match wins:

1. **Dangling punctuation.** A trailing comma, colon, dash or ellipsis from the STT: INCOMPLETE.
2. **Digit groups.** A trailing run of digits (``"94107"``, ``"five five five"``, ``"oh"``) is
   counted and compared with the lengths its cue word expects (zip 5/9, phone 7/10/11, card
   15/16, CVV 3/4, PIN 4, SSN 4/9; "account/member/order/... number" has no fixed length). Fewer
   digits than the longest expected length: INCOMPLETE; an expected length: COMPLETE; a
   variable-length identifier: UNSURE once it has 4+ digits. Without a cue, a bare run of 3-9
   digits is a phone number being read out in groups: INCOMPLETE.
3. **Spoken quantities ending in a magnitude** (``"two thousand"``, ``"three hundred"``,
   ``"twenty point"``) or in a tens word inside a compound (``"two thousand and twenty"``):
   UNSURE, the number often goes on.
4. **Fillers** (``um``, ``uh``, ``er``, a lone ``well``/``so``, ``you know``, ``I mean``): INCOMPLETE.
5. **Sentence-final punctuation** (``.``, ``?``, ``!``) from the STT: COMPLETE.
6. **Short-answer lexicon** (the whole text is ``yes``, ``no thanks``, ``that's right``, ...): COMPLETE.
7. **A stranded function word** at the end: article, possessive, preposition, conjunction,
   subject pronoun, copula, contracted auxiliary (``it's``, ``I'm``), ``to``, ``not``, or a
   verb that needs a complement (``think``, ``wondering``, ``want``): INCOMPLETE. Words that are
   also particles (``in``, ``up``, ``off``) count only when the word before them is not a
   phrasal verb (``log in`` is finished, ``live in`` is not). Weaker cases (auxiliaries that end
   elliptical answers, ``that``, ``when``): UNSURE.
8. **"my name is X"** with a single word after it: UNSURE (a surname usually follows); an
   infinitive after want/like/need/try (``"I'd like to book"``): UNSURE (an object usually follows).
9. Anything else ends on a content word: LIKELY.

The scorer never sees audio and is pure: the same text always gives the same verdict.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final


class Completeness(enum.IntEnum):
    """How finished the transcript looks, from least to most."""

    INCOMPLETE = 0
    UNSURE = 1
    LIKELY = 2
    COMPLETE = 3


@dataclass(frozen=True, slots=True)
class Assessment:
    """A verdict and the rule that produced it (for logs and tests).

    Attributes:
        verdict: the completeness class.
        rule: short name of the deciding rule, e.g. ``"digits:zip 3/5"``.
    """

    verdict: Completeness
    rule: str


_WORD_RE: Final = re.compile(r"[a-z0-9]+(?:['\u2019-][a-z0-9]+)*")
_DANGLING: Final = (",", ";", ":", "-", "\u2014", "\u2013", "...", "\u2026")

DIGIT_WORDS: Final = frozenset(
    {"zero", "oh", "o", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
)
MAGNITUDES: Final = frozenset({"hundred", "thousand", "million", "billion", "point"})
TENS: Final = frozenset({"twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"})
INFINITIVE_HEADS: Final = frozenset(
    {"like", "want", "need", "have", "has", "try", "go", "able", "hop", "hope", "love", "plan", "mean"}
)

# cue word(s) -> digit counts that make the number complete; () = variable length identifier
DIGIT_CUES: Final[dict[str, tuple[int, ...]]] = {
    "zip": (5, 9),
    "postal": (5, 9),
    "zipcode": (5, 9),
    "phone": (7, 10, 11),
    "cell": (7, 10, 11),
    "mobile": (7, 10, 11),
    "telephone": (7, 10, 11),
    "callback": (7, 10, 11),
    "card": (15, 16),
    "credit": (15, 16),
    "debit": (15, 16),
    "cvv": (3, 4),
    "cvc": (3, 4),
    "security": (3, 4),
    "pin": (4,),
    "ssn": (4, 9),
    "social": (4, 9),
    "routing": (9,),
    "extension": (),
    "account": (),
    "member": (),
    "membership": (),
    "policy": (),
    "order": (),
    "confirmation": (),
    "reference": (),
    "ticket": (),
    "case": (),
    "invoice": (),
    "customer": (),
    "id": (),
    "tracking": (),
}
CUE_WINDOW_WORDS: Final = 6
"""How many words before a digit run are searched for its cue."""
PHONE_LENGTHS: Final = (7, 10, 11)

FILLERS: Final = frozenset({"um", "umm", "uh", "uhh", "er", "erm", "ah", "eh", "hmm", "mm"})
FILLER_PHRASES: Final = (("you", "know"), ("i", "mean"), ("let", "me", "see"), ("let's", "see"))
OPENERS: Final = frozenset(
    {"well", "so", "and", "but", "okay", "ok", "yeah", "like", "actually", "basically"}
)
"""Discourse openers: a text made only of these (``"well"``, ``"okay so"``) has not started yet."""

SHORT_ANSWERS: Final = frozenset(
    {
        "yes",
        "yeah",
        "yep",
        "yup",
        "yes please",
        "yes it is",
        "yes i am",
        "yes i do",
        "no",
        "nope",
        "nah",
        "no thanks",
        "no thank you",
        "not really",
        "no it's not",
        "okay",
        "ok",
        "sure",
        "right",
        "correct",
        "that's right",
        "that's correct",
        "exactly",
        "absolutely",
        "definitely",
        "of course",
        "hello",
        "hi",
        "hey",
        "thanks",
        "thank you",
        "thank you very much",
        "uh huh",
        "uh-huh",
        "mm-hmm",
        "mhm",
        "mm hmm",
        "great",
        "perfect",
        "fine",
        "good",
        "alright",
        "all right",
        "sounds good",
        "that works",
        "got it",
        "bye",
        "goodbye",
        "i don't know",
        "i'm not sure",
        "maybe",
        "that's it",
        "that's all",
        "nothing else",
        "please",
        "no problem",
    }
)
ACKS: Final = frozenset(
    {"yes", "yeah", "yep", "no", "okay", "ok", "sure", "right", "thanks", "please", "alright"}
)

CONTRACTED_AUX: Final = frozenset(
    {
        "it's",
        "that's",
        "there's",
        "here's",
        "what's",
        "he's",
        "she's",
        "i'm",
        "you're",
        "we're",
        "they're",
        "i've",
        "you've",
        "we've",
        "they've",
        "i'll",
        "you'll",
        "we'll",
        "they'll",
        "i'd",
        "you'd",
        "we'd",
        "they'd",
        "let's",
        "who's",
        "where's",
        "how's",
    }
)
STRANDED: Final = frozenset(
    {
        # articles, determiners, possessives
        "a",
        "an",
        "the",
        "my",
        "your",
        "our",
        "their",
        "its",
        "his",
        "every",
        "each",
        "some",
        "any",
        "no_det",
        # prepositions that are never particles
        "of",
        "to",
        "for",
        "with",
        "from",
        "about",
        "at",
        "by",
        "into",
        "onto",
        "than",
        "per",
        "via",
        "between",
        "among",
        "toward",
        "towards",
        "during",
        "without",
        "within",
        "upon",
        "like_prep",
        # conjunctions
        "and",
        "or",
        "but",
        "nor",
        "because",
        "cause",
        "if",
        "whether",
        "although",
        "though",
        "unless",
        "while",
        "whereas",
        # subject pronouns
        "i",
        "we",
        "they",
        "he",
        "she",
        # copulas / auxiliaries that cannot end a clause
        "is",
        "are",
        "was",
        "were",
        "am",
        "be",
        "been",
        "being",
        "isn't_",
        "not",
        # verbs that need a complement
        "think",
        "guess",
        "mean",
        "wondering",
        "wonder",
        "believe",
        "want",
        "wanted",
        "wanna",
        "need",
        "needed",
        "hoping",
        "trying",
        "tried",
        "gonna",
        "gotta",
        "supposed",
        "able",
        "going",
        "called",
        "named",
    }
)
WEAK_ENDINGS: Final = frozenset(
    {
        "do",
        "does",
        "did",
        "don't",
        "doesn't",
        "didn't",
        "can",
        "can't",
        "could",
        "couldn't",
        "will",
        "won't",
        "would",
        "wouldn't",
        "should",
        "shouldn't",
        "haven't",
        "hasn't",
        "may",
        "might",
        "must",
        "that",
        "which",
        "who",
        "whom",
        "whose",
        "where",
        "when",
        "what",
        "how",
        "why",
        "then",
        "since",
        "until",
        "so",
        "like",
        "also",
        "just",
        "really",
        "very",
        "this",
        "these",
        "those",
        "calling",
        "looking",
        "get",
        "got",
        "make",
        "give",
        "tell",
        "said",
        "her",
        "number",
        "code",
        "as",
        "before",
        "after",
    }
)
PARTICLES: Final = frozenset(
    {"in", "on", "up", "out", "off", "down", "over", "back", "around", "through", "away", "along", "by_"}
)
PHRASAL_VERBS: Final = frozenset(
    {
        "log",
        "sign",
        "check",
        "come",
        "go",
        "get",
        "set",
        "pick",
        "turn",
        "hang",
        "call",
        "look",
        "find",
        "fill",
        "give",
        "show",
        "plug",
        "shut",
        "break",
        "work",
        "figure",
        "sort",
        "move",
        "drop",
        "hold",
        "cut",
        "keep",
        "pay",
        "put",
        "take",
        "run",
        "end",
        "start",
        "walk",
        "wake",
        "mess",
        "clean",
        "follow",
        "write",
        "print",
        "switch",
        "fix",
        "mix",
        "line",
        "top",
        "back",
        "bring",
        "send",
        "lock",
        "time",
        "cancel",
        "opt",
        "hand",
        "read",
        "let",
        "it",
        "them",
        "him",
        "her",
        "me",
        "us",
        "that",
        "this",
        "everything",
        "something",
        "all",
    }
)


SO_VERBS: Final = frozenset(
    {"think", "hope", "guess", "believe", "say", "said", "do", "did", "suppose", "tell"}
)


def words_of(text: str) -> list[str]:
    """Lower-case words of ``text`` (apostrophes and hyphens kept inside words)."""
    return _WORD_RE.findall(text.lower().replace("\u2019", "'"))


def _lemma(word: str) -> str:
    """Very rough English stemmer for phrasal-verb lookup (logged/logging/logs -> log)."""
    for suffix in ("ging", "ing", "ged", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            stem = word[: -len(suffix)]
            if suffix in ("ging", "ged"):
                stem += "g"
            return stem
    return word


def _digit_count(token: str) -> int:
    """Digits a token contributes to a digit string (0 if it is not part of one)."""
    if token.isdigit():
        return len(token)
    if token in DIGIT_WORDS:
        return 1
    compact = token.replace("-", "")
    return len(compact) if compact.isdigit() else 0


def _trailing_digits(words: list[str]) -> tuple[int, int]:
    """Return (digit count, index of the first word) of the digit run ending the text."""
    count = 0
    index = len(words)
    while index > 0:
        value = _digit_count(words[index - 1])
        if value == 0 and words[index - 1] not in ("double", "triple"):
            break
        count += value
        index -= 1
    return count, index


def _assess_digits(words: list[str]) -> Assessment | None:
    count, first = _trailing_digits(words)
    if count == 0:
        return None
    for word in reversed(words[max(0, first - CUE_WINDOW_WORDS) : first]):
        lengths = DIGIT_CUES.get(word)
        if lengths is None:
            continue
        if not lengths:  # variable-length identifier
            verdict = Completeness.UNSURE if count >= 4 else Completeness.INCOMPLETE
            return Assessment(verdict, f"digits:{word} {count}/var")
        if count in lengths:
            return Assessment(Completeness.COMPLETE, f"digits:{word} {count}")
        if count < max(lengths):
            return Assessment(Completeness.INCOMPLETE, f"digits:{word} {count}/{max(lengths)}")
        return Assessment(Completeness.UNSURE, f"digits:{word} {count}>{max(lengths)}")
    if count <= 2:
        return None  # "two", "42": an ordinary answer, judged like any other word
    if count in PHONE_LENGTHS:
        return Assessment(Completeness.LIKELY, f"digits:bare {count}")
    if count < max(PHONE_LENGTHS):
        return Assessment(Completeness.INCOMPLETE, f"digits:bare {count}")
    return Assessment(Completeness.UNSURE, f"digits:bare {count}")


def _assess_last_word(words: list[str]) -> Assessment | None:
    last = words[-1]
    before = words[-2] if len(words) > 1 else ""
    if last in CONTRACTED_AUX:
        return Assessment(Completeness.INCOMPLETE, f"stranded:{last}")
    if last in PARTICLES:
        if _lemma(before) in PHRASAL_VERBS:
            return None
        return Assessment(Completeness.INCOMPLETE, f"stranded:{last}")
    if last in STRANDED:
        return Assessment(Completeness.INCOMPLETE, f"stranded:{last}")
    if last == "like" and before in ("i'd", "would", "we'd", "something", "just"):
        return Assessment(Completeness.INCOMPLETE, "stranded:like")
    if last == "so" and _lemma(before) in SO_VERBS:
        return None  # "I think so", "I hope so"
    if before == "to" and len(words) > 2 and _lemma(words[-3]) in INFINITIVE_HEADS:
        return Assessment(Completeness.UNSURE, f"infinitive:{last}")  # "I'd like to book"
    if last in WEAK_ENDINGS:
        return Assessment(Completeness.UNSURE, f"weak:{last}")
    return None


def assess_completeness(text: str) -> Assessment:
    """Judge whether ``text`` (the user's words so far) reads like a finished turn.

    Args:
        text: final plus non-final transcript of the current turn, as the STT writes it
            (punctuation, if any, is used; ``<end>``/``<fin>`` markers must be stripped).

    Returns:
        The :class:`Assessment`; see the module docstring for the rules and their order.
    """
    stripped = text.strip()
    words = words_of(stripped)
    if not words:
        return Assessment(Completeness.INCOMPLETE, "empty")
    if stripped.endswith(_DANGLING):
        return Assessment(Completeness.INCOMPLETE, "dangling-punctuation")
    digits = _assess_digits(words)
    if digits is not None:
        return digits
    if words[-1] in MAGNITUDES:
        return Assessment(Completeness.UNSURE, f"magnitude:{words[-1]}")
    if words[-1] in TENS and len(words) > 1 and words[-2] in MAGNITUDES | {"and"}:
        return Assessment(Completeness.UNSURE, f"compound-number:{words[-1]}")
    if words[-1] in FILLERS or any(tuple(words[-len(p) :]) == p for p in FILLER_PHRASES):
        return Assessment(Completeness.INCOMPLETE, f"filler:{words[-1]}")
    if all(w in OPENERS for w in words) and " ".join(words) not in SHORT_ANSWERS:
        return Assessment(Completeness.INCOMPLETE, "opener-only")
    if stripped.endswith((".", "?", "!")):
        return Assessment(Completeness.COMPLETE, "punctuation")
    if " ".join(words) in SHORT_ANSWERS or (len(words) <= 3 and all(w in ACKS for w in words)):
        return Assessment(Completeness.COMPLETE, "short-answer")
    last = _assess_last_word(words)
    if last is not None:
        return last
    if words[-3:-1] == ["name", "is"] or (len(words) >= 2 and words[-2] == "name's"):
        return Assessment(Completeness.UNSURE, "name:first-only")
    return Assessment(Completeness.LIKELY, "content-word")
