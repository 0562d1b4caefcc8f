"""The campaign template engine: what a template may use, and what one render may cost.

Campaign templates use Django template syntax in an engine of their own. Staff write them and
recipient data (imported, so anyone's) fills them, so neither may make a render expensive:

- Only the tags in ALLOWED_TAGS and the filters in ALLOWED_FILTERS exist. No loaders, so no
  include or extends of server files; no load, url, lorem, debug; nothing that pads to a width
  (ljust, center, stringformat). A template using anything else is refused when it compiles,
  naming the field and the tag or filter.
- Filters that size their output take a literal argument within a small bound (_ARGUMENTS).
- Loops nest at most MAX_LOOP_DEPTH deep, blocks MAX_BLOCK_DEPTH deep. At render, one part's
  loops run at most MAX_LOOP_ITERATIONS times in all, and what a loop writes is metered as it
  is written, so an over-long render stops at the limit instead of being built first.
- A rendered part (``part_render``) is at most the ``max_bytes`` its caller gives.

Before any of that, ``template_syntax`` refuses a tag mark left open and a field written with
one brace, both of which Django would send as text.

Every rule is checked once, when a template compiles; a render pays for counting its loops'
passes and one length check per part, nothing per tag or filter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

from django.template import (
    Context,
    Engine,
    Library,
    Template,
    TemplateSyntaxError,
    defaultfilters,
    defaulttags,
    loader_tags,
)
from django.template.base import (
    FilterExpression,
    Node,
    NodeList,
    Parser,
    Token,
    Variable,
    VariableNode,
)
from django.template.defaulttags import ForNode, WithNode
from django.template.smartif import TokenBase

from campaigns.services.template_syntax import template_syntax_problem

RECIPIENT_FIELDS = frozenset({"email", "first_name", "last_name", "full_name", "attributes"})
CAMPAIGN_FIELDS = frozenset({"name"})
LAYOUT_FIELDS = frozenset({"logo_url", "brand_color", "legal_address", "footer_text"})
# What a template may name: each top-level name, with the fields it has (None: not checked).
Names = Mapping[str, frozenset[str] | None]
CAMPAIGN_NAMES: Names = {
    "recipient": RECIPIENT_FIELDS,
    "campaign": CAMPAIGN_FIELDS,
    "unsubscribe_url": None,
    "web_version_url": None,
    "forloop": None,
}
# A layout sees the campaign's names too, and the layout's own: the slot, the preview text
# and its settings. Those three are filled when the send is compiled, the rest per recipient.
LAYOUT_OWN_NAMES: Names = {"content": None, "preheader": None, "layout": LAYOUT_FIELDS}
LAYOUT_NAMES: Names = {**CAMPAIGN_NAMES, **LAYOUT_OWN_NAMES}
TOP_LEVEL_NAMES = frozenset(CAMPAIGN_NAMES)

# What an email needs: conditions, loops over a recipient's attributes, naming a value, a
# fallback ("Hi {% firstof recipient.first_name 'there' %}"), notes for other editors, the year
# in a footer, compact HTML and literal braces. Left out on purpose: autoescape (recipient data
# is always escaped in HTML), cycle, ifchanged, regroup, filter and widthratio (no use in a
# message worth their cost), and everything that reaches outside the template.
ALLOWED_TAGS = frozenset(
    {"if", "for", "with", "firstof", "comment", "now", "spaceless", "verbatim", "templatetag"}
)
# Text shaping whose output is at most a small multiple of its input. `safe` is left out for
# the same reason as autoescape; `add` because nested {% with %}s of it double a value each.
ALLOWED_FILTERS = frozenset(
    {
        "capfirst",
        "date",
        "default",
        "default_if_none",
        "escape",
        "first",
        "floatformat",
        "join",
        "last",
        "length",
        "linebreaks",
        "linebreaksbr",
        "lower",
        "pluralize",
        "slice",
        "time",
        "title",
        "truncatechars",
        "truncatewords",
        "upper",
        "urlencode",
        "yesno",
    }
)
MAX_LOOP_DEPTH = 2
MAX_BLOCK_DEPTH = 20
MAX_LOOP_ITERATIONS = 10_000
# The key of a render's budget in its Context: a space keeps any template name from reaching it.
_BUDGET_KEY = "opsdash budget"
_INVALID_FILTER = re.compile(r"Invalid filter: '(?P<name>\w+)'")


class TemplateProblem(ValueError):
    """A template that cannot be used; the message names the problem for the staff member."""


class _Refused(TemplateSyntaxError):
    """A tag that exists in Django but not here; template_compile adds the field's label."""


