"""Chat templates rendered by joining text, where that is the template's own text exactly.

Token counting renders every conversation with the tokenizer's chat template, and Jinja costs
about a third of the counting. Many templates (ChatML among them: SmolLM2, the default base
model) print each message's `content` as it is and decide nothing else by it: then a
conversation's text is its contents with fixed text around them, and that text depends only
on the conversation's shape, the roles in order. `SegmentRenderer` proves the first part on
the template's syntax tree (every use of `content` is printed as it is, or at most tested for
being there; nothing calls `strftime_now`), learns the fixed text of each shape by rendering
marker contents through the template once, and then renders by joining.

Only what was proved and probed is joined: a system turn or not, then 1 to `MAX_EXCHANGES`
user/assistant exchanges, messages with nothing but a non-empty text `content` and a `role`,
no tools. Anything else returns None, and the caller renders it with the template.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

MAX_EXCHANGES = 8
CONTENT = "content"
# Marker contents: text no template prints of its own.
MARKER = "\x1edroptune-content-{}\x1f"


def _references_content(node: Any) -> bool:
    from jinja2 import nodes

    if isinstance(node, nodes.Getitem):
        return isinstance(node.arg, nodes.Const) and node.arg.value == CONTENT
    return isinstance(node, nodes.Getattr) and node.attr == CONTENT


def _walk(node: Any, parents: tuple[Any, ...] = ()) -> Iterator[tuple[Any, tuple[Any, ...]]]:
    yield node, parents
    for child in node.iter_child_nodes():
        yield from _walk(child, (*parents, node))


def _printed_or_tested(parents: tuple[Any, ...], node: Any) -> bool:
    """Whether a use of `content` is printed as it is (inside `{{ }}`, at most joined with
    other text by + or ~), or only tested for being there (`if content`, `content is string`)."""
    from jinja2 import nodes

    child = node
    for parent in reversed(parents):
        if isinstance(parent, nodes.Output):
            return True
        if isinstance(parent, nodes.Add | nodes.Concat):
            child = parent
            continue
        if isinstance(parent, nodes.Test) and parent.name in ("string", "defined", "none"):
            return parent.node is child
        if isinstance(parent, nodes.If | nodes.CondExpr) and parent.test is child:
            return True
        if isinstance(parent, nodes.Not):
            child = parent
            continue
        return False
    return False


def content_is_only_printed(template: str) -> bool:
    """Whether `template` prints message contents as they are and decides nothing by them
    beyond their presence (then its text around the contents depends on the roles alone).

    >>> content_is_only_printed("{% for m in messages %}{{ '<' + m['role'] + '>' + m['content'] }}{% endfor %}")
    True
    >>> content_is_only_printed("{% for m in messages %}{{ m['content'] | trim }}{% endfor %}")
    False
    >>> content_is_only_printed("{% for m in messages %}{% if '</think>' in m.content %}x{% endif %}{% endfor %}")
    False
    >>> content_is_only_printed("{% for m in messages %}{{ m.get('content') }}{% endfor %}")
    False
    """
    import jinja2
    from jinja2 import nodes

    try:
        tree = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"]).parse(template)
    except jinja2.TemplateSyntaxError:  # a tag of transformers' own ({% generation %}): no
        return False
    for node, parents in _walk(tree):
        if isinstance(node, nodes.Call) and getattr(node.node, "name", None) == "strftime_now":
            return False  # the text changes with the date
        if _references_content(node) and not _printed_or_tested(parents, node):
            return False
        if (  # the key named some other way (message.get("content")): not provably printed
            isinstance(node, nodes.Const)
            and node.value == CONTENT
            and not (parents and _references_content(parents[-1]))
        ):
            return False
    return True


def _roles(system: bool, exchanges: int) -> list[str]:
    return (["system"] if system else []) + ["user", "assistant"] * exchanges


class SegmentRenderer:
    """A tokenizer's chat template as fixed text between contents, for the shapes probed."""

    def __init__(self, gaps: dict[tuple[str, ...], list[str]]) -> None:
        self._gaps = gaps  # by the roles in order: the texts before, between and after

    @classmethod
    def probe(cls, tokenizer: Any) -> SegmentRenderer | None:
        """The renderer of `tokenizer`'s chat template, or None where joining would not be
        provably the same text."""
        template = getattr(tokenizer, "chat_template", None)
        if not isinstance(template, str) or not content_is_only_printed(template):
            return None
        gaps: dict[tuple[str, ...], list[str]] = {}
        for system in (False, True):
            for exchanges in range(1, MAX_EXCHANGES + 1):
                roles = _roles(system, exchanges)
                markers = [MARKER.format(i) for i in range(len(roles))]
                messages = [{"role": r, "content": m} for r, m in zip(roles, markers, strict=True)]
                try:
                    text = tokenizer.apply_chat_template(messages, tokenize=False)
                except Exception:  # the template refuses this shape: render those with it
                    continue
                found = _split(text, markers)
                if found is not None:
                    gaps[tuple(roles)] = found
        return cls(gaps) if gaps else None

    def render(self, messages: Sequence[dict[str, Any]]) -> str | None:
        """The template's text for `messages`; None for a shape or message not probed."""
        roles = []
        for message in messages:
            content = message.get(CONTENT)
            if len(message) != 2 or not isinstance(content, str) or not content:
                return None
            roles.append(message.get("role"))
        gaps = self._gaps.get(tuple(roles))
        if gaps is None:
            return None
        parts = [gaps[0]]
        for message, gap in zip(messages, gaps[1:], strict=True):
            parts += (message[CONTENT], gap)
        return "".join(parts)


def _split(text: str, markers: list[str]) -> list[str] | None:
    """The text around each marker, in order; None unless each appears once, in order."""
    gaps, start = [], 0
    for marker in markers:
        at = text.find(marker, start)
        if at < 0 or text.count(marker) != 1:
            return None
        gaps.append(text[start:at])
        start = at + len(marker)
    gaps.append(text[start:])
    return gaps
