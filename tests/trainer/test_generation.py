"""Batched generation: answers end at the first stop token, whichever the model names, and
prompts are batched by length under a budget of what the device's memory holds."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from droptune_trainer.generation import (
    GPU_TOKENS_PER_BATCH,
    TOKENS_PER_BATCH,
    Generated,
    TurnShape,
    batches,
    bytes_per_token,
    generate,
    name_the_ends,
    render,
    split_reasoning,
    stop_ids,
    token_budget,
    turn_shape,
)


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
    assert answers == [Generated("Hello there", len(hello) + 1)] * 2  # the padding is not counted


def test_stop_ids_take_every_end_and_the_padding(tokenizer):
    ends = stop_ids(Scripted([], eos=[7, 9]), tokenizer)
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")  # the template opens turns so
    assert {7, 9, tokenizer.eos_token_id, tokenizer.pad_token_id, im_start} == ends
    assert None not in stop_ids(
        SimpleNamespace(), SimpleNamespace(eos_token_id=3, pad_token_id=None)
    )


@pytest.fixture
def base_tokenizer(pulled_model):
    """SmolLM2's tokenizer as a base checkpoint's often is: its end of sequence is
    <|endoftext|>, while its chat template closes a turn with <|im_end|>."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(pulled_model)
    tokenizer.eos_token = "<|endoftext|>"
    return tokenizer


def test_the_template_s_end_of_turn_ends_the_answer_when_no_config_names_it(base_tokenizer):
    """What tuning teaches is the template's turn end: generation stops there, not after
    inventing the next turns until max_new_tokens."""
    tokenizer = base_tokenizer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert turn_shape(tokenizer) == TurnShape(end=im_end, lead=0, start=im_start)
    sports = tokenizer("Sports", add_special_tokens=False).input_ids
    more = tokenizer("\n<|im_start|>user\nWhat next", add_special_tokens=False).input_ids
    model = Scripted([*sports, im_end, *more], eos=tokenizer.eos_token_id)
    [answer] = generate(model, tokenizer, ["a"], 16, torch.device("cpu"))
    assert answer == Generated("Sports", len(sports) + 1)


def test_the_saved_generation_config_names_the_turn_end(base_tokenizer):
    from transformers import GenerationConfig

    model = SimpleNamespace(generation_config=GenerationConfig(eos_token_id=0))
    name_the_ends(model, base_tokenizer)
    # <|endoftext|>, <|im_start|> (a turn that opens ends the answer), <|im_end|>
    assert model.generation_config.eos_token_id == [0, 1, 2]


def test_an_answer_that_opens_the_next_turn_ends_before_its_role(base_tokenizer):
    """A model that starts a new turn without closing its own: decoded without special
    tokens, that turn would leave its role in the answer ('user\\nbuggy')."""
    tokenizer = base_tokenizer
    bug = tokenizer("bug", add_special_tokens=False).input_ids
    turn = tokenizer("<|im_start|>user\nbuggy<|im_end|>", add_special_tokens=False).input_ids
    model = Scripted([*bug, *turn], eos=tokenizer.eos_token_id)
    [answer] = generate(model, tokenizer, ["a"], 16, torch.device("cpu"))
    assert answer == Generated("bug", len(bug) + 1)


QWEN3_LIKE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.role == 'assistant' %}<think>\n\n</think>\n\n{% endif %}"
    "{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_a_template_that_writes_before_the_answer_says_how_much(base_tokenizer):
    tokenizer = base_tokenizer
    tokenizer.chat_template = QWEN3_LIKE
    lead = len(tokenizer("<think>\n\n</think>\n\n", add_special_tokens=False).input_ids)
    assert turn_shape(tokenizer).lead == lead > 0


def test_a_template_the_probe_cannot_render_has_no_shape(base_tokenizer):
    base_tokenizer.chat_template = "{{ raise_exception('a system turn first') }}"
    assert turn_shape(base_tokenizer) == TurnShape(None, 0)


@pytest.mark.parametrize(
    ("text", "opened", "split"),
    [
        ("<think>\n2 and 2\n</think>\n\n4", False, ("4", "2 and 2")),
        ("\n<think></think>Sports", False, ("Sports", "")),
        ("2 and 2</think>\n4", True, ("4", "2 and 2")),  # the prompt opened the block
        ("<think>still thinking", False, ("", "still thinking")),  # cut off: no answer yet
        (" Paris, the capital", False, (" Paris, the capital", "")),  # left as it is
        ("a </think> b", False, ("a </think> b", "")),  # no block at the start
    ],
)
def test_reasoning_is_kept_apart_from_the_answer(text, opened, split):
    assert split_reasoning(text, opened) == split


def test_a_reasoning_answer_is_the_text_after_its_thinking(tokenizer):
    think = tokenizer("<think>\nhmm\n</think>\n\nSports", add_special_tokens=False).input_ids
    model = Scripted([*think, tokenizer.eos_token_id], eos=tokenizer.eos_token_id)
    [answer] = generate(model, tokenizer, ["a"], 32, torch.device("cpu"))
    assert answer == Generated("Sports", len(think) + 1, "hmm")