def _refused_tag(parser: Parser, token: Token) -> Node:
    raise _Refused(f"the tag '{token.split_contents()[0]}' is not allowed.")


class _Budget:
    """What one render of one part may still spend: loop passes and characters."""

    def __init__(self, *, label: str, max_bytes: int) -> None:
        self.label = label
        self.max_bytes = max_bytes
        self.passes_left = MAX_LOOP_ITERATIONS
        self.written = 0  # characters written inside loops (a character is at least one byte)

    def loop(self, passes: int) -> None:
        self.passes_left -= passes
        if self.passes_left < 0:
            raise TemplateProblem(
                f"{self.label}: the loops run more than {MAX_LOOP_ITERATIONS:,} times."
            )

    def wrote(self, total: int) -> None:
        self.written = total
        if total > self.max_bytes:
            raise too_large(label=self.label, max_bytes=self.max_bytes)


def too_large(*, label: str, max_bytes: int) -> TemplateProblem:
    return TemplateProblem(f"{label}: the rendered text is over the limit of {max_bytes:,} bytes.")


def _budget_of(context: Context) -> _Budget:
    budget = context.get(_BUDGET_KEY)
    if not isinstance(budget, _Budget):  # rendered other than through part_render: refuse
        raise TemplateProblem("A campaign template renders only through part_render.")
    return budget


class _CountedSequence:
    """A loop's sequence, charged to the render's budget before the loop runs."""

    def __init__(self, expression: FilterExpression) -> None:
        self.expression = expression

    def __str__(self) -> str:
        return str(self.expression)

    def resolve(self, context: Context, ignore_failures: bool = False) -> Any:
        values = self.expression.resolve(context, ignore_failures=ignore_failures)
        if values is None:
            return values
        if not hasattr(values, "__len__"):
            values = list(values)
        _budget_of(context).loop(len(values))
        return values


class _Metered(Node):
    """One node of a loop's body: what it writes counts against the part's size at once."""

    child_nodelists = ("nodelist",)

    def __init__(self, node: Node) -> None:
        self.node = node
        self.nodelist = NodeList([node])

    def render(self, context: Context) -> str:
        budget = _budget_of(context)
        before = budget.written
        text = str(self.node.render_annotated(context))
        # The text's own length replaces what nested loops charged while writing it.
        budget.wrote(before + len(text))
        return text


def _bounded_for(parser: Parser, token: Token) -> Node:
    """Django's {% for %}, with its passes counted and its body's output metered."""
    node: ForNode = defaulttags.do_for(parser, token)
    # The stubs type these loosely; do_for always makes a FilterExpression and Nodes.
    node.sequence = _CountedSequence(cast(FilterExpression, node.sequence))  # type: ignore[assignment]
    node.nodelist_loop = NodeList([_Metered(cast(Node, child)) for child in node.nodelist_loop])
    return node


def _join_items(value: Any, arg: str, autoescape: bool = True) -> Any:
    """Django's ``join``, for lists only: text is one item. Django's would put the separator
    between the letters of a text, so each ``|join`` in a chain would multiply its length."""
    if not isinstance(value, list | tuple):
        return value
    return defaultfilters.join(value, arg, autoescape=autoescape)


def _library() -> Library:
    library = Library()
    known_tags = {**defaulttags.register.tags, **loader_tags.register.tags}
    library.tags = {name: _refused_tag for name in known_tags}
    library.tags.update({name: known_tags[name] for name in ALLOWED_TAGS})
    library.tags["for"] = _bounded_for
    library.filters = {name: defaultfilters.register.filters[name] for name in ALLOWED_FILTERS}
    library.filter("join", _join_items, is_safe=True, needs_autoescape=True)
    return library


