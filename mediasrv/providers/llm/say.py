"""Sans-I/O incremental extractor of one top-level JSON string field (the spoken ``"say"`` text).

Why: with structured output the model streams a JSON object in ``delta.content`` fragments; when the
schema puts the spoken field first (``{"say": ..., "vars": ..., "next": ...}``, docs/providers.md 5.3), the
text can go to TTS while the rest of the object is still being generated.

Rules:

- :meth:`SayExtractor.feed` takes the next fragment (split anywhere: inside a key, inside an escape, between
  the two halves of a surrogate pair) and returns the field text that became certain with it, un-escaped.
- Only a key of the *top-level* object matches; the same key inside a nested object or array is ignored,
  as is any string that merely contains ``"say"``.
- Escapes follow RFC 8259 section 7: ``\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX``; a ``\\uD8xx\\uDCxx``
  surrogate pair becomes one code point; a lone surrogate becomes U+FFFD so the text is always encodable.
- The extractor does not validate the JSON; the caller parses the complete object at the end.
"""

from __future__ import annotations

import re
from typing import Final

_STRUCTURAL: Final = re.compile(r'[{}\[\]":,]')
_STRING_SPECIAL: Final = re.compile(r'["\\]')
_SIMPLE_ESCAPES: Final[dict[str, str]] = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}

_OTHER: Final = 0  # a string we skip
_KEY: Final = 1  # a key of the top-level object
_FIELD: Final = 2  # the value we extract


class SayExtractor:
    """Streams the text of the top-level string field ``field`` out of a growing JSON document."""

    def __init__(self, field: str = "say") -> None:
        self.field = field
        self._depth = 0
        self._top_is_object: list[bool] = []
        self._expect_key = False
        self._last_key: str | None = None
        self._role: int | None = None  # None: outside any string
        self._escape = ""  # pending escape text, starting with a backslash
        self._high: int | None = None  # pending high surrogate
        self._key_parts: list[str] = []
        self._text_parts: list[str] = []
        self.done = False
        """True once the field's closing quote has been seen."""

    @property
    def text(self) -> str:
        """All field text extracted so far."""
        return "".join(self._text_parts)

    def feed(self, fragment: str) -> str:
        """Consume the next fragment of the JSON text.

        Args:
            fragment: the next piece of the document, e.g. one ``delta.content``.

        Returns:
            The field text completed by this fragment (may be empty).
        """
        out: list[str] = []
        i, n = 0, len(fragment)
        while i < n and not self.done:
            if self._role is not None:
                i = self._scan_string(fragment, i, out)
                continue
            match = _STRUCTURAL.search(fragment, i)
            if match is None:
                break
            i = match.end()
            self._structural(match.group())
        text = "".join(out)
        if text:
            self._text_parts.append(text)
        return text

    def _structural(self, char: str) -> None:
        if char == '"':
            at_top = self._depth == 1 and self._top_is_object[-1]
            if at_top and self._expect_key:
                self._role = _KEY
                self._key_parts.clear()
            elif at_top and self._last_key == self.field:
                self._role = _FIELD
            else:
                self._role = _OTHER
        elif char in "{[":
            self._depth += 1
            self._top_is_object.append(char == "{")
            self._expect_key = char == "{"
        elif char in "}]":
            if self._depth:
                self._depth -= 1
                self._top_is_object.pop()
            self._expect_key = False
        elif char == ":":
            self._expect_key = False
        elif self._top_is_object and self._top_is_object[-1]:  # ","
            self._expect_key = True
            if self._depth == 1:
                self._last_key = None

    def _scan_string(self, fragment: str, i: int, out: list[str]) -> int:
        n = len(fragment)
        if self._escape:
            return self._continue_escape(fragment, i, out)
        match = _STRING_SPECIAL.search(fragment, i)
        end = n if match is None else match.start()
        if end > i:
            self._emit(fragment[i:end], out)
        if match is None:
            return n
        if match.group() == '"':
            self._close_string(out)
        else:
            self._escape = "\\"
        return match.end()

    def _continue_escape(self, fragment: str, i: int, out: list[str]) -> int:
        want = 6 if self._escape[1:2] == "u" else 2
        if len(self._escape) == 1 and fragment[i] == "u":
            want = 6
        take = min(want - len(self._escape), len(fragment) - i)
        self._escape += fragment[i : i + take]
        if len(self._escape) == want:
            escape, self._escape = self._escape, ""
            if self._role != _OTHER:
                self._emit_escape(escape, out)
        return i + take

    def _emit_escape(self, escape: str, out: list[str]) -> None:
        if escape[1] != "u":
            self._emit(_SIMPLE_ESCAPES.get(escape[1], escape[1]), out)
            return
        try:
            unit = int(escape[2:], 16)
        except ValueError:
            self._emit("\ufffd", out)
            return
        if 0xD800 <= unit <= 0xDBFF:
            self._flush_high(out)
            self._high = unit
        elif 0xDC00 <= unit <= 0xDFFF and self._high is not None:
            code_point = 0x10000 + ((self._high - 0xD800) << 10) + (unit - 0xDC00)
            self._high = None
            self._emit(chr(code_point), out)
        elif 0xDC00 <= unit <= 0xDFFF:
            self._emit("\ufffd", out)
        else:
            self._emit(chr(unit), out)

    def _emit(self, text: str, out: list[str]) -> None:
        if self._high is not None:
            self._flush_high(out)
        if self._role == _FIELD:
            out.append(text)
        elif self._role == _KEY:
            self._key_parts.append(text)

    def _flush_high(self, out: list[str]) -> None:
        if self._high is not None:
            self._high = None
            if self._role == _FIELD:
                out.append("\ufffd")  # a high surrogate not followed by a low one

    def _close_string(self, out: list[str]) -> None:
        self._flush_high(out)
        if self._role == _KEY:
            self._last_key = "".join(self._key_parts)
        elif self._role == _FIELD:
            self.done = True
        self._role = None
