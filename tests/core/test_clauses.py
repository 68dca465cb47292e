"""ClauseSplitter: first clause early, never split numbers/abbreviations, lossless."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mediasrv.agent.clauses import ClauseSplitter, normalise

REPLY = "Sure, I can help with that. Your balance is $1,250.75 as of Dr. Smith's note, okay? Anything else?"


def feed(text: str, sizes: list[int]) -> list[str]:
    s = ClauseSplitter()
    out: list[str] = []
    i = 0
    k = 0
    while i < len(text):
        n = sizes[k % len(sizes)] if sizes else 1
        out.extend(s.push(text[i : i + n]))
        i += n
        k += 1
    rest = s.flush()
    if rest:
        out.append(rest)
    return out


def test_first_clause_released_before_the_sentence_ends() -> None:
    s = ClauseSplitter(first_min_words=3)
    assert s.push("Sure, I") == []  # "Sure," is one word: too short for a 3-word first clause
    pieces = s.push(" can help with that, and then")
    assert pieces == ["Sure, I can help with that, "]


def test_first_piece_goes_at_the_first_comma_by_default() -> None:
    s = ClauseSplitter()
    assert s.push("Sure, I") == ["Sure, "]


def test_first_piece_is_cut_after_a_few_words_without_punctuation() -> None:
    s = ClauseSplitter(first_max_words=4)
    assert s.push("Let me look into") == []  # four words, but the fourth may still grow
    assert s.push(" tha") == ["Let me look into "]
    assert s.push("t for you right now. Then") == ["that for you right now. "]


def test_numbers_and_abbreviations_are_not_cut() -> None:
    pieces = feed(REPLY, [3])
    assert "".join(pieces) == REPLY
    assert not any(p.endswith("$1,") or p.endswith("Dr. ") for p in pieces)
    assert any(p.endswith("that. ") for p in pieces)


def test_later_clauses_need_some_length() -> None:
    s = ClauseSplitter(later_min_chars=40, first_max_words=0)
    assert s.push("Yes. ") == ["Yes. "]
    assert s.push("a, b, ") == []


@given(st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=8))
def test_lossless_for_any_fragmentation(sizes: list[int]) -> None:
    assert "".join(feed(REPLY, sizes)) == REPLY


def test_normalise() -> None:
    assert normalise("  My account number is, 4 5 6!") == "my account number is 4 5 6"