class _CampaignEngine(Engine):
    """No loaders and one library: the allowed tags and filters, nothing loadable."""

    def get_template_builtins(self, builtins: list[str]) -> list[Library]:
        return [_LIBRARY]


_LIBRARY = _library()
_ENGINE = _CampaignEngine(libraries={}, loaders=[], debug=False)


def template_compile(
    source: str, *, label: str, check_marks: bool = True, names: Names = CAMPAIGN_NAMES
) -> Template:
    """Compiles and checks one template; raises TemplateProblem naming ``label``.

    ``check_marks=False`` leaves out the tag-mark check, for content a send froze at launch:
    it was accepted then, and a rule added since must not stop a send half-way. ``names``: what
    the template may name (a layout's are LAYOUT_NAMES).
    """
    # Django would send a half-written tag as text; refuse it first, with its line and column.
    syntax = (
        template_syntax_problem(source, recipient_fields=RECIPIENT_FIELDS) if check_marks else None
    )
    if syntax is not None:
        raise TemplateProblem(syntax.describe(source, label=label))
    try:
        template = _ENGINE.from_string(source)
    except _Refused as exc:
        raise TemplateProblem(f"{label}: {exc}") from exc
    except TemplateSyntaxError as exc:
        raise TemplateProblem(f"{label}: {_syntax_message(exc)}") from exc
    except RecursionError as exc:
        raise TemplateProblem(f"{label}: the template nests too deeply.") from exc
    _check_nodes(template.nodelist, label=label, scope=_Scope(names=names))
    return template


def _syntax_message(exc: TemplateSyntaxError) -> str:
    match = _INVALID_FILTER.fullmatch(str(exc))
    if match is None:
        return f"the template does not compile: {exc}"
    name = match["name"]
    if name in defaultfilters.register.filters:
        return f"the filter '{name}' is not allowed."
    return f"there is no filter '{name}'."


def part_render(
    template: Template, values: Mapping[str, Any], *, label: str, max_bytes: int, autoescape: bool
) -> str:
    """Renders one part of a message within its budget; raises TemplateProblem beyond it."""
    budget = _Budget(label=label, max_bytes=max_bytes)
    text: str = template.render(Context({**values, _BUDGET_KEY: budget}, autoescape=autoescape))
    # UTF-8 spends at most 4 bytes a character: encode only text that could be over.
    if len(text) * 4 > max_bytes and len(text.encode()) > max_bytes:
        raise too_large(label=label, max_bytes=max_bytes)
    return text


@dataclass(frozen=True)
class _Scope:
    """Where a node sits: the names its enclosing tags define, and how deep it is."""

    names: Names = field(default_factory=lambda: CAMPAIGN_NAMES)
    local_names: frozenset[str] = frozenset()
    loops: int = 0
    blocks: int = 0

    def inside(self, node: Node) -> _Scope:
        names, loops = self.local_names, self.loops
        if isinstance(node, ForNode):
            names, loops = names | frozenset(node.loopvars), loops + 1
        elif isinstance(node, WithNode):
            names = names | frozenset(node.extra_context)
        return _Scope(self.names, local_names=names, loops=loops, blocks=self.blocks + 1)


def _iter_child_nodelists(node: Node) -> Iterator[NodeList]:
    for attr in node.child_nodelists:
        nodelist = getattr(node, attr, None)
        if nodelist:
            yield nodelist
    for _condition, nodelist in getattr(node, "conditions_nodelists", ()):
        yield nodelist


def _check_nodes(nodelist: NodeList, *, label: str, scope: _Scope) -> None:
    for node in nodelist:
        if asvar := getattr(node, "asvar", None):  # {% now "Y" as year %}: a name from here on
            scope = replace(scope, local_names=scope.local_names | {asvar})
        if isinstance(node, _Metered):  # the loop's own wrapper: check what it wraps
            _check_nodes(node.nodelist, label=label, scope=scope)
            continue
        if isinstance(node, VariableNode):
            _check_variable(node, label=label, scope=scope)
        for expression in _expressions(vars(node)):
            _check_filters(expression, label=label)
        inner = scope.inside(node)
        if inner.loops > MAX_LOOP_DEPTH:
            raise TemplateProblem(f"{label}: loops nest at most {MAX_LOOP_DEPTH} deep.")
        if inner.blocks > MAX_BLOCK_DEPTH:
            raise TemplateProblem(f"{label}: tags nest at most {MAX_BLOCK_DEPTH} deep.")
        for child in _iter_child_nodelists(node):
            _check_nodes(child, label=label, scope=inner)


