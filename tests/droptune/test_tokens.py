"""Token counts: exact counts equal the tokenizer's own chat-template encoding."""

from __future__ import annotations

import pytest

from droptune.tokens import ChatTemplateCounter, EstimateCounter, load_tokenizer

CONVERSATIONS = [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
    {
        "messages": [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Good morning, how are you today?"},
            {"role": "assistant", "content": "Bonjour, je vais bien, merci."},
        ]
    },
]


@pytest.fixture(scope="module")
def smol():
    return load_tokenizer("HuggingFaceTB/SmolLM2-135M-Instruct")


@pytest.mark.slow
def test_exact_counts_match_apply_chat_template(smol):
    tokenizer, files = smol
    counter = ChatTemplateCounter(tokenizer, files)
    expected = [
        len(
            tokenizer.apply_chat_template(r["messages"], tokenize=True, return_dict=True)[
                "input_ids"
            ]
        )
        for r in CONVERSATIONS
    ]
    assert counter.count(CONVERSATIONS) == expected
    assert counter.method == "exact"


@pytest.mark.slow
def test_text_records_count_eos(smol):
    tokenizer, files = smol
    counter = ChatTemplateCounter(tokenizer, files)
    [n] = counter.count([{"text": "hello world"}])
    assert n == len(tokenizer("hello world", add_special_tokens=False)["input_ids"]) + 1


def test_estimate_counter_is_labelled():
    counter = EstimateCounter()
    assert counter.method == "estimate"
    assert counter.count([{"text": "abcdefgh"}]) == [2]
    # "Hi" + "Hello!" = 8 characters -> 2 tokens, plus 4 per message.
    assert counter.count(CONVERSATIONS[:1]) == [2 + 2 * 4]


def test_gguf_mirror_is_used_offline(tmp_path, monkeypatch):
    from droptune.models import locate

    monkeypatch.setattr("droptune.models.CACHE_DIR", tmp_path)  # nothing pulled yet
    files = locate("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert files.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
def test_pulled_model_is_a_plain_checkpoint_that_locate_prefers(pulled_model):
    from droptune.models import locate

    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in pulled_model.iterdir()
    }
    files = locate("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert (files.location, files.gguf_file) == (str(pulled_model), None)


def test_the_template_probe_gives_calls_an_id_and_takes_a_refusal_for_unknown():
    """Mistral's templates refuse a tool call without a 9-character id; the probe's call has
    one. A template that raises anyway is not taken to drop the part: the trainer's own
    rendering would raise, which says more."""
    import json

    from droptune.tokens import unrendered

    class Template:
        def __init__(self, refuse_tools: bool) -> None:
            self.refuse_tools = refuse_tools

        def apply_chat_template(self, messages, tools=None, tokenize=False):
            for m in messages:
                for call in m.get("tool_calls") or ():
                    if len(call.get("id", "")) != 9:
                        raise ValueError(
                            "Tool call IDs should be alphanumeric strings with length 9!"
                        )
            if tools and self.refuse_tools:
                raise ValueError("tools are not supported")
            return json.dumps([messages, tools])  # renders everything

    assert unrendered(Template(refuse_tools=False)) == frozenset()
    assert unrendered(Template(refuse_tools=True)) == frozenset()
