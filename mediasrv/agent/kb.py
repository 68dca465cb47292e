"""Knowledge base: documents chunked and indexed at agent load, searched per turn in microseconds.

Rules:

- **Index at load, never at call start.** :meth:`KnowledgeBase.from_paths` reads, chunks and
  indexes every document; the agent store calls it when it loads (or reloads) an agent. A call
  only ever runs :meth:`KnowledgeBase.search` against the finished index.
- **Lexical, local, no model.** Retrieval is Okapi BM25 over an inverted index held in plain
  dicts (term -> postings). Tokens are lower-cased words, stopwords dropped, lightly stemmed
  (plural, ``-ing``, ``-ed``, ``-ly``, final ``e``), so "pricing", "prices" and "priced" meet.
  Nothing is downloaded, and the per-turn cost is proportional to the postings of the few query
  terms (tens of microseconds for a few hundred chunks; ``bench/bench_kb.py`` checks <= 10 ms).
- **Only relevant text enters the prompt.** A chunk is returned only when its BM25 score reaches
  ``min_score`` *and* ``relative_cutoff`` x the best score; at most ``k`` chunks, and no more
  than ``max_chars`` characters in total (the first chunk is cut at a word if it alone is too
  long). A query that shares no meaningful term with the documents returns nothing, and
  :meth:`KnowledgeBase.prompt_block` is then the empty string.
- **Chunking follows the document's own structure.** Markdown headings open sections; each
  chunk carries its heading trail ("Pricing > Business plan") so that a heading word counts
  for every chunk under it. Paragraphs are packed up to ``max_chunk_chars`` (800); a longer
  paragraph is split at sentence ends; consecutive chunks of one section share their boundary
  sentence (<= ``overlap_chars``) so a fact cut in two is still whole in one chunk.
- The index is read-only once built, so one instance is shared by every call of the agent
  (and by threads) without locks.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import msgspec

from mediasrv.errors import ConfigError

SUFFIXES: Final = frozenset({".md", ".markdown", ".txt", ".text"})
MAX_CHUNK_CHARS: Final = 800
OVERLAP_CHARS: Final = 160
BM25_K1: Final = 1.2
BM25_B: Final = 0.75
BACKGROUND_DOCS: Final = 20
MIN_SCORE: Final = 3.2
RELATIVE_CUTOFF: Final = 0.4

STOPWORDS: Final = frozenset(
    """
    a about above after again against all am an and any are aren as at be because been before being
    below between both but by can cannot could couldn did didn do does doesn doing don down during each
    few for from further get got had hadn has hasn have haven having he her here hers herself him himself
    his how i if in into is isn it its itself just let me more most much my myself no nor not now of off
    on once only or other ought our ours ourselves out over own please same shan she should shouldn so
    some such tell than that the their theirs them themselves then there these they this those through
    to too under until up us very was wasn we were weren what when where which while who whom why will
    with won would wouldn you your yours yourself yourselves hi hello hey thanks thank okay ok yes yeah
    want wanted like know need also really
    """.split()
)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    """One retrievable piece of a document.

    Attributes:
        text: the chunk's text, starting with its heading trail when it has one.
        source: the document it came from (file name).
        score: BM25 score for the query that returned it (0.0 in the index itself).
    """

    text: str
    source: str
    score: float = 0.0


def stem(word: str) -> str:
    """Light suffix stripping; the same function runs on documents and queries.

    Args:
        word: one lower-cased token.

    Returns:
        Its stem, e.g. ``pricing``/``prices``/``priced`` -> ``pric``, ``hours`` -> ``hour``.
    """
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("'s"):
        word = word[:-2]
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ing", "ed", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]  # running -> runn -> run; billing -> bill stays
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def tokenize(text: str) -> list[str]:
    """Index terms of ``text``: lower-cased words, stopwords dropped, stemmed.

    Args:
        text: any text (a document chunk or a caller's utterance).

    Returns:
        The terms in order, with repeats.
    """
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word in STOPWORDS or (len(word) < 2 and not word.isdigit()):
            continue
        out.append(stem(word))
    return out


def _split_long(paragraph: str, limit: int) -> list[str]:
    """Split a paragraph longer than ``limit`` at sentence ends (or words, as a last resort)."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        while len(sentence) > limit:
            cut = sentence.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            pieces.append(sentence[:cut])
            sentence = sentence[cut:].lstrip()
        if sentence:
            pieces.append(sentence)
    return pieces


def _tail(text: str, limit: int) -> str:
    """The last sentence of ``text`` if it fits in ``limit`` characters, else ''."""
    last = _SENTENCE_END.split(text)[-1]
    return last if len(last) <= limit and last != text else ""


def _sections(text: str) -> list[tuple[str, str]]:
    """Split markdown into ``(heading trail, body)`` pairs; plain text is one section."""
    trail: list[str] = []
    sections: list[tuple[str, str]] = []
    body: list[str] = []
    for line in text.splitlines():
        m = _HEADING.match(line)
        if m is None:
            body.append(line)
            continue
        sections.append((" > ".join(trail), "\n".join(body)))
        body = []
        level = len(m.group(1))
        trail = [*trail[: level - 1], m.group(2)]
    sections.append((" > ".join(trail), "\n".join(body)))
    return [(h, b.strip()) for h, b in sections if b.strip() or h]


def chunk_text(
    text: str, source: str, *, max_chars: int = MAX_CHUNK_CHARS, overlap_chars: int = OVERLAP_CHARS
) -> list[Chunk]:
    """Cut one document into chunks by heading, then paragraph, then sentence.

    Args:
        text: the document (markdown or plain text).
        source: the name recorded on every chunk.
        max_chars: upper bound of a chunk's body (its heading trail is added on top).
        overlap_chars: at most this much of a chunk's last sentence opens the next one.

    Returns:
        The chunks in document order; a heading with no body yields no chunk.
    """
    chunks: list[Chunk] = []
    for heading, body in _sections(text):
        if not body:
            continue
        prefix = f"{heading}\n" if heading else ""
        paragraphs: list[str] = []
        for para in _PARAGRAPH_BREAK.split(body):
            para = " ".join(para.split()) if not para.lstrip().startswith(("-", "*", "|")) else para.strip()
            if para:
                paragraphs.extend(_split_long(para, max_chars) if len(para) > max_chars else [para])
        current = ""
        for para in paragraphs:
            if current and len(current) + 1 + len(para) > max_chars:
                chunks.append(Chunk(text=prefix + current, source=source))
                carry = _tail(current, overlap_chars)
                current = f"{carry} {para}" if carry and len(carry) + 1 + len(para) <= max_chars else para
            else:
                current = f"{current}\n{para}" if current else para
        if current:
            chunks.append(Chunk(text=prefix + current, source=source))
    return chunks


def _expand(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files named by ``paths``; a directory stands for its supported files, sorted."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in SUFFIXES and f.is_file()))
        elif p.suffix.lower() not in SUFFIXES:
            raise ConfigError(
                f"knowledge base: {p}: unsupported document type {p.suffix!r} (use .md or .txt)"
            )
        else:
            files.append(p)
    return files


class KnowledgeBase:
    """A BM25 index over the chunks of an agent's documents.

    Build it once (:meth:`from_paths` or :meth:`from_documents`) when the agent loads; then call
    :meth:`prompt_block` (or :meth:`search`) with the caller's utterance on each turn.

    Args:
        chunks: the chunks to index (any order; ties in score keep this order).
        k: default number of chunks :meth:`prompt_block` may return.
        max_chars: default character budget of :meth:`prompt_block`.
        min_score: absolute BM25 score a chunk must reach to count as relevant.
        relative_cutoff: a chunk must also reach this fraction of the best chunk's score.
    """

    __slots__ = ("chunks", "k", "max_chars", "min_score", "relative_cutoff", "_postings", "_idf", "_norm")

    def __init__(
        self,
        chunks: Sequence[Chunk],
        *,
        k: int = 3,
        max_chars: int = 1200,
        min_score: float = MIN_SCORE,
        relative_cutoff: float = RELATIVE_CUTOFF,
    ) -> None:
        self.chunks: tuple[Chunk, ...] = tuple(chunks)
        self.k = k
        self.max_chars = max_chars
        self.min_score = min_score
        self.relative_cutoff = relative_cutoff
        docs = [tokenize(c.text) for c in self.chunks]
        avg_len = (sum(len(d) for d in docs) / len(docs)) if docs else 1.0
        postings: dict[str, list[tuple[int, int]]] = {}
        for i, terms in enumerate(docs):
            counts: dict[str, int] = {}
            for t in terms:
                counts[t] = counts.get(t, 0) + 1
            for t, tf in counts.items():
                postings.setdefault(t, []).append((i, tf))
        n = len(docs)
        # BM25 with the "+1" idf (Lucene's form): never negative, rare terms weigh most. The
        # collection is padded with BACKGROUND_DOCS imaginary chunks that hold none of the terms,
        # so a term's weight (and the absolute min_score) means the same in a one-page KB as in
        # a large one; without it every term of a 1-chunk KB would weigh log(1 + 1/3) = 0.29.
        padded = n + BACKGROUND_DOCS
        self._idf = {t: math.log(1.0 + (padded - len(p) + 0.5) / (len(p) + 0.5)) for t, p in postings.items()}
        # Per-document length normalisation k1 * (1 - b + b * len / avg), precomputed.
        self._norm = [BM25_K1 * (1.0 - BM25_B + BM25_B * len(d) / max(avg_len, 1.0)) for d in docs]
        self._postings = {t: tuple(p) for t, p in postings.items()}

    @classmethod
    def from_documents(
        cls,
        documents: Iterable[tuple[str, str]],
        *,
        k: int = 3,
        max_chars: int = 1200,
        min_score: float = MIN_SCORE,
        relative_cutoff: float = RELATIVE_CUTOFF,
    ) -> KnowledgeBase:
        """Index ``(source, text)`` pairs already in memory.

        Args:
            documents: pairs of a source name and its text.
            k: default chunk count of :meth:`prompt_block`.
            max_chars: default character budget of :meth:`prompt_block`.
            min_score: absolute relevance floor (BM25 score).
            relative_cutoff: relevance floor as a fraction of the best score.

        Returns:
            The built index.
        """
        chunks = [c for source, text in documents for c in chunk_text(text, source)]
        return cls(chunks, k=k, max_chars=max_chars, min_score=min_score, relative_cutoff=relative_cutoff)

    @classmethod
    def from_paths(
        cls,
        paths: Iterable[str | os.PathLike[str]],
        *,
        k: int = 3,
        max_chars: int = 1200,
        min_score: float = MIN_SCORE,
        relative_cutoff: float = RELATIVE_CUTOFF,
    ) -> KnowledgeBase:
        """Read, chunk and index documents (``.md``/``.txt`` files, or directories of them).

        Args:
            paths: files or directories.
            k: default chunk count of :meth:`prompt_block`.
            max_chars: default character budget of :meth:`prompt_block`.
            min_score: absolute relevance floor (BM25 score).
            relative_cutoff: relevance floor as a fraction of the best score.

        Returns:
            The built index.

        Raises:
            ConfigError: a file is missing, unreadable, not UTF-8 or of an unsupported type.
        """
        docs: list[tuple[str, str]] = []
        for f in _expand(paths):
            try:
                docs.append((f.name, f.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
                raise ConfigError(f"knowledge base: cannot read {f}: {reason}") from exc
        return cls.from_documents(
            docs, k=k, max_chars=max_chars, min_score=min_score, relative_cutoff=relative_cutoff
        )

    def __len__(self) -> int:
        return len(self.chunks)

    def scores(self, query: str) -> dict[int, float]:
        """BM25 score of every chunk sharing a term with ``query`` (chunk index -> score).

        Args:
            query: the caller's utterance (or any text).

        Returns:
            Scores of the matching chunks only; a query term counts once.
        """
        acc: dict[int, float] = {}
        norm = self._norm
        for term in set(tokenize(query)):
            postings = self._postings.get(term)
            if postings is None:
                continue
            idf = self._idf[term]
            for i, tf in postings:
                acc[i] = acc.get(i, 0.0) + idf * tf * (BM25_K1 + 1.0) / (tf + norm[i])
        return acc

    def search(self, query: str, k: int = 3, max_chars: int = 1200) -> list[Chunk]:
        """The relevant chunks for ``query``, best first, within the budgets.

        Args:
            query: the caller's utterance.
            k: at most this many chunks.
            max_chars: at most this many characters of chunk text in total.

        Returns:
            Chunks (with their score) that pass both thresholds; empty when nothing is relevant.
        """
        acc = self.scores(query)
        if not acc or k <= 0 or max_chars <= 0:
            return []
        ranked = sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))
        floor = max(self.min_score, self.relative_cutoff * ranked[0][1])
        out: list[Chunk] = []
        used = 0
        for i, score in ranked:
            if score < floor or len(out) >= k:
                break
            text = self.chunks[i].text
            if used + len(text) > max_chars:
                if out:
                    continue  # a smaller, lower-ranked chunk may still fit
                cut = text.rfind(" ", 0, max_chars)
                text = text[: cut if cut > 0 else max_chars]
            out.append(Chunk(text=text, source=self.chunks[i].source, score=round(score, 3)))
            used += len(text)
        return out

    def prompt_block(self, query: str) -> str:
        """Text to append to the system prompt for this turn, or '' when nothing is relevant.

        Args:
            query: the caller's utterance.

        Returns:
            A short block quoting the relevant chunks with their sources.
        """
        found = self.search(query, self.k, self.max_chars)
        if not found:
            return ""
        body = "\n\n".join(f"[{c.source}]\n{c.text}" for c in found)
        return f"Reference information (answer from it when relevant; do not read it out verbatim):\n{body}"
