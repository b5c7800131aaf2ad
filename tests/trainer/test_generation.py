"""Batched generation's answers end at the first stop token, whichever the model names."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from droptune_trainer.generation import generate, stop_ids


@pytest.fixture(scope="module")
def tokenizer(pulled_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(pulled_model)


class Scripted:
    """A model that answers every prompt with the same ids (then pads, as `generate` does)."""

    def __init__(self, answer: list[int], eos: int | list[int] | None) -> None:
        self.answer = answer
        self.generation_config = SimpleNamespace(eos_token_id=eos)

    def generate(self, input_ids: torch.Tensor, **_: Any) -> torch.Tensor:
        tail = torch.tensor(self.answer).expand(len(input_ids), -1)
        return torch.cat([input_ids, tail], dim=1)


def test_an_end_only_the_generation_config_names_ends_the_answer(tokenizer):
    hello = tokenizer("Hello there", add_special_tokens=False).input_ids
    end_of_turn, pad = 1, tokenizer.pad_token_id  # SmolLM2: <|im_start|> stands in for it
    model = Scripted(hello + [end_of_turn] + [pad] * 5, eos=[tokenizer.eos_token_id, end_of_turn])
    answers = generate(model, tokenizer, ["a", "a longer prompt"], 8, torch.device("cpu"))
    assert answers == [("Hello there", len(hello) + 1)] * 2  # the padding is not counted


def test_stop_ids_take_every_end_and_the_padding(tokenizer):
    ends = stop_ids(Scripted([], eos=[7, 9]), tokenizer)
    assert {7, 9, tokenizer.eos_token_id, tokenizer.pad_token_id} == ends
    assert None not in stop_ids(
        SimpleNamespace(), SimpleNamespace(eos_token_id=3, pad_token_id=None)
    )
