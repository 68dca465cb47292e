"""Text completeness: does the transcript so far read like a finished turn?

Theory of operation
-------------------
:func:`assess_completeness` reads the end of the partial transcript and returns a
:class:`Completeness` verdict with the rule that decided it. The turn detector maps each verdict
to how much silence it waits for before it ends the turn (short when the words look finished,
long when they do not).

The judge knows no finished answers. It knows the closed classes of English, the small sets of
words that build sentences (articles, possessives, prepositions, conjunctions, pronouns,
auxiliaries, fillers), and the places where a sentence cannot stop: after ``the``, after
``with``, after ``and``, after a subject with no verb, after an auxiliary that still needs its
verb. Text that ends anywhere else ends on a content word (a noun, a verb, an adjective, an
adverb, a number), and a reply that ends on a content word is finished, however short and
whatever its words ("no idea", "a little", "my son", "tuesday"): LIKELY. Items with a known
shape (digit groups, spelled codes, dates of birth, e-mail addresses) are judged by that shape.

COMPLETE is kept for what leaves no doubt: the STT's full stop, a reply made only of response
particles ("yes", "no thanks"), an elliptical answer after yes/no ("yes it is"), a number of
exactly the expected length. The agent starts a reply on COMPLETE words even before the caller
pauses, so it must not be given to the first words of a longer sentence.

The rules, in order; the first that applies decides:

1. **Dangling punctuation.** A trailing comma, colon, dash or ellipsis from the STT: INCOMPLETE.
2. **Request for time.** "hold on", "one moment", "just a second", "give me a few minutes",
   "bear with me", a lone "wait", "let me check / find / look / think / see" with at most a
   short object. Said to oneself, bare ("hold on", "one sec", "let me see", "let me check"):
   the caller is thinking or looking and goes on. INCOMPLETE, even after a full stop. Asked of
   the listener ("could you hold on a second", "give me a minute", "bear with me") or naming
   what the caller goes to fetch ("let me find my card"): a finished request that wants its
   "sure, take your time". LIKELY.
3. **Fillers** at the end (``um``, ``uh``, ``you know``, ``I mean``): INCOMPLETE.
4. **Opener only.** The words are openers and acknowledgements and the last one is an opener
   ("well", "so", "okay so", "and also"): the turn has not started. INCOMPLETE.
5. **Identifiers read out.** A trailing run of digits (``94107``, ``five five five``, ``oh``,
   ``double four``) and spelled letters (``A B``, ``B 7 9 K``, ``ZX 90``) is counted against its
   cue word: zip 5/9, phone 7/10/11, card 15/16 (4 after "ending in" or "last"), CVV 3/4, PIN 4,
   SSN 4/9. Fewer: INCOMPLETE; exactly: COMPLETE. Identifiers of no fixed length (account,
   order, reference, ...) are INCOMPLETE below 4 characters, then UNSURE. A short label (room,
   flight, gate, apartment) with fewer than 3 spelled digits is UNSURE; one written number
   ("room 12") is whole. With no cue, 3-9 digits are a phone number in groups (INCOMPLETE),
   7/10/11 a whole one (LIKELY), one written number of 3-4 digits may be its first group
   (UNSURE, but not a year), two or more spelled letters a code (UNSURE). A lone ``one`` or
   ``oh`` away from any cue is a pronoun or an interjection ("a new one"). A label that needs
   its number, alone, after "is" or a place preposition ("room", "order number", "I'm in
   suite"): INCOMPLETE.
6. **E-mail address in progress.** After "e-mail ... is": ending on ``dot``/``at``/
   ``underscore``, or an ``at`` with no domain after it, or ``dot`` with no ``at`` yet:
   INCOMPLETE; a first word only: UNSURE.
7. **Date of birth in progress.** After "birthday", "date of birth", "born": a month with no
   day: INCOMPLETE; a month and day with no year, or a year cut short ("nineteen", "nineteen
   eighty"): UNSURE.
8. **Spoken quantities** ending in a magnitude (``two thousand``) or in a tens word inside a
   compound (``two thousand and twenty``), or a numeral after a determiner that still waits
   for its noun ("my last three"): UNSURE.
9. **Words no sentence ends on**, checked before punctuation: an article or possessive
   (``the``, ``my``), a coordinator (``and``, ``or``, ``but``), a subordinator (``because``,
   ``if``, ``unless``, ``as``), a contracted auxiliary (``it's``, ``I'm``, ``we'll``): INCOMPLETE.
10. **Sentence-final punctuation** (``.``, ``?``, ``!``) from the STT: COMPLETE. The STT
    emulator punctuates only where its script does; the real Soniox punctuates as it goes.
11. **Response particles only** (``yes``, ``no thanks``, ``okay``, ``thank you``, ``uh huh``,
    ``right``, ``exactly``, ``sorry``): COMPLETE.
12. **An open question.** An auxiliary or modal that opens a clause, then a subject pronoun, at
    the very end ("can you", "is it", "what do you", "so are they"): INCOMPLETE. Not when the
    verb came before ("I have it", "it's cold isn't it"); a copula after a wh-word ("where are
    you", "what time is it") or inversion after so/neither ("so do I"): LIKELY.
13. **A subject with no verb.** A subject pronoun (``I``, ``we``, ``they``, ``he``, ``she``), or
    ``you``/``it`` right after a subordinator ("if you"), at the end: INCOMPLETE. Trailing
    adverbs and ``not`` are looked through ("I already", "I think maybe", "it's really", "I'm
    not really"): the word before them decides.
14. **A stranded auxiliary.** After a noun ("the problem is", "my internet has"): INCOMPLETE
    for be/have, UNSURE for do and modals. After a pronoun it may end an elliptical answer:
    COMPLETE after yes/no ("yes it is"), LIKELY under a wh-word ("I don't know what it was"),
    else UNSURE ("I am"). After a wh-word, ``to`` or a contraction ("what is", "to be", "it's
    been"): INCOMPLETE. A modal chain alone ("could be", "will do"): LIKELY.
15. **A stranded function word.** A preposition: INCOMPLETE, but LIKELY when a wh-question
    strands it ("what is it for"), UNSURE under a relative ("the form that I asked for"),
    COMPLETE for elliptical ``to`` after yes/no ("yes I'd love to"). A particle (``in``, ``up``,
    ``off``) counts as a preposition unless a phrasal verb, an object or a copula precedes it
    ("log in", "turn it off", "the power is out"). The hedges "kind of", "sort of" alone:
    LIKELY. ``not`` after an auxiliary: UNSURE ("I'm not"), COMPLETE after yes/no. A degree word
    that grades what follows (``very``, ``extremely``, ``fairly``): INCOMPLETE. A possessive
    noun ("my daughter's"), ``her``/``his``/``another``, a temporal subordinator (``when``,
    ``until``, ``after``) and a wh-word that is not a question by itself: UNSURE. ``so``,
    ``then``, ``that``, ``like``, ``no`` when they lead into more ("it broke so": UNSURE; "if
    it fails then", "I think that", "I'd like", "there's no": INCOMPLETE).
16. **A verb that needs a complement** (``think``, ``want``, ``need``, ``wondering``, ``keeps``,
    ``sounds``) after its subject or auxiliary: INCOMPLETE; after a noun: UNSURE; weaker ones
    (``guess``, ``suppose``, ``tried``): UNSURE. Not after a determiner ("my needs": a noun),
    nor when a wh-word fronted the object ("what do you need").
17. **An infinitive after want/like/need/try** ("I'd like to book"): UNSURE, an object usually
    follows. A real STT puts a full stop after the finished sentence.
18. **Clause shapes** of short texts: a subordinate clause with no main clause yet ("if
    possible", "because the app crashed": INCOMPLETE for if/unless/although, UNSURE for
    because/when/while); a question with its subject and no predicate ("is the warranty":
    UNSURE; "when does the store": INCOMPLETE); a list in progress, bare nouns after a verb
    with no conjunction before the last ("I need milk eggs", "apples, pears"): UNSURE; one word
    after "my name is": UNSURE.
19. Anything else ends on a content word: LIKELY.

Cost: the judge runs on every partial transcript and on every frame of a pause. It reads at
most the last :data:`TAIL_CHARS` characters (its cost does not grow with the turn), tokenises
them once, and then looks at the last few words; the rules that look further back (cue words,
wh-words) scan only that tail, after a substring test. Verdicts are memoised. Measured in
``bench/bench_completeness.py``: 3-8 us a call, 0.05 us for a text judged before.

The judge never sees audio and is pure: the same text always gives the same verdict.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable
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


def _ws(words: str) -> frozenset[str]:
    return frozenset(words.split())


INCOMPLETE: Final = Completeness.INCOMPLETE
UNSURE: Final = Completeness.UNSURE
LIKELY: Final = Completeness.LIKELY
COMPLETE: Final = Completeness.COMPLETE

_WORD_RE: Final = re.compile(r"[a-z0-9]+(?:['\u2019-][a-z0-9]+)*")
_RAW_WORD_RE: Final = re.compile(r"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*")
_DANGLING: Final = (",", ";", ":", "-", "\u2014", "\u2013", "...", "\u2026")
_PUNCTUATION_END: Final = (".", "?", "!")
TAIL_CHARS: Final = 120
"""Only this many characters at the end of the text are read (about 22 words: more than any
rule looks back)."""
SHORT_TEXT_WORDS: Final = 8
"""The clause-shape rules for openings (rule 17) look at texts of at most this many words."""
CACHE_ENTRIES: Final = 4096
"""Texts whose verdict is remembered (a few per call in progress)."""
_CLIP: Final = "\x00"
"""Stands for the words before the tail, so that rules anchored at the start never match."""

# ----------------------------------------------------------------------- closed classes
ARTICLES: Final = _ws("a an the my your our their its every")
"""Determiners that always need a noun after them."""
AMBIGUOUS_DETERMINERS: Final = _ws("his her another")
COORDINATORS: Final = _ws("and or but nor plus")
SUBORDINATORS: Final = _ws("because cause cuz if whether although unless whereas as")
CLAUSE_OPENERS: Final = _ws("because cause cuz if whether although though unless whereas when while")
"""Subordinators that open a clause, never a prepositional phrase ("after lunch" is finished)."""
CONDITIONAL_OPENERS: Final = _ws("if unless although though whereas whether")
TEMPORAL_SUBORDINATORS: Final = _ws("when while since until till once before after")
PREPOSITIONS: Final = _ws(
    "of to for with from about at into onto than per via between among toward towards during "
    "without within upon against regarding including except unlike despite versus"
)
PARTICLES: Final = _ws("in on up out off down over through by around across")
SUBJECT_PRONOUNS: Final = _ws("i we they he she")
SUBJECTS: Final = SUBJECT_PRONOUNS | _ws("you it that this there")
OBJECT_WORDS: Final = _ws("it them him her me us you that this everything something anything all")
BE: Final = _ws("am is are was were be been being")
HAVE: Final = _ws("have has had")
DO: Final = _ws("do does did")
MODALS: Final = _ws("can could will would shall should may might must")
NEGATED_AUXILIARIES: Final = _ws(
    "isn't aren't wasn't weren't don't doesn't didn't haven't hasn't hadn't can't cannot "
    "couldn't won't wouldn't shouldn't mustn't ain't shan't"
)
AUXILIARIES: Final = BE | HAVE | DO | MODALS | NEGATED_AUXILIARIES
COPULAS: Final = BE | _ws("isn't aren't wasn't weren't")
CONTRACTION_STEMS: Final = _ws("it that there here what who where how when why he she this let which")
"""``stem's`` is ``stem is/has`` (an auxiliary) for these; after a noun it may be a possessive."""
WH_WORDS: Final = _ws("what where when why how who whom which whose whatever whenever wherever whoever")
WH_HEADS: Final = _ws("time day much many long often kind one")
"""Words that extend a wh-word into a wh-phrase ("what time", "how much")."""
FILLERS: Final = _ws("um umm uh uhh er erm ah eh hmm mm")
DEGREE_WORDS: Final = _ws("very extremely incredibly fairly")
"""Intensifiers that cannot end a phrase: they need the adjective or adverb they grade."""
FILLER_PAIRS: Final = (("you", "know"), ("i", "mean"))
OPENERS: Final = _ws("well so and but also actually basically anyway anyways like plus or")
RESPONSE_WORDS: Final = _ws(
    "yes yeah yep yup yea ya no nope nah okay ok alright sure thanks please hello hi hey bye "
    "goodbye mhm mm-hmm uh-huh huh right correct exactly absolutely definitely certainly indeed "
    "sorry pardon"
)
"""Response particles: yes/no words, acknowledgements, greetings, thanks (rule 11)."""
RESPONSE_PAIRS: Final = (("thank", "you"), ("all", "right"))
LEADS: Final = RESPONSE_WORDS | OPENERS | FILLERS
"""Words that may come before the body of a turn ("yes so", "um well")."""
ADVERBS: Final = _ws(
    "already also just really still never always actually probably definitely certainly usually "
    "only even maybe perhaps basically honestly literally simply totally completely mostly "
    "sometimes often ever kinda sorta"
)
"""Adverbs that stand before what they modify; rules 13 and 14 look through them."""
PLAIN_ADVERBS: Final = _ws(
    "today tomorrow tonight yesterday now please too again anymore soon later here there "
    "instead either yet ago first though"
)
COMPLEMENT_VERBS: Final = _ws(
    "think wonder wondering hoping want wants wanted wanna need needs needed gonna gotta trying "
    "going supposed able keep keeps kept seem seems seemed sound sounds sounded look looks feel "
    "feels tend tends hope"
)
"""Verbs that cannot end a clause: they need an object, an infinitive or a clause."""
WEAK_COMPLEMENT_VERBS: Final = _ws("guess suppose believe tried mean")
"""Verbs that usually take a complement but also end short answers ("I guess")."""
THAT_HEADS: Final = _ws("think thought believe hope suppose wish so such now given realize realized assume")
"""Words after which ``that`` introduces a clause ("I think that")."""
TO_ELLIPSIS_HEADS: Final = _ws(
    "like liked love loved want wanted wanting need needed needing have has had going got try tried "
    "trying able supposed used ought plan planning hope hoping wish meant"
)
"""Heads of an infinitive that may stand without its verb ("yes I'd love to")."""
SO_HEADS: Final = _ws("think thought hope guess believe say said suppose tell told do did if even not")
TIME_WORDS: Final = _ws(
    "ever long soon shortly right just never at all day night week month year time hour minute "
    "moment days weeks months years hours minutes"
)
"""Words after which ``before``/``after``/``since``/``once`` are adverbs ("ever since")."""
ADDRESSED_TIME_WORDS: Final = _ws("you give")
"""A request for time with one of these is asked of the listener, not said to oneself."""
TIME_UNITS: Final = _ws("second seconds sec secs moment moments minute minutes min mo tick")
TIME_LEADS: Final = LEADS | _ws("just me on wait please oh")
SEARCH_VERBS: Final = _ws("check find look see think get grab pull search ask confirm")
PHRASAL_VERBS: Final = _ws(
    "log sign check come go get set pick turn hang call look find fill give show plug shut break "
    "work figure sort move drop hold cut keep pay put take run end start walk wake mess clean "
    "follow write print switch fix mix line top back bring send lock time cancel opt hand read let "
    "stop pass swing stand sit slow calm catch speak open pull shop carry try sell cheer heat "
    "went came got gone took taken gave given ran broke broken sold held hung sent brought kept "
    "left made sat stood"
)
"""Verbs that end a clause with a particle ("log in", "pick up", "came by")."""

