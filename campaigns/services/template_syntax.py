"""Broken tag marks in a campaign template, found before Django's parser sees it.

Django reads a ``{{``, ``{%`` or ``{#`` without its closing mark on the same line as plain
text, and so it would send ``Hi {{ recipient.first_name`` or ``{recipient.first_name}`` to
every recipient as written. ``template_syntax_check`` refuses those, naming the line and the
column, while leaving alone what an email legitimately holds:

- CSS in ``<style>`` (and anything in ``<script>``): braces, ``}}`` closing a media query,
  ``100%}``, ``{#id`` are all CSS there, so only ``{{`` and ``{%`` count as tag marks inside;
- prose braces whose inside is not a field path: ``{ not a field }``, ``{0}``, ``{}``;
- what ``{% verbatim %}`` and ``{% comment %}`` blocks hold, which Django never renders.

A single-brace group whose inside is a dotted name (``{recipient.first_name}``,
``{ unsubscribe_url }``, with filters too) is a placeholder typed with one brace.

The check is one left-to-right pass: each mark is looked at once, and the text a single-brace
group holds is matched once, when its ``}`` arrives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

# Every character the pass stops at. Two-character marks come first so ``}}`` is one mark,
# and a style or script element is recognised by its opening and closing tag names.
_MARK = re.compile(r"\{\{|\{%|\{#|\}\}|%\}|#\}|[{}\n]|<(/?)(style|script)\b", re.IGNORECASE)
_CLOSER = {"{{": "}}", "{%": "%}", "{#": "#}"}
_OPENER = {closer: opener for opener, closer in _CLOSER.items()}
# A field path written with one brace: a dotted name, maybe with filters, maybe spaced.
_PLACEHOLDER = re.compile(
    r"[ \t]*(?P<path>[^\W\d]\w*(?:\.\w+)*)"
    r"(?P<filters>(?:[ \t]*\|[ \t]*\w+(?::(?:\"[^\"\n]*\"|'[^'\n]*'|[\w.]+))?)*)[ \t]*"
)
# The blocks whose contents Django does not render: their tag marks are not checked.
_RAW_BLOCK = re.compile(r"(?P<tag>verbatim|comment)\b(?P<rest>.*)", re.DOTALL)
_EXCERPT = 40


class _Where(Enum):
    TEXT = "text"  # between tags
    TAG = "tag"  # after an opening mark, before its closing one


@dataclass(frozen=True)
class SyntaxProblem:
    """A broken tag mark: where it starts (0-based offset) and what to say about it."""

    offset: int
    message: str

    def describe(self, source: str, *, label: str) -> str:
        line = source.count("\n", 0, self.offset) + 1
        column = self.offset - (source.rfind("\n", 0, self.offset) + 1) + 1
        return f"{label}: line {line}, column {column}: {self.message}"


def template_syntax_problem(
    source: str, *, recipient_fields: frozenset[str] = frozenset()
) -> SyntaxProblem | None:
    """The first broken tag mark in ``source``, or None when every mark is whole.

    A single-brace ``{first_name}`` naming one of ``recipient_fields`` is answered with the
    field's full name, ``{{ recipient.first_name }}``.
    """
    return _Scan(source, recipient_fields).run()


class _Scan:
    """One pass over a template; ``run`` returns the first problem found."""

    def __init__(self, source: str, recipient_fields: frozenset[str]) -> None:
        self.source = source
        self.recipient_fields = recipient_fields
        self.where = _Where.TEXT
        self.opened_at = 0  # where the current tag (or single brace) opened
        self.opener = ""
        self.brace_at: int | None = None  # an open single ``{`` in text
        self.raw_element = ""  # "style" or "script" while inside one

    def run(self) -> SyntaxProblem | None:
        position = 0
        while match := _MARK.search(self.source, position):
            position = match.end()
            found = self._tag_mark(match) if self.where is _Where.TAG else self._text_mark(match)
            if isinstance(found, SyntaxProblem):
                return found
            if found is not None:  # a raw block: continue after its end tag
                position = found
        if self.where is _Where.TAG:
            return self._unclosed(len(self.source))
        return None

    # -- between tags -------------------------------------------------------------------------

    def _text_mark(self, match: re.Match[str]) -> SyntaxProblem | int | None:
        mark, start = match.group(), match.start()
        if match.group(2):  # <style>, </style>, <script>, </script>
            closing, element = match.group(1), match.group(2).lower()
            self.raw_element = "" if closing else element
            return None
        if mark == "\n":
            self.brace_at = None  # a placeholder is written on one line
            return None
        if self.raw_element:
            return self._raw_text_mark(mark, start)
        if mark in _CLOSER:
            return self._open(mark, start)
        if mark == "{":
            self.brace_at = start
            return None
        return self._brace_close(mark, start)

    def _raw_text_mark(self, mark: str, start: int) -> SyntaxProblem | None:
        """Inside <style> or <script> only ``{{`` and ``{%`` open a tag; the rest is code."""
        if mark in ("{{", "{%"):
            return self._open(mark, start)
        return None

    def _open(self, mark: str, start: int) -> SyntaxProblem | None:
        self.brace_at = None
        if mark == "{{" and self.source.startswith("{", start + 2):
            end = self.source.find("}}}", start)
            line_end = self._line_end(start)
            inner = self.source[start + 3 : end if 0 <= end < line_end else line_end].strip("{} ")
            return SyntaxProblem(
                start,
                f"“{_cut('{{{' + inner + '}}}')}” has three braces — write “{{{{ {inner} }}}}”.",
            )
        self.where, self.opened_at, self.opener = _Where.TAG, start, mark
        return None

    def _brace_close(self, mark: str, start: int) -> SyntaxProblem | None:
        """A ``}`` or a closing mark in text: the end of a single-brace group, or a stray."""
        opened, self.brace_at = self.brace_at, None
        if opened is not None and mark in ("}", "}}"):
            placeholder = _PLACEHOLDER.fullmatch(self.source, opened + 1, start)
            if placeholder is not None:
                path = placeholder["path"]
                if path.split(".", 1)[0] in self.recipient_fields:
                    path = f"recipient.{path}"
                field = path + re.sub(r"[ \t]+", "", placeholder["filters"])
                written = self.source[opened : start + len(mark)]
                return SyntaxProblem(
                    opened,
                    f"“{_cut(written)}” is not a field — write “{{{{ {field} }}}}”, "
                    "with two braces on each side.",
                )
        if mark == "}":
            return None
        return SyntaxProblem(
            start,
            f"“{mark}” closes nothing — add the “{_OPENER[mark]}” it ends, or remove it.",
        )

    # -- inside a tag -------------------------------------------------------------------------

    def _tag_mark(self, match: re.Match[str]) -> SyntaxProblem | int | None:
        mark, start = match.group(), match.start()
        if mark == "\n":  # Django's tags end on their own line
            return self._unclosed(start)
        if mark in _CLOSER and self.opener != "{#":  # a comment may hold tag marks
            return self._unclosed(start)
        if mark != _CLOSER[self.opener]:
            return None  # a single brace, another tag's closing mark, <style>: part of the tag
        self.where = _Where.TEXT
        if self.opener == "{%":
            return self._skip_raw_block(self.source[self.opened_at + 2 : start], match.end())
        return None

    def _skip_raw_block(self, contents: str, after: int) -> int | None:
        """Where checking resumes after a verbatim or comment block (the end when unclosed:
        Django names an unclosed block itself)."""
        raw = _RAW_BLOCK.fullmatch(contents.strip())
        if raw is None:
            return None
        end = "endverbatim" + raw["rest"] if raw["tag"] == "verbatim" else "endcomment"
        closing = re.compile(r"\{%\s*" + re.escape(end.strip()) + r"\s*%\}").search(
            self.source, after
        )
        return closing.end() if closing else len(self.source)

    def _unclosed(self, stop: int) -> SyntaxProblem:
        start, closer = self.opened_at, _CLOSER[self.opener]
        written = self.source[start : min(stop, self._line_end(start))].rstrip()
        return SyntaxProblem(
            start, f"“{_cut(written)}” is not closed — add “{closer}” on the same line."
        )

    def _line_end(self, start: int) -> int:
        end = self.source.find("\n", start)
        return len(self.source) if end < 0 else end


def _cut(text: str) -> str:
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1].rstrip() + "…"
