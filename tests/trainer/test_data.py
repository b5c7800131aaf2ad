"""Labels on assistant turns only; packed rows that no example can see across."""

from __future__ import annotations

import json

import pytest
from droptune_trainer.data import IGNORE, Example, collate, pack, pad_rows, tokenize

from tests.trainer.conftest import EXAMPLE

RECORDS = [json.loads(line) for line in EXAMPLE.read_text().splitlines()]


@pytest.fixture(scope="module")
def tokenizer(pulled_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(pulled_model)


@pytest.mark.slow
def test_only_assistant_turns_are_learned(tokenizer):
    tokenized = tokenize(tokenizer, RECORDS[:3], 2048, assistant_only=True)
    assert tokenized.whole_sequence_loss == 0
    for example, record in zip(tokenized.examples, RECORDS, strict=False):
        learned = tokenizer.decode(
            [t for t, y in zip(example.input_ids, example.labels, strict=True) if y != IGNORE]
        )
        answer = record["messages"][-1]["content"]
        assert learned.startswith(answer) and learned.endswith("<|im_end|>\n")
        assert record["messages"][-2]["content"] not in learned  # the prompt is not learned


@pytest.mark.slow
def test_whole_sequence_loss_when_asked_and_truncation(tokenizer):
    tokenized = tokenize(tokenizer, RECORDS[:2], 16, assistant_only=False)
    assert tokenized.truncated == 2
    for example in tokenized.examples:
        assert len(example.input_ids) == 16
        assert example.labels[1:] == example.input_ids[1:] and example.labels[0] == IGNORE


def test_first_fit_packing_is_deterministic_and_respects_the_budget():
    examples = [Example([1] * n, [1] * n) for n in (5, 9, 3, 7, 2, 8)]
    rows = pack(examples, 10)
    # Longest first, each into the first row with room: 9 | 8+2 | 7+3 | 5
    assert [[len(e.input_ids) for e in r.examples] for r in rows] == [[9], [8, 2], [7, 3], [5]]
    assert [[len(e.input_ids) for e in r.examples] for r in rows] == [
        [len(e.input_ids) for e in r.examples] for r in pack(list(reversed(examples)), 10)
    ]


def test_padded_rows_stay_within_the_budget():
    examples = [Example([1] * n, [1] * n) for n in (5, 9, 3, 7, 2, 8)]
    rows = pad_rows(examples, 16)
    for row in rows:
        assert max(len(e.input_ids) for e in row.examples) * len(row.examples) <= 16
    batch = collate(rows[0], packed=False, pad_id=0)
    assert batch["input_ids"].shape == batch["attention_mask"].shape


@pytest.mark.slow
def test_packed_examples_do_not_attend_to_each_other(tokenizer, pulled_model):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(pulled_model)
    examples = tokenize(tokenizer, RECORDS[:3], 2048, assistant_only=True).examples
    (row,) = pack(examples, 4096)
    batch = collate(row, packed=True, pad_id=tokenizer.pad_token_id)
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits[0]
        offset = 0
        for example in row.examples:
            alone = model(input_ids=torch.tensor([example.input_ids]), use_cache=False).logits[0]
            n = len(example.input_ids)
            assert torch.allclose(packed[offset : offset + n], alone, atol=1e-3)
            offset += n


def test_tool_data_the_template_cannot_render_stops_training_before_it_starts(tokenizer):
    """SmolLM2's template renders content only: a tool call would be an empty answer."""
    from droptune_trainer.data import refuse_what_the_template_drops

    from droptune.errors import ConfigError

    call = {"type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    calling = {
        "messages": [
            {"role": "user", "content": "Where is order 7?"},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": "shipped"},
            {"role": "assistant", "content": "It has shipped."},
        ]
    }
    thinking = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant",
                "content": "a", "reasoning_content": "r"}]}  # fmt: skip
    refuse_what_the_template_drops(tokenizer, [thinking], "SmolLM2")  # the answers stay
    with pytest.raises(ConfigError, match=r"1 example\(s\) have tool_calls or tools, which"):
        refuse_what_the_template_drops(tokenizer, [thinking, calling], "SmolLM2")
