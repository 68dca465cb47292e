"""Cutting a streamed LLM reply into pieces for the TTS, as early as a clause is complete.

The old platform waited for whole sentences before it called TTS. Here the first piece goes
out as soon as it can be spoken naturally: at the first clause or sentence end ("Sure, ")
or, with no punctuation yet, after ``first_max_words`` words (cut between words). Every
millisecond before the first piece adds to the caller's wait, while the TTS keeps prosody
across pieces of one context. Later pieces go at sentence ends, or at clause ends once they
are long enough to be worth a TTS request. Text is never held back at the end of the stream.

Rules:

* Pure and synchronous: ``push(delta)`` returns the pieces that became ready.
* A cut never splits a number ("3.50", "1,200"), an abbreviation ("Dr.", "e.g.") or a
  decimal point; it needs the punctuation to be followed by a space (or the stream end).
* Concatenating every piece returned (plus ``flush()``) gives back the input exactly.
"""

from __future__ import annotations

import re
from typing import Final

SENTENCE_END: Final = frozenset(".?!")
CLAUSE_END: Final = frozenset(",;:\u2014")
ABBREVIATIONS: Final = frozenset(
    {"mr", "mrs", "ms", "dr", "st", "vs", "etc", "e.g", "i.e", "jr", "sr", "no", "approx"}
)
_WORD = re.compile(r"\S+")


class ClauseSplitter:
    """Accumulates LLM text deltas and releases speakable pieces.

    Args:
        first_min_words: words a first *clause* needs before a comma cut (a sentence end
            always cuts).
        first_max_words: with no boundary yet, the first piece is cut after this many words
            (0: never; wait for punctuation).
        later_min_chars: characters a later clause needs before a comma cut.
    """

    def __init__(
        self, *, first_min_words: int = 1, first_max_words: int = 3, later_min_chars: int = 40
    ) -> None:
        self._buf = ""
        self._first = True
        self._first_min_words = first_min_words
        self._first_max_words = first_max_words
        self._later_min_chars = later_min_chars

    def push(self, delta: str) -> list[str]:
        """Add a text delta; return the pieces now ready (possibly none)."""
        self._buf += delta
        out: list[str] = []
        while True:
            cut = self._find_cut()
            if cut <= 0:
                return out
            piece, self._buf = self._buf[:cut], self._buf[cut:]
            out.append(piece)
            self._first = False

    def flush(self) -> str:
        """End of stream: return whatever is left (may be empty)."""
        rest, self._buf = self._buf, ""
        return rest

    def _find_cut(self) -> int:
        buf = self._buf
        n = len(buf)
        for i, ch in enumerate(buf):
            if i + 1 >= n or buf[i + 1] != " ":
                continue  # punctuation must be followed by a space to be a boundary
            if ch in SENTENCE_END:
                if ch == "." and self._is_abbreviation_or_number(i):
                    continue
                return i + 2
            if ch in CLAUSE_END:
                if ch == "," and i > 0 and buf[i - 1].isdigit() and i + 2 < n and buf[i + 2].isdigit():
                    continue
                head = buf[: i + 1]
                if self._first:
                    if len(_WORD.findall(head)) >= self._first_min_words:
                        return i + 2
                elif len(head) >= self._later_min_chars:
                    return i + 2
        if self._first and self._first_max_words:
            words = list(_WORD.finditer(buf))
            # The last word may still be growing: cut only after a word followed by a space.
            if len(words) > self._first_max_words:
                return words[self._first_max_words - 1].end() + 1
        return 0

    def _is_abbreviation_or_number(self, i: int) -> bool:
        buf = self._buf
        j = i
        while j > 0 and not buf[j - 1].isspace():
            j -= 1
        word = buf[j:i].lower().strip("(\"'")
        if word in ABBREVIATIONS:
            return True
        return len(word) == 1 and word.isalpha() and word != "i"  # initials: "J. Smith"


_NORM = re.compile(r"[^a-z0-9' ]+")


def normalise(text: str) -> str:
    """Lower-case, drop punctuation and collapse spaces (for comparing transcripts)."""
    return " ".join(_NORM.sub(" ", text.lower()).split())