# ------------------------------------------------------------------- numbers and codes
DIGIT_WORDS: Final = _ws("zero oh o one two three four five six seven eight nine")
MAGNITUDES: Final = _ws("hundred thousand million billion point")
TENS: Final = _ws("twenty thirty forty fifty sixty seventy eighty ninety")
TEENS: Final = _ws("ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen")
NUMBER_WORDS: Final = DIGIT_WORDS | TEENS | TENS | MAGNITUDES
ORDINALS: Final = _ws(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
    "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth thirtieth"
)
_ORDINAL_RE: Final = re.compile(r"\d{1,2}(?:st|nd|rd|th)|[a-z]+-(?:first|second|third|[a-z]+th)")
_NOT_CODE_RE: Final = re.compile(r"\d+(?:st|nd|rd|th|am|pm|s|k)")
"""Tokens with digits that are no code: ordinals, times, decades, "5k"."""
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
    **dict.fromkeys(
        "account member membership policy order confirmation reference ticket case invoice customer "
        "id tracking booking reservation claim serial code license plate vin spelled spell spelling "
        "surname".split(),
        (),
    ),
}
"""Cue word -> digit counts that make the number whole; ``()``: an identifier of any length."""
NUMBER_LABELS: Final[dict[str, bool]] = {
    **dict.fromkeys("room flight gate seat extension apartment suite unit terminal platform".split(), True),
    **dict.fromkeys("bus route floor building".split(), True),
    **dict.fromkeys("order account policy ticket reference confirmation".split(), False),
}
"""Nouns that label a number ("room 307"). True: the label may also follow "in/at/on"."""
LABEL_NOUNS: Final = _ws("number code id")
QUANTITY_ADJECTIVES: Final = _ws("last first next other past few")
QUANTIFIERS: Final = _ws("any some all both each no many much more most several enough such this these those")
"""Words between a determiner and a numeral ("my last three")."""
CUE_WINDOW_WORDS: Final = 6
"""How many words before a digit run are searched for its cue."""
PHONE_LENGTHS: Final = (7, 10, 11)
SHORT_LABEL_DIGITS: Final = 3
"""A room, flight or gate number of fewer digits is UNSURE (it may go on)."""
LAST_DIGITS_MARKERS: Final = _ws("ending ends last")
"""Between a cue and its digits, these announce the last four digits only."""
IDENTIFIER_MIN_CHARS: Final = 4
"""An identifier of no fixed length is INCOMPLETE below this many characters, then UNSURE."""
EMAIL_CUES: Final = _ws("email e-mail emails")
EMAIL_OPEN_ENDS: Final = _ws("dot at underscore dash hyphen")
_EMAIL_DOMAIN_RE: Final = re.compile(r"(?:\bdot\s+[A-Za-z]{2,}|\.[A-Za-z]{2,})[.?!]?$")
DATE_CUES: Final = _ws("birthday birth born dob birthdate")
MONTHS: Final = _ws(
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec"
)
_CLOSED_CLASS: Final = (
    ARTICLES | AMBIGUOUS_DETERMINERS | COORDINATORS | SUBORDINATORS | PREPOSITIONS | PARTICLES
    | SUBJECTS | OBJECT_WORDS | AUXILIARIES | LEADS | ADVERBS | PLAIN_ADVERBS | NUMBER_WORDS
    | WH_WORDS | TEMPORAL_SUBORDINATORS | QUANTITY_ADJECTIVES | QUANTIFIERS
)  # fmt: skip