def _expressions(value: object) -> Iterator[FilterExpression]:
    """Every filter expression held by a node's attributes, {% if %} conditions included."""
    if isinstance(value, FilterExpression):
        yield value
    elif isinstance(value, _CountedSequence):
        yield value.expression
    elif isinstance(value, TokenBase):  # an {% if %} operator or operand
        for part in (value.value, value.first, value.second):
            yield from _expressions(part)
    elif isinstance(value, (list, tuple)) and not isinstance(value, NodeList):
        for item in value:
            yield from _expressions(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _expressions(item)


def _check_variable(node: VariableNode, *, label: str, scope: _Scope) -> None:
    var = node.filter_expression.var
    lookups = getattr(var, "lookups", None)
    if not lookups:  # a literal such as {{ "text" }}
        return
    root = lookups[0]
    if root in scope.local_names:
        return
    if root not in scope.names:
        known = ", ".join(_described(name, scope.names[name]) for name in scope.names)
        raise TemplateProblem(f"{label}: unknown field {{{{ {var} }}}}. Use {known}.")
    fields = scope.names[root]
    if fields is not None and len(lookups) > 1 and lookups[1] not in fields:
        raise TemplateProblem(f"{label}: the {root} has no field '{lookups[1]}' ({{{{ {var} }}}}).")


def _described(name: str, fields: frozenset[str] | None) -> str:
    """How the unknown-field message lists a name: recipient.email, ... or unsubscribe_url."""
    if name == "forloop":
        return "a loop's own names"
    if not fields:
        return name
    shown = sorted(f"{name}.{key}" for key in fields)
    return ", ".join(f"{item}.<name>" if item.endswith(".attributes") else item for item in shown)


@dataclass(frozen=True)
class _Bound:
    """A filter argument written in the template: of ``shape``, its numbers within ±limit."""

    limit: int
    shape: re.Pattern[str]
    describe: str
    text: bool = False  # the limit is a length of text, not a number

    def allows(self, lookup: bool, argument: object) -> bool:
        if lookup:  # a Variable: a literal number, or data (so of any size)
            if not isinstance(argument, Variable) or argument.lookups is not None:
                return False
            argument = argument.literal
        value = str(argument)
        if self.text:
            return len(value) <= self.limit
        if not self.shape.fullmatch(value):
            return False
        return all(abs(int(number)) <= self.limit for number in _NUMBER.findall(value))


_NUMBER = re.compile(r"-?[0-9]+")
_ARGUMENTS = {
    "truncatechars": _Bound(1000, re.compile(r"[0-9]+"), "a number up to 1000"),
    "truncatewords": _Bound(200, re.compile(r"[0-9]+"), "a number up to 200"),
    # Decimal places, with Django's "g" (grouping) and "u" (unlocalised) suffixes.
    "floatformat": _Bound(
        20, re.compile(r"-?[0-9]+[gu]{0,2}"), "a number of decimal places from -20 to 20"
    ),
    "slice": _Bound(
        1000, re.compile(r"-?[0-9]*(:-?[0-9]*){0,2}"), "a slice of numbers from -1000 to 1000"
    ),
    # The separator is written once per item, so its length multiplies the item count.
    "join": _Bound(
        20, re.compile(r".*", re.DOTALL), "a separator of at most 20 characters", text=True
    ),
}


def _check_filters(expression: FilterExpression, *, label: str) -> None:
    for func, args in expression.filters:
        name = getattr(func, "_filter_name", func.__name__)
        bound = _ARGUMENTS.get(name)
        if bound is None:
            continue
        if not all(bound.allows(lookup, value) for lookup, value in args):
            raise TemplateProblem(
                f"{label}: the filter '{name}' takes {bound.describe}, written in the template."
            )
