"""Personalisation tags kept out of reach of the HTML tools while a body is processed.

Markdown, the sanitiser and the CSS inliner all parse HTML or text; none knows template tags.
A ``{{ recipient.first_name }}`` inside an ``href`` would be percent-encoded, a ``|`` in a tag
would split a Markdown table, and a sanitiser may drop an attribute it cannot read as a URL.
So every tag is swapped for a placeholder made of letters and digits only (which every tool
passes through unchanged, in text and attributes alike) and put back at the end.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from campaigns.services.template_engine import TemplateProblem

# A whole tag mark on one line: {{ ... }}, {% ... %} or {# ... #} (Django's own rule).
TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}")


@dataclass
class TagShield:
    """Swaps tags for placeholders (``protect``) and back (``restore``), across many texts.

    One shield serves every text that ends up in one message (body, preheader, layout), so a
    single ``restore`` of the assembled HTML puts every tag back.
    """

    prefix: str = "OPSDASHTAG"
    tags: list[str] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)  # which ``protect`` call each tag came from
    _group: int = 0

    @classmethod
    def for_texts(cls, *texts: str) -> TagShield:
        """A shield whose placeholders appear in none of ``texts``."""
        prefix = "OPSDASHTAG"
        while any(prefix in text for text in texts):
            prefix = f"OPSDASHTAG{secrets.token_hex(4).upper()}Z"
        return cls(prefix=prefix)

    def placeholder(self, tag: str) -> str:
        self.tags.append(tag)
        self.groups.append(self._group)
        return f"{self.prefix}{len(self.tags) - 1}X"

    def protect(self, text: str, *, keep: Callable[[str], bool] | None = None) -> str:
        """``text`` with its tags swapped out (but those ``keep`` says to leave); they must
        come back in the order they had."""
        self._group += 1

        def swap(match: re.Match[str]) -> str:
            tag = match.group()
            return tag if keep is not None and keep(tag) else self.placeholder(tag)

        return TAG.sub(swap, text)

    def restore(self, text: str, *, label: str = "Body") -> str:
        """Puts every tag back; refuses a result where the HTML tools moved tags out of order
        (text between table rows, which HTML parsers move before the table)."""
        found: list[int] = []

        def back(match: re.Match[str]) -> str:
            index = int(match.group(1))
            found.append(index)
            return self.tags[index]

        restored = re.sub(re.escape(self.prefix) + r"([0-9]+)X", back, text)
        if (moved := self._moved(found)) is not None:
            raise TemplateProblem(
                f"{label}: the tag “{self.tags[moved]}” sits where HTML allows no text (between "
                "table rows or cells, say), so it would move. Put it inside a cell or a paragraph."
            )
        return restored

    def _moved(self, found: list[int]) -> int | None:
        """The first tag found ahead of one that preceded it in the same text, if any."""
        last: dict[int, int] = {}
        for index in found:
            group = self.groups[index]
            if index < last.get(group, -1):
                return last[group]
            last[group] = index
        return None