def test_thinking_tags_that_are_special_tokens_still_split_the_answer(pulled_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(pulled_model)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<think>", "</think>"]})
    think = tokenizer("<think>hmm</think>Sports", add_special_tokens=False).input_ids
    model = Scripted([*think, tokenizer.eos_token_id], eos=tokenizer.eos_token_id)
    [answer] = generate(model, tokenizer, ["a"], 32, torch.device("cpu"))
    assert answer == Generated("Sports", len(think) + 1, "hmm")


@pytest.fixture(scope="module")
def tiny(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_model).eval(), AutoTokenizer.from_pretrained(
        tiny_model
    )


def test_greedy_is_plain_greedy_whatever_the_checkpoint_suggests(tiny):
    """A checkpoint's repetition penalty, n-gram ban, top-k or beams change nothing here."""
    model, tokenizer = tiny
    texts, cpu = ["the data", "a longer prompt about the model"], torch.device("cpu")
    plain = generate(model, tokenizer, texts, 12, cpu)
    config = model.generation_config
    saved = config.to_dict()
    config.update(repetition_penalty=5.0, no_repeat_ngram_size=1, num_beams=3, top_k=1)
    try:
        assert generate(model, tokenizer, texts, 12, cpu) == plain
        sampled = {
            generate(model, tokenizer, texts[:1], 12, cpu, temperature=1.0)[0] for _ in range(8)
        }
        assert len(sampled) > 1  # top_k=1 would make every sample the same
    finally:
        model.generation_config = type(config).from_dict(saved)
    assert tokenizer.padding_side == "right"  # padded on the left per call, left as it was


class AddsBos:
    """A tokenizer that starts every text with <s>, as Llama's and Gemma's do."""

    bos_token, bos_token_id = "<s>", 1

    def __call__(self, text: str) -> SimpleNamespace:
        return SimpleNamespace(input_ids=[1, 9])


def test_a_raw_prompt_gets_the_beginning_of_sequence_token_its_tokenizer_adds(tiny):
    _, tokenizer = tiny
    assert render(tokenizer, "Once upon") == "Once upon"  # ChatML adds none
    assert render(AddsBos(), "Once upon") == "<s>Once upon"
    assert render(AddsBos(), "<s>Once upon") == "<s>Once upon"  # not twice


@pytest.mark.slow
def test_a_batched_greedy_answer_is_the_answer_alone(tokenizer, pulled_model):
    """Left padding with its attention mask: each row answers as if it were alone."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(pulled_model).eval()
    prompts = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "user", "content": "Name a colour."}],
        [{"role": "user", "content": "Write one short sentence about the sea and the sky."}],
    ]
    texts, cpu = [render(tokenizer, p) for p in prompts], torch.device("cpu")
    together = generate(model, tokenizer, texts, 10, cpu)
    assert together == [generate(model, tokenizer, [t], 10, cpu)[0] for t in texts]


def test_batches_group_prompts_by_length_under_the_budget():
    lengths = [50, 10, 40, 12, 11]
    groups = batches(lengths, budget=40)
    assert groups == [[1, 4, 3], [2], [0]]  # 3 x 12 = 36 tokens padded; 40 alone; 50 alone
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    # What each row may generate counts too: 30-token prompts that grow by 20 fit two a batch.
    assert batches([30] * 5, budget=100, new_tokens=20) == [[0, 1], [2, 3], [4]]


QWEN_05B = SimpleNamespace(  # the shape's generation-relevant sizes, and its bf16 weights
    config=SimpleNamespace(
        num_hidden_layers=24, hidden_size=896, num_attention_heads=14, num_key_value_heads=2,
        intermediate_size=4864,
    ),
    dtype=torch.bfloat16,
)  # fmt: skip


def test_a_token_costs_its_keys_and_values_in_every_layer_and_the_prompt_pass_activations():
    kv = 2 * 24 * 2 * (896 // 14)  # keys and values, 2 heads of 64 in 24 layers
    assert bytes_per_token(QWEN_05B) == 2 * (kv + 4 * 4864 + 4 * 896)
    no_shape = SimpleNamespace(config=SimpleNamespace(hidden_size=8))
    assert bytes_per_token(no_shape) is None


def test_a_gpu_batch_holds_what_half_its_free_memory_takes(monkeypatch):
    gpu, per_token = torch.device("cuda"), bytes_per_token(QWEN_05B)
    assert token_budget(QWEN_05B, torch.device("cpu")) == TOKENS_PER_BATCH

    def free(driver_gib: float, cached_gib: float = 0) -> None:
        """What the driver has left, and what PyTorch's allocator holds unused (after
        training, most of what is free)."""
        left, cached = int(driver_gib * 2**30), int(cached_gib * 2**30)
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (left, 0))
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device: cached + 2**30)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 2**30)

    free(100)
    assert token_budget(QWEN_05B, gpu) == GPU_TOKENS_PER_BATCH  # capped
    free(1)
    assert token_budget(QWEN_05B, gpu) == 2**29 // per_token  # 9,198 tokens in half a GiB
    free(0.5, cached_gib=0.5)
    assert token_budget(QWEN_05B, gpu) == 2**29 // per_token  # the same: cached is free
    free(0.01)
    assert token_budget(QWEN_05B, gpu) == 1024  # a floor: a batch is never empty
    no_shape = SimpleNamespace(config=None)
    assert token_budget(no_shape, gpu) == TOKENS_PER_BATCH