def words_of(text: str) -> list[str]:
    """Lower-case words of ``text`` (apostrophes and hyphens kept inside words)."""
    return _WORD_RE.findall(text.lower().replace("\u2019", "'"))


def _is_phrasal(word: str) -> bool:
    """Whether ``word`` is a form of a verb that takes a particle (logged, signing, picks)."""
    if word in PHRASAL_VERBS:
        return True
    for suffix in ("ing", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 2:
            stem = word[: -len(suffix)]
            if stem[-1] == stem[-2] and stem[-1] not in "lsfz":
                stem = stem[:-1]  # logged -> log, setting -> set
            return stem in PHRASAL_VERBS or stem + "e" in PHRASAL_VERBS
    return False


def _is_contracted(word: str) -> bool:
    """``I'm``, ``we'll``, ``it's``, ``let's``: a subject fused with an auxiliary."""
    head, sep, tail = word.rpartition("'")
    if not sep or not head:
        return False
    return tail in ("m", "re", "ve", "ll", "d") or (tail == "s" and head in CONTRACTION_STEMS)


def _is_wh(word: str) -> bool:
    """A wh-word, also fused with an auxiliary ("what's", "who're")."""
    return word in WH_WORDS or (_is_contracted(word) and word.rpartition("'")[0] in WH_WORDS)


def _strip_adverbs(words: list[str], end: int) -> int:
    """Index just after the last word before ``end`` that is not a pre-verbal adverb."""
    while end > 0 and words[end - 1] in ADVERBS:
        end -= 1
    return end


class _Text:
    """The words at the end of one transcript, with what several rules need."""

    __slots__ = ("_written", "body", "low", "n", "stripped", "tail", "words")

    def __init__(self, stripped: str, tail: str, words: list[str]) -> None:
        self.stripped = stripped
        """The whole text, without surrounding blanks (for punctuation)."""
        self.tail = tail
        """The characters the words come from, as written."""
        self.low = tail.lower()
        """The same, lower-cased (for quick substring tests before a rule scans the words)."""
        self.words = words
        self.n = len(words)
        self._written: list[str] | None = None
        body = 0
        while body < self.n and words[body] in LEADS:
            body += 1
        self.body = body
        """Index of the first word that is not an acknowledgement, opener or filler."""

    @classmethod
    def parse(cls, text: str) -> _Text:
        """Tokenise the end of ``text`` (at most :data:`TAIL_CHARS` characters)."""
        stripped = text.strip().replace("\u2019", "'")
        if len(stripped) <= TAIL_CHARS:
            return cls(stripped, stripped, words_of(stripped))
        tail = stripped[-TAIL_CHARS:]
        tail = tail[tail.find(" ") + 1 :]
        return cls(stripped, tail, [_CLIP, *words_of(tail)])

    def prefix(self, end: int) -> _Text:
        """The same transcript cut after word ``end - 1`` (punctuation dropped)."""
        return _Text("", "", self.words[:end])

    def written(self, index: int) -> str:
        """Word ``index`` as the STT wrote it (case kept; ``""`` if it cannot be matched)."""
        if self._written is None:
            self._written = _RAW_WORD_RE.findall(self.tail)
        k = index - (self.n - len(self._written))  # the clip marker, if any, has no written form
        return self._written[k] if 0 <= k < len(self._written) else ""

    @property
    def opens_with_response(self) -> bool:
        """The reply starts with yes/no or another response particle ("yes I am")."""
        return self.words[0] in RESPONSE_WORDS

    def has_wh_before(self, index: int) -> bool:
        """A wh-word occurs before word ``index``."""
        return any(_is_wh(w) for w in self.words[:index])


_Rule = Callable[[_Text], "Assessment | None"]


# ------------------------------------------------------------------- rules 1-4: pauses


def _dangling(t: _Text) -> Assessment | None:
    if t.stripped.endswith(_DANGLING):
        return Assessment(INCOMPLETE, "dangling-punctuation")
    return None


def _time_request(t: _Text) -> Assessment | None:
    w = t.words
    n = t.n - 1 if t.n > 1 and w[-1] in ("please", "okay", "ok") else t.n
    # asked of the listener: "could you hold on", "give me a minute", "bear with me"
    asked = ADDRESSED_TIME_WORDS.intersection(w[:n])
    verdict = LIKELY if asked else INCOMPLETE
    if n >= 2 and w[n - 1] == "on" and w[n - 2] in ("hold", "hang"):
        return Assessment(verdict, f"time-request:{w[n - 2]} on")
    if n >= 2 and w[n - 1] in TIME_UNITS:
        det = n - 2  # "one", "a", "a few", "a couple of"
        det -= w[det] == "of" and det > 0 and w[det - 1] == "couple"
        det -= w[det] in ("few", "couple") and det > 0 and w[det - 1] == "a"
        if w[det] in ("one", "a", "few", "couple") and (det == 0 or w[det - 1] in TIME_LEADS):
            return Assessment(verdict, f"time-request:{w[n - 2]} {w[n - 1]}")
    if w[n - 1] == "wait" and (n == 1 or w[n - 2] in TIME_LEADS or w[n - 2] == "you"):
        return Assessment(verdict, "time-request:wait")
    if w[n - 3 : n] == ["bear", "with", "me"]:
        return Assessment(LIKELY, "time-request:bear with me")
    return _let_me(w, n) if "let" in t.low else None


def _let_me(w: list[str], n: int) -> Assessment | None:
    """ "let me check", "let's see", "let me find my card": looking something up."""
    for i in range(max(0, n - 7), n - 1):
        if w[i] == "let's":
            j = i + 1
        elif w[i] == "let" and w[i + 1] in ("me", "us"):
            j = i + 2
        else:
            continue
        if j < n and w[j] in ("just", "quickly", "quick", "go"):
            j += 1
        rest = w[j + 1 : n]
        if j < n and w[j] in SEARCH_VERBS and len(rest) <= 3 and not COORDINATORS.intersection(rest):
            # "let me find my card" names the errand (a finished turn); "let me see" thinks aloud
            return Assessment(LIKELY if rest else INCOMPLETE, f"time-request:let me {w[j]}")
    return None


def _filler(t: _Text) -> Assessment | None:
    w = t.words
    if w[-1] in FILLERS:
        return Assessment(INCOMPLETE, f"filler:{w[-1]}")
    if t.n >= 2 and (w[-2], w[-1]) in FILLER_PAIRS:
        return Assessment(INCOMPLETE, f"filler:{w[-2]} {w[-1]}")
    return None


def _opener_only(t: _Text) -> Assessment | None:
    if t.body == t.n and t.words[-1] in OPENERS:
        return Assessment(INCOMPLETE, "opener-only")
    return None


# ------------------------------------------------------------ rules 5-8: shaped items


def _id_chars(word: str) -> int:
    """Characters a token adds to a digit string or a spelled code (0: not part of one)."""
    if word.isdigit():
        return len(word)
    if word in DIGIT_WORDS or (len(word) == 1 and word.isalpha()):
        return 1
    compact = word.replace("-", "")
    if compact.isalnum() and not compact.isalpha() and not _NOT_CODE_RE.fullmatch(compact):
        return len(compact)  # "4111-1111", "ab79k"
    return 0


def _is_letter(t: _Text, i: int) -> bool:
    """Whether ``a``/``i`` at word ``i`` is a spelled letter: a capital ``A`` inside the text,
    or read right after another letter or digit ("B A", "seven I K")."""
    before = t.words[i - 1] if i > 0 else ""
    if before not in ("a", "i", "") and _id_chars(before) > 0:
        return True
    return t.words[i] == "a" and i > 0 and t.written(i) == "A"


def _trailing_run(t: _Text) -> tuple[int, int, int]:
    """(characters, letters, index of the first token) of the digits and letters ending the text."""
    w = t.words
    chars = letters = 0
    right = 0  # characters of the token to the right ("double four": four counts twice)
    i = t.n
    while i > 0:
        word = w[i - 1]
        if word in ("a", "i") and not _is_letter(t, i - 1):
            break
        value = _id_chars(word)
        if word in ("double", "triple") and right == 1:
            value = 1 if word == "double" else 2
        elif (
            value == 0
            and chars
            and len(word) <= 3
            and word not in _CLOSED_CLASS
            and t.written(i - 1).isupper()
        ):
            value = len(word)  # "BA 216", "ZX 90": capitals read as a code
        if value == 0:
            break
        chars += value
        letters += (
            sum(c.isalpha() for c in word)
            if word not in DIGIT_WORDS and word not in ("double", "triple")
            else 0
        )
        right = value
        i -= 1
    return chars, letters, i


def _cue_for(words: list[str], first: int, chars: int) -> str | None:
    """The cue word of the run that starts at ``first``; ``""`` if the run is no number."""
    if chars == 1 and first > 0 and words[first] in DIGIT_WORDS:
        # a lone "one" or "oh" is a pronoun or an interjection ("a new one") unless it follows
        # its cue closely ("my pin is four")
        window = words[max(0, first - 3) : first]
        if not any(x in DIGIT_CUES or x in NUMBER_LABELS or x in ("is", "number") for x in window):
            return ""
    for i in range(first - 1, max(-1, first - 1 - CUE_WINDOW_WORDS), -1):
        word = words[i]
        if word in LABEL_NOUNS and i > 0 and (words[i - 1] in DIGIT_CUES or words[i - 1] in NUMBER_LABELS):
            return words[i - 1]  # "zip code", "order number": the specific word decides
        if word in DIGIT_CUES or word in NUMBER_LABELS:
            return word
    return None


def _identifier(t: _Text) -> Assessment | None:
    chars, letters, first = _trailing_run(t)
    if chars == 0:
        return _number_label(t)
    cue = _cue_for(t.words, first, chars)
    kind = "code" if letters else "digits"
    if cue == "":
        return None
    if cue is None:
        return _bare_run(t, chars, letters, first)
    if cue not in DIGIT_CUES:  # a short label: room, flight, gate
        # one written token ("12", "4B") is the whole number; spelled digits may go on
        spelled = first < t.n - 1 or t.words[first] in DIGIT_WORDS
        verdict = UNSURE if chars < SHORT_LABEL_DIGITS and spelled else LIKELY
        return Assessment(verdict, f"{kind}:{cue} {chars}")
    lengths = DIGIT_CUES[cue]
    if lengths and LAST_DIGITS_MARKERS.intersection(t.words[max(0, first - 2 * CUE_WINDOW_WORDS) : first]):
        lengths = (4,)  # "the card ending in 4421", "last four digits"
    if not lengths:
        verdict = UNSURE if chars >= IDENTIFIER_MIN_CHARS else INCOMPLETE
        return Assessment(verdict, f"{kind}:{cue} {chars}/var")
    if chars in lengths:
        return Assessment(COMPLETE, f"{kind}:{cue} {chars}")
    if chars < max(lengths):
        return Assessment(INCOMPLETE, f"{kind}:{cue} {chars}/{max(lengths)}")
    return Assessment(UNSURE, f"{kind}:{cue} {chars}>{max(lengths)}")


def _bare_run(t: _Text, chars: int, letters: int, first: int) -> Assessment | None:
    """A run with no cue: a phone number read in groups, a spelled code, or just a number."""
    if letters >= 2 or (letters and chars > letters):
        return Assessment(UNSURE, f"code:bare {chars}")
    if letters or chars <= 2:
        return None  # "two", "42", "plan b": an ordinary answer
    if first == t.n - 1 and t.words[first].isdigit() and chars <= 4:
        # one written number: an amount or a year ("150", "2024"), or the first group of a
        # phone number the STT wrote as digits
        return (
            None
            if chars == 4 and t.words[first][:2] in ("19", "20")
            else Assessment(UNSURE, "digits:bare 1 group")
        )
    if chars in PHONE_LENGTHS:
        return Assessment(LIKELY, f"digits:bare {chars}")
    return Assessment(INCOMPLETE if chars < max(PHONE_LENGTHS) else UNSURE, f"digits:bare {chars}")


def _number_label(t: _Text) -> Assessment | None:
    """A label that needs its number ("room", "order number") with nothing after it."""
    w = t.words
    end = t.n - 1
    if w[end] in LABEL_NOUNS and end > 0 and (w[end - 1] in DIGIT_CUES or w[end - 1] in NUMBER_LABELS):
        end -= 1
    elif w[end] not in NUMBER_LABELS:
        return None
    before = w[end - 1] if end > 0 else ""
    after_preposition = NUMBER_LABELS.get(w[end], False) and before in (
        "in",
        "at",
        "on",
        "to",
        "from",
        "into",
    )
    if end <= t.body or before in BE or _is_contracted(before) or after_preposition:
        return Assessment(INCOMPLETE, f"number-cue:{' '.join(w[end:])}")
    return None


def _email(t: _Text) -> Assessment | None:
    if "mail" not in t.low:
        return None
    w = t.words
    cue = next((i for i in range(t.n - 2, max(-1, t.n - 16), -1) if w[i] in EMAIL_CUES), None)
    if cue is None:
        return None
    rest = w[cue + 1 :]
    while rest and rest[0] in ("address", "is", "it's", "was"):
        rest = rest[1:]
    if not rest or len(rest) == t.n - cue - 1:
        return None  # "my email", "my email doesn't work": no address is being read
    if rest[-1] in EMAIL_OPEN_ENDS or t.tail.endswith(("@", "_")):
        return Assessment(INCOMPLETE, f"email:open {rest[-1]}")
    if "at" in rest or "@" in t.tail:
        return None if _EMAIL_DOMAIN_RE.search(t.tail) else Assessment(INCOMPLETE, "email:no-domain")
    if "dot" in rest or "underscore" in rest:
        return Assessment(INCOMPLETE, "email:no-at")
    return Assessment(UNSURE, "email:no-at")


def _is_day(word: str) -> bool:
    return word in ORDINALS or bool(_ORDINAL_RE.fullmatch(word))


def _date(t: _Text) -> Assessment | None:
    if "bir" not in t.low and "born" not in t.low and "dob" not in t.low:
        return None
    w = t.words
    cue = next((i for i in range(t.n - 1, max(-1, t.n - 13), -1) if w[i] in DATE_CUES), None)
    if cue is None:
        return None
    month = next((i for i in range(cue + 1, t.n) if w[i] in MONTHS), None)
    if month is None:
        return None
    after = w[month + 1 :]
    if not after:
        if w[month - 1] == "of" and _is_day(w[month - 2]):
            return Assessment(UNSURE, "date:no-year")  # "the twelfth of june"
        return Assessment(INCOMPLETE, "date:no-day")
    if not all(x in NUMBER_WORDS or x.isdigit() or _is_day(x) for x in after):
        return None
    day = next((k for k, x in enumerate(after[:2]) if _is_day(x)), 0)
    year = after[day + 1 :]
    if not year:
        return Assessment(UNSURE, "date:no-year")
    if (len(year) == 1 and not year[0].isdigit()) or year[-1] in TENS or year[-1] in MAGNITUDES:
        return Assessment(UNSURE, "date:year-open")
    return None


def _quantity(t: _Text) -> Assessment | None:
    w = t.words
    if w[-1] in MAGNITUDES:
        return Assessment(UNSURE, f"quantity:{w[-1]}")
    if w[-1] in TENS and t.n > 1 and (w[-2] in MAGNITUDES or w[-2] == "and"):
        return Assessment(UNSURE, f"quantity:{w[-2]} {w[-1]}")
    if (w[-1] in NUMBER_WORDS or w[-1].isdigit()) and w[-1] != "one" and t.n > 1:
        # a numeral inside a noun phrase waits for its noun: "my last three", "the two"
        k = t.n - 2 if w[-2] not in QUANTITY_ADJECTIVES else t.n - 3
        if k >= 0 and w[k] in ARTICLES:
            return Assessment(UNSURE, f"quantity:{w[k]} {w[-1]}")
    return None


# ------------------------------------------------------- rules 9-11: strong endings


def _never_final(t: _Text) -> Assessment | None:
    last = t.words[-1]
    if last in ARTICLES:
        return Assessment(INCOMPLETE, f"determiner:{last}")
    if last in COORDINATORS or last in SUBORDINATORS:
        return Assessment(INCOMPLETE, f"conjunction:{last}")
    if _is_contracted(last):
        return Assessment(INCOMPLETE, f"contracted:{last}")
    return None


def _punctuation(t: _Text) -> Assessment | None:
    if t.stripped.endswith(_PUNCTUATION_END):
        return Assessment(COMPLETE, "punctuation")
    return None


def _response_only(t: _Text) -> Assessment | None:
    w = t.words
    if w[-1] not in RESPONSE_WORDS and (t.n < 2 or (w[-2], w[-1]) not in RESPONSE_PAIRS):
        return None
    i = 0
    while i < t.n:
        if tuple(w[i : i + 2]) in RESPONSE_PAIRS:
            i += 2
        elif w[i] in RESPONSE_WORDS or w[i] in FILLERS:
            i += 1
        else:
            return None
    return Assessment(COMPLETE, "response")


# ------------------------------------------------------ rules 12-16: the last words


def _opens_clause(t: _Text, k: int) -> bool:
    """Whether word ``k`` begins a clause: nothing but leads, a wh-phrase or a linker before it."""
    if k <= t.body:
        return True
    before = t.words[k - 1]
    if before in WH_WORDS or before in COORDINATORS or before in CLAUSE_OPENERS or before in LEADS:
        return True
    return before in WH_HEADS and k >= 2 and t.words[k - 2] in WH_WORDS


def _open_question(t: _Text) -> Assessment | None:
    w = t.words
    if t.n < 2 or w[-1] not in SUBJECTS or w[-2] not in AUXILIARIES:
        return None
    aux, k = w[-2], t.n - 2
    if k > 0 and (w[k - 1] in ("neither", "nor") or (w[k - 1] == "so" and w[-1] in ("i", "we"))):
        return Assessment(LIKELY, "inversion:so")
    if not _opens_clause(t, k):
        return None  # "I have it", "it's cold isn't it": the verb came before
    if aux in COPULAS and t.has_wh_before(k):
        return Assessment(LIKELY, f"question:wh {aux}")  # "where are you", "what time is it"
    return Assessment(INCOMPLETE, f"question-open:{aux} {w[-1]}")


def _subject_without_verb(t: _Text) -> Assessment | None:
    w = t.words
    end = _strip_adverbs(w, t.n)
    negated = end < t.n and end > 1 and w[end - 1] == "not"
    if negated:
        end -= 1  # "I'm not really": the negation is looked through too, but may end an answer
    if end == 0:
        return None
    word = w[end - 1]
    through = "" if end == t.n else "+adverb"
    before = w[end - 2] if end > 1 else ""
    if word in SUBJECT_PRONOUNS or (word in ("you", "it") and (before in CLAUSE_OPENERS or before == "as")):
        return Assessment(INCOMPLETE, f"subject-only:{word}{through}")  # "I", "if you"
    if not through:
        return None
    if _is_contracted(word) and negated:
        return None if t.opens_with_response else Assessment(UNSURE, f"not:{word} not{through}")
    if _is_contracted(word) or word in COORDINATORS or word in SUBORDINATORS or word in ARTICLES:
        return Assessment(INCOMPLETE, f"stranded:{word}{through}")
    if word in COMPLEMENT_VERBS or word in WEAK_COMPLEMENT_VERBS or word in AUXILIARIES:
        head = t.prefix(end)
        found = _auxiliary_end(head) or _complement_verb(head)
        if found is not None and found.verdict <= UNSURE:
            return Assessment(found.verdict, found.rule + through)
    return None


def _auxiliary_end(t: _Text) -> Assessment | None:
    w = t.words
    last = w[-1]
    if last not in AUXILIARIES:
        return None
    q = t.n - 1
    while q > 0 and (w[q - 1] in AUXILIARIES or w[q - 1] in ADVERBS or w[q - 1] == "not"):
        q -= 1
    subject = w[q - 1] if q > 0 else ""
    if q <= t.body:
        # "is", "can": an opening; "could be", "will do", "might have": an elliptical answer
        verdict = LIKELY if t.n - q >= 2 and w[q] in MODALS else INCOMPLETE
        return Assessment(verdict, f"auxiliary:{' '.join(w[q:])}")
    if subject in SUBJECTS:
        if t.has_wh_before(q - 1):
            return Assessment(LIKELY, "ellipsis:embedded")  # "I know what it is"
        if t.opens_with_response:
            return Assessment(COMPLETE, "ellipsis:answer")  # "yes it is", "no I don't"
        return Assessment(UNSURE, f"ellipsis:{subject} {last}")
    if subject in WH_WORDS or subject == "to" or _is_contracted(subject):
        return Assessment(INCOMPLETE, f"auxiliary:{subject} {last}")
    return Assessment(INCOMPLETE if last in BE or last in HAVE else UNSURE, f"auxiliary:{last}")


def _preposition(t: _Text, last: str, prev: str) -> Assessment:
    w = t.words
    if last == "to" and prev in TO_ELLIPSIS_HEADS and t.opens_with_response:
        return Assessment(COMPLETE, "ellipsis:to")  # "yes I'd love to"
    if last == "of" and prev in ("sort", "kind"):
        k = t.n - 2
        if k <= t.body:
            return Assessment(LIKELY, f"hedge:{prev} of")  # "yeah kind of"
        before = w[k - 1]
        hedge_open = before in ARTICLES or before in WH_WORDS or before in AMBIGUOUS_DETERMINERS
        return Assessment(INCOMPLETE if hedge_open else UNSURE, f"hedge?:{prev} of")
    if last == "about" and prev in ("what", "how"):
        return Assessment(INCOMPLETE, f"preposition:{prev} about")
    if t.body < t.n and _is_wh(w[t.body]):
        # "what is it for", "who am I speaking with"; but "what is the price of" needs its noun
        if t.n < 3 or w[-3] not in ARTICLES:
            return Assessment(LIKELY, f"preposition:stranded {last}")
        return Assessment(UNSURE, f"preposition:stranded? {last}")
    if t.has_wh_before(t.n - 1) or "that" in w[: t.n - 2]:
        return Assessment(UNSURE, f"preposition:stranded? {last}")  # "the form that I asked for"
    return Assessment(INCOMPLETE, f"preposition:{last}")


def _function_word(t: _Text) -> Assessment | None:
    w = t.words
    last = w[-1]
    prev = w[-2] if t.n > 1 else ""
    if last in PREPOSITIONS:
        return _preposition(t, last, prev)
    if last in PARTICLES:
        if _is_phrasal(prev) or prev in OBJECT_WORDS or prev in BE or _is_contracted(prev):
            return None  # "log in", "turn it off", "the power is out", "I'm in"
        return _preposition(t, last, prev)
    if last == "not":
        if not (prev in AUXILIARIES or _is_contracted(prev)):
            return None  # "probably not", "why not"
        if t.opens_with_response:
            return Assessment(COMPLETE, "ellipsis:answer")  # "no it's not"
        return Assessment(UNSURE, f"not:{prev} not")
    if last.endswith("'s"):
        return Assessment(UNSURE, f"possessive:{last}")
    if last in DEGREE_WORDS:
        return Assessment(INCOMPLETE, f"degree:{last}")  # "the technician was very"
    if last in AMBIGUOUS_DETERMINERS:
        if (
            (last == "her" and (prev in PREPOSITIONS or prev in PARTICLES))
            or prev in BE
            or _is_contracted(prev)
        ):
            return None  # "with her", "it's his"
        return Assessment(UNSURE, f"determiner?:{last}")
    if last in TEMPORAL_SUBORDINATORS:
        if t.n - t.body == 1 or prev in ARTICLES or prev in TIME_WORDS:
            return None  # "when?", "a while", "ever since"
        return Assessment(UNSURE, f"conjunction?:{last}")
    if last in WH_WORDS:
        return _wh_end(t, prev)
    return _linker(t, last, prev)


def _wh_end(t: _Text, prev: str) -> Assessment | None:
    if prev in ("or", "so") or all(x in LEADS or x in PREPOSITIONS for x in t.words[: t.n - 1]):
        return None  # "what?", "sorry, why?", "for what", "so what"
    return Assessment(UNSURE, f"wh:{t.words[-1]}")


def _linker(t: _Text, last: str, prev: str) -> Assessment | None:
    """``so``, ``then``, ``that``, ``like``, ``no``: finished or not by the word before them."""
    if last == "so":
        if prev in SO_HEADS or (prev.endswith("s") and prev[:-1] in SO_HEADS):
            return None  # "I think so", "if so"
        return Assessment(INCOMPLETE if prev in COORDINATORS else UNSURE, "conjunction?:so")
    if last == "then":
        if "if" in t.words or prev in COORDINATORS:
            return Assessment(INCOMPLETE, "conjunction:then")
        return None
    if last == "that" and prev in THAT_HEADS:
        return Assessment(INCOMPLETE, "complementizer:that")
    if last == "like":
        if prev.endswith("'d") or prev in BE or prev in COMPLEMENT_VERBS or _is_contracted(prev):
            return Assessment(INCOMPLETE, "stranded:like")  # "I'd like", "it was like"
        if prev in ("would", "something", "anything", "just", "more", "kind", "sort"):
            return Assessment(INCOMPLETE, "stranded:like")
        return None if t.has_wh_before(t.n - 1) else Assessment(UNSURE, "stranded?:like")
    if last == "no" and (prev in AUXILIARIES or _is_contracted(prev) or prev in PREPOSITIONS):
        return Assessment(INCOMPLETE, "determiner:no")
    return None


def _infinitive(t: _Text) -> Assessment | None:
    """ "I'd like to book": a verb after want/like/need + to usually has its object to come."""
    w = t.words
    if t.n >= 3 and w[-2] == "to" and w[-3] in TO_ELLIPSIS_HEADS and w[-1] not in _CLOSED_CLASS:
        return Assessment(UNSURE, f"infinitive:{w[-1]}")
    return None


def _complement_verb(t: _Text) -> Assessment | None:
    w = t.words
    last = w[-1]
    strong = last in COMPLEMENT_VERBS
    if not strong and last not in WEAK_COMPLEMENT_VERBS:
        return None
    if t.has_wh_before(t.n - 1):
        return None  # the object came first: "what do you think", "whatever you need"
    q = _strip_adverbs(w, t.n - 1)
    before = w[q - 1] if q > 0 else ""
    if before in ARTICLES or before in AMBIGUOUS_DETERMINERS or before in ("some", "any", "no", "these"):
        return None  # a noun: "my needs", "a look"
    if not strong:
        return Assessment(UNSURE, f"complement?:{last}")
    after_subject = (
        q <= t.body
        or before in SUBJECTS
        or before in AUXILIARIES
        or before in ("to", "not")
        or _is_contracted(before)
    )
    return Assessment(INCOMPLETE if after_subject else UNSURE, f"complement:{last}")


# ----------------------------------------------------------- rule 17: clause shapes


def _clause_shape(t: _Text) -> Assessment | None:
    if t.n <= SHORT_TEXT_WORDS:
        found = _subordinate_only(t) or _subject_question(t)
        if found is not None:
            return found
    return _list_in_progress(t) or _first_name_only(t)


def _subordinate_only(t: _Text) -> Assessment | None:
    w = t.words
    b = t.body
    if b >= t.n - 1 or w[b] not in CLAUSE_OPENERS:
        return None
    if w[b + 1] in AUXILIARIES or w[b + 1] == "of" or "," in t.stripped:
        return None  # "when is it open": a question; "because of": a phrase; a comma: more came
    # the clause's own subject comes first ("if you", "because my card"); a verbless clause
    # ("if possible") has none, and then the first subject opens the main clause
    own = w[b + 1] in SUBJECTS or w[b + 1] in ARTICLES or _is_contracted(w[b + 1])
    subjects = sum(x in SUBJECTS or _is_contracted(x) for x in w[b + 1 :])
    if subjects >= 1 + own or t.n - b - 1 > 5:
        return None
    return Assessment(INCOMPLETE if w[b] in CONDITIONAL_OPENERS else UNSURE, f"subordinate-only:{w[b]}")


def _subject_question(t: _Text) -> Assessment | None:
    """An auxiliary, then a subject noun phrase (determiner + one word), then nothing."""
    w = t.words
    k = t.body
    wh = k < t.n and w[k] in WH_WORDS
    if wh:
        k += 2 if k + 1 < t.n and w[k + 1] in WH_HEADS else 1
    if k + 3 != t.n or w[k] not in AUXILIARIES or w[k + 1] not in ARTICLES | AMBIGUOUS_DETERMINERS:
        return None
    if w[-1] in _CLOSED_CLASS:
        return None
    if wh:
        return None if w[k] in COPULAS else Assessment(INCOMPLETE, f"question-subject:{w[k]} {w[k + 1]}")
    return Assessment(UNSURE, f"question-subject:{w[k]} {w[k + 1]}")


def _is_bare_noun(word: str) -> bool:
    """Whether ``word`` may be a noun said without a determiner (open class, not a verb form)."""
    if len(word) < 3 or word in _CLOSED_CLASS or word[0].isdigit() or _is_contracted(word):
        return False
    return not word.endswith(("ly", "ing")) and not (word.endswith("ed") and not word.endswith("eed"))


def _list_in_progress(t: _Text) -> Assessment | None:
    w = t.words
    if "," in t.stripped:
        items = [words_of(part) for part in t.stripped.split(",")[-3:]]
        if len(items) < 2 or not items[0] or not all(0 < len(x) <= 2 for x in items[1:]):
            return None
        if items[-1][0] in COORDINATORS:
            return None
        return Assessment(UNSURE, "list:open") if all(_is_bare_noun(x[-1]) for x in items) else None
    run = t.n
    while run > 0 and _is_bare_noun(w[run - 1]):
        run -= 1
    if run == 0 or t.n - run < 2:
        return None
    # "I need milk eggs": a subject, a verb, then two items; "we have milk eggs"
    verb = run - 1 if w[run - 1] not in SUBJECT_PRONOUNS and not _is_contracted(w[run - 1]) else run
    subject = w[verb - 1] if verb > 0 else ""
    if t.n - verb < 3 and w[verb] not in HAVE:
        return None
    if w[verb] in HAVE or subject in SUBJECT_PRONOUNS or _is_contracted(subject):
        return Assessment(UNSURE, "list:open")
    return None


def _first_name_only(t: _Text) -> Assessment | None:
    w = t.words
    if w[-3:-1] == ["name", "is"] or (t.n >= 2 and w[-2] == "name's"):
        return Assessment(UNSURE, "name:first-only")
    return None


_RULES: Final[tuple[_Rule, ...]] = (
    _dangling,
    _time_request,
    _filler,
    _opener_only,
    _identifier,
    _email,
    _date,
    _quantity,
    _never_final,
    _punctuation,
    _response_only,
    _open_question,
    _subject_without_verb,
    _auxiliary_end,
    _function_word,
    _complement_verb,
    _infinitive,
    _clause_shape,
)
"""The rules of the module docstring, in its order; the first that returns a verdict wins."""
_CONTENT_WORD: Final = Assessment(Completeness.LIKELY, "content-word")
_EMPTY: Final = Assessment(Completeness.INCOMPLETE, "empty")


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def assess_completeness(text: str) -> Assessment:
    """Judge whether ``text`` (the user's words so far) reads like a finished turn.

    The judge is pure, so its verdicts are memoised (:data:`CACHE_ENTRIES` texts): the turn
    detector asks again about the same words on every frame of a pause. The judge itself is
    ``assess_completeness.__wrapped__``.

    Args:
        text: final plus non-final transcript of the current turn, as the STT writes it
            (punctuation, if any, is used; ``<end>``/``<fin>`` markers must be stripped).

    Returns:
        The :class:`Assessment`; see the module docstring for the rules and their order.
    """
    parsed = _Text.parse(text)
    if not parsed.n:
        return _EMPTY
    for rule in _RULES:
        found = rule(parsed)
        if found is not None:
            return found
    return _CONTENT_WORD
