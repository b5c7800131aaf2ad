"""Joined chat-template texts are the template's own, and only templates that allow it are
joined: the syntax-tree check, the probed shapes, and the real default tokenizer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from droptune.chat_render import MAX_EXCHANGES, SegmentRenderer, content_is_only_printed
from droptune.tokens import render_examples

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
)


def tiny_tokenizer(template: str):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    inner = Tokenizer(models.WordLevel({"<unk>": 0, "<s>": 1}, unk_token="<unk>"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=inner, unk_token="<unk>", bos_token="<s>")
    tokenizer.chat_template = template
    return tokenizer


def chat(*contents: str, system: str | None = None) -> list[dict]:
    roles = ["user", "assistant"] * len(contents)
    messages = [{"role": r, "content": c} for r, c in zip(roles, contents, strict=False)]
    return ([{"role": "system", "content": system}] if system else []) + messages


@pytest.mark.parametrize(
    ("template", "joined"),
    [
        (CHATML, True),
        ("{% for m in messages %}{% if m.content is string %}{{ m.content }}{% endif %}{% endfor %}", True),
        ("{% for m in messages %}{% if not m.content %}{{ raise_exception('empty') }}{% endif %}{{ m.content }}{% endfor %}", True),
        ("{% for m in messages %}{{ m['content'] | trim }}{% endfor %}", False),
        ("{% set first = messages[0]['content'] %}{% for m in messages %}{{ first }}{% endfor %}", False),
        ("{% for m in messages %}{{ m.content[0] }}{% endfor %}", False),
        ("{% for m in messages %}{{ m.content if m.content else '-' }}{% endfor %}", False),
        ("{{ strftime_now('%d %b %Y') }}{% for m in messages %}{{ m.content }}{% endfor %}", False),
        ("{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}", False),
        ("{% for m in messages %}{{ m | tojson }}{% endfor %}", True),  # no marker found: no shape
    ],
)  # fmt: skip
def test_only_templates_that_print_contents_as_they_are_are_joined(template, joined) -> None:
    assert content_is_only_printed(template) is joined


def test_a_template_that_prints_whole_messages_as_json_has_no_shape_to_join() -> None:
    assert (
        SegmentRenderer.probe(
            tiny_tokenizer(CHATML.replace("message['content']", "message | tojson"))
        )
        is None
    )


def test_the_probed_shapes_render_as_the_template_does_and_others_are_left_to_it() -> None:
    tokenizer = tiny_tokenizer(
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system') }}{% endif %}"
        + CHATML.replace("{% for message in messages %}", "{% for message in messages %}{% if loop.last %}[last]{% endif %}")
    )  # fmt: skip
    renderer = SegmentRenderer.probe(tokenizer)
    assert renderer is not None
    for exchanges in range(1, MAX_EXCHANGES + 1):
        messages = chat(*[f" turn {i}\n" for i in range(2 * exchanges)])
        assert renderer.render(messages) == tokenizer.apply_chat_template(messages, tokenize=False)
    assert renderer.render(chat("a", "b", system="s")) is None  # the template refuses it
    assert renderer.render(chat(*["x"] * (2 * MAX_EXCHANGES + 2))) is None  # longer than probed
    assert renderer.render(chat("a", "b")[:1]) is None  # ends with the user
    assert renderer.render(chat("a", "")) is None  # empty content
    assert (
        renderer.render([{"role": "user", "content": "a", "name": "n"}, *chat("a", "b")[1:]])
        is None
    )


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
PIECES = st.sampled_from(
    ["<|im_end|>", "<|im_start|>", "{{ x }}", "{% if %}", "\n", " ", "\t", "\x1e"]
)
CONTENT = st.lists(st.one_of(TEXT, PIECES), min_size=1, max_size=4).map("".join)


@pytest.fixture(scope="module")
def jinja_counter(real_counter):
    """The same tokenizer counting through Jinja alone (no joined contents)."""
    from droptune.tokens import ChatTemplateCounter

    return ChatTemplateCounter(real_counter.tokenizer, real_counter.files, joined=False)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    system=st.one_of(st.none(), CONTENT),
    contents=st.lists(CONTENT, min_size=2, max_size=2 * MAX_EXCHANGES + 4).filter(
        lambda c: len(c) % 2 == 0
    ),
    tools=st.booleans(),
)
def test_the_default_models_counter_renders_and_counts_as_the_template(
    real_counter, jinja_counter, system, contents, tools
) -> None:
    record = {"messages": chat(*contents, system=system)}
    if tools:
        record["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert real_counter.render([record]) == render_examples(real_counter.tokenizer, [record])
    assert real_counter.count([record]) == jinja_counter.count([record])
