"""KnowledgeBase: chunking by structure, BM25 relevance, thresholds and budgets."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediasrv.agent.kb import MAX_CHUNK_CHARS, KnowledgeBase, chunk_text, stem, tokenize
from mediasrv.errors import ConfigError

KB_DIR = Path(__file__).resolve().parents[2] / "agents" / "kb"


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.from_paths([KB_DIR])


def test_stemming_joins_word_forms() -> None:
    assert stem("pricing") == stem("prices") == stem("priced") == stem("price")
    assert stem("hours") == stem("hour")
    assert stem("billing") == stem("billed") == stem("bill")
    assert tokenize("What are your opening hours?") == ["open", "hour"]


def test_markdown_chunks_follow_headings_and_carry_the_trail() -> None:
    doc = "# Shop\n\nIntro line.\n\n## Returns\n\nReturn within 30 days.\n\n## Delivery\n\nShips in 2 days.\n"
    chunks = chunk_text(doc, "shop.md")
    assert [c.text for c in chunks] == [
        "Shop\nIntro line.",
        "Shop > Returns\nReturn within 30 days.",
        "Shop > Delivery\nShips in 2 days.",
    ]
    assert {c.source for c in chunks} == {"shop.md"}


def test_long_sections_are_split_with_overlap_and_nothing_lost() -> None:
    sentences = [f"Fact number {i} says the widget weighs {i} kilograms." for i in range(60)]
    paragraphs = "\n\n".join(" ".join(sentences[i : i + 3]) for i in range(0, 60, 3))
    chunks = chunk_text("# Widgets\n\n" + paragraphs, "w.md")
    assert len(chunks) > 3
    assert all(len(c.text) <= MAX_CHUNK_CHARS + len("Widgets\n") for c in chunks)
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)
    # consecutive chunks share their boundary sentence
    first_tail = chunks[0].text.split(". ")[-1].rstrip(".")
    assert first_tail in chunks[1].text


def test_pricing_question_gets_the_pricing_chunk_first(kb: KnowledgeBase) -> None:
    found = kb.search("How much does the business plan cost per month?")
    assert found, "a pricing question must find something"
    assert found[0].source == "pricing.md"
    assert "Business plan costs $99" in found[0].text
    assert found == sorted(found, key=lambda c: -c.score)


@pytest.mark.parametrize(
    ("query", "source", "needle"),
    [
        ("are you open on saturday", "opening_hours.md", "Saturday"),
        ("why did my payment fail", "billing_faq.txt", "payment fail"),
        ("are you closed at christmas", "opening_hours.md", "Christmas Day"),
        ("do schools get a discount", "pricing.md", "non-profits and schools"),
    ],
)
def test_questions_find_their_document(kb: KnowledgeBase, query: str, source: str, needle: str) -> None:
    top = kb.search(query)[0]
    assert (top.source, needle in top.text) == (source, True)


@pytest.mark.parametrize("query", ["what is the weather like on mars", "hello there", "", "uh huh yeah okay"])
def test_unrelated_query_returns_nothing(kb: KnowledgeBase, query: str) -> None:
    assert kb.search(query) == []
    assert kb.prompt_block(query) == ""


def test_budgets_cap_count_and_characters(kb: KnowledgeBase) -> None:
    query = "plan price month minutes"
    assert len(kb.search(query, k=1)) == 1
    assert sum(len(c.text) for c in kb.search(query, k=10, max_chars=500)) <= 500
    tiny = kb.search(query, k=3, max_chars=60)
    assert len(tiny) == 1 and 0 < len(tiny[0].text) <= 60


def test_prompt_block_quotes_sources(kb: KnowledgeBase) -> None:
    block = kb.prompt_block("what does the starter plan cost")
    assert "[pricing.md]" in block and "$29 per month" in block


def test_missing_or_unsupported_document_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        KnowledgeBase.from_paths([tmp_path / "nope.md"])
    (tmp_path / "deck.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(ConfigError, match="unsupported document type '.pdf'"):
        KnowledgeBase.from_paths([tmp_path / "deck.pdf"])
