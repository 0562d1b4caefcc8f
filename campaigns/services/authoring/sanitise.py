"""Rich text made safe and clean for email, saying what was taken out.

Pasted rich text carries an editor's leftovers: Google Docs wraps everything in a
``<b style="font-weight:normal" id="docs-internal-guid-...">`` and spells bold as a styled
span; Word adds ``mso-`` styles, ``<o:p>`` elements and conditional comments. ``nh3`` keeps the
elements and attributes an email body needs and drops the rest; the report compares element
and attribute counts before and after and says what went, in sentences staff can act on.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser

import nh3

TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "code", "div", "em", "h1", "h2", "h3", "h4",
        "hr", "i", "img", "li", "ol", "p", "pre", "s", "small", "strong", "sub", "sup",
        "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul",
    }
)  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height", "title"},
    "td": {"colspan", "rowspan", "align", "style"},
    "th": {"colspan", "rowspan", "align", "style"},
    "table": {"width"},
}
# A table cell keeps its alignment (Markdown writes :---: as text-align), nothing else.
STYLE_PROPERTIES = frozenset({"text-align"})
URL_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
# Elements whose text is dropped with them (not only the tags).
CONTENT_DROPPED = frozenset({"script", "style", "title", "head"})

_STYLE_BOLD = re.compile(r"font-weight\s*:\s*(bold|[6-9]00)", re.IGNORECASE)
_STYLE_ITALIC = re.compile(r"font-style\s*:\s*italic", re.IGNORECASE)
_VOID = frozenset({"meta", "link", "input", "col", "wbr", "source", "area", "base", "embed"})
_SPAN_STYLES = (("strong", _STYLE_BOLD), ("em", _STYLE_ITALIC))


@dataclass(frozen=True)
class SanitisedBody:
    html: str
    removed: list[str] = field(default_factory=list)  # "Removed a <script> element", ...


def html_sanitise(html: str) -> SanitisedBody:
    """The HTML cleaned for an email body, and a sentence per kind of thing removed."""
    tidied = _pasted_tidy(html)
    cleaned = nh3.clean(
        tidied,
        tags=set(TAGS),
        clean_content_tags=set(CONTENT_DROPPED),
        attributes={tag: set(names) for tag, names in ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        filter_style_properties=set(STYLE_PROPERTIES),
        link_rel=None,
        strip_comments=True,
    )
    removed = _report(_census(html), _census(cleaned))
    return SanitisedBody(html=cleaned.strip(), removed=removed)


@dataclass
class _Census:
    elements: Counter[str] = field(default_factory=Counter)
    attributes: Counter[tuple[str, str]] = field(default_factory=Counter)
    comments: int = 0


class _Counter(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.census = _Census()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.census.elements[tag] += 1
        for name, _value in attrs:
            self.census.attributes[(tag, name)] += 1

    def handle_comment(self, data: str) -> None:
        self.census.comments += 1

    def unknown_decl(self, data: str) -> None:  # <![if !supportLists]> and <![endif]>
        self.census.comments += 1


def _census(html: str) -> _Census:
    counter = _Counter()
    counter.feed(html)
    counter.close()
    return counter.census


def _report(before: _Census, after: _Census) -> list[str]:
    removed = []
    for tag, count in sorted((before.elements - after.elements).items()):
        article = "an" if tag[0] in "aeiou" else "a"
        what = f"{article} <{tag}> element" if count == 1 else f"{count} <{tag}> elements"
        if tag in CONTENT_DROPPED:
            removed.append(f"Removed {what} with {'its' if count == 1 else 'their'} content")
        elif tag in _VOID:
            removed.append(f"Removed {what}")
        else:
            removed.append(f"Removed {what} ({'its' if count == 1 else 'their'} text is kept)")
    for (tag, name), count in sorted((before.attributes - after.attributes).items()):
        if before.elements[tag] > after.elements[tag] and after.elements[tag] == 0:
            continue  # said with its element
        times = "" if count == 1 else f" ({count}×)"
        removed.append(f"Removed the {name} attribute on <{tag}>{times}")
    if before.comments > after.comments:
        count = before.comments - after.comments
        removed.append("Removed a comment" if count == 1 else f"Removed {count} comments")
    return removed


class _PasteTidier(HTMLParser):
    """Re-emits HTML with Google Docs' wrapper unwrapped and styled bold or italic spans made
    <strong> or <em>, so the meaning survives when the sanitiser drops the styles."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.out: list[str] = []
        self.closers: dict[str, list[str]] = {}  # per tag: what each open one closes with
        self.hidden = False  # inside Word's <![if !supportLists]>: a bullet drawn as text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        style = values.get("style") or ""
        opening, closing = self.get_starttag_text() or "", f"</{tag}>"
        if tag == "b" and (values.get("id") or "").startswith("docs-internal-guid"):
            opening, closing = "", ""
        elif tag == "span":
            inner = [name for name, rule in _SPAN_STYLES if rule.search(style)]
            opening += "".join(f"<{name}>" for name in inner)
            closing = "".join(f"</{name}>" for name in reversed(inner)) + closing
        self.closers.setdefault(tag, []).append(closing)
        self._emit(opening)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._emit(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        stack = self.closers.get(tag)
        self._emit(stack.pop() if stack else f"</{tag}>")

    def _emit(self, text: str) -> None:
        if not self.hidden:
            self.out.append(text)

    def handle_data(self, data: str) -> None:
        self._emit(data)

    def handle_entityref(self, name: str) -> None:
        self._emit(f"&{name};")

    def handle_charref(self, name: str) -> None:
        self._emit(f"&#{name};")

    def handle_comment(self, data: str) -> None:
        self.out.append(f"<!--{data}-->")

    def handle_decl(self, decl: str) -> None:
        self.out.append(f"<!{decl}>")

    def unknown_decl(self, data: str) -> None:
        if data.replace(" ", "").lower().startswith("if!supportlists"):
            self.hidden = True
        elif self.hidden and data.strip().lower() == "endif":
            self.hidden = False
        self.out.append(f"<![{data}]>")

    def handle_pi(self, data: str) -> None:
        self.out.append(f"<?{data}>")


def _pasted_tidy(html: str) -> str:
    tidier = _PasteTidier()
    tidier.feed(html)
    tidier.close()
    return "".join(tidier.out)
