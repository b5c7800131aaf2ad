"""Batched generation: prompts padded on the left so every row starts answering together.

Shared by the evaluation (greedy, many test prompts) and the server (requests batched
together). Prompts are chat messages rendered with the tokenizer's template, or raw text,
grouped by length into batches that the device's memory holds (`batches`, `token_budget`).

Decoding is what the caller asks for and nothing else: a checkpoint's generation_config may
carry a repetition penalty, top-k or beams (Qwen2.5's has `repetition_penalty: 1.05` and
`top_k: 20`), which transformers applies unless each is overridden, so greedy here is plain
greedy and sampling is temperature and top-p alone (`PLAIN`). Generation stops at every
token that ends an answer (`stop_ids`), not only the checkpoint's end of sequence: also the
token the chat template closes an assistant turn with, which is what tuning teaches the model
to write (a base checkpoint's end of sequence is often another: Qwen2.5's `<|endoftext|>`
where its template closes turns with `<|im_end|>`), and the token that opens a turn
(`<|im_start|>`): a model that starts the next turn without closing its own has ended its
answer, and decoding without special tokens would leave that turn's role (`user\n...`) in
the answer. A reasoning model's leading
`<think>...</think>` block (Qwen3, DeepSeek-R1) is kept apart from the answer (`Generated`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import torch

TOKENS_PER_BATCH = 16_384  # prompt and answer tokens of one generation, all rows: on a CPU
GPU_TOKENS_PER_BATCH = 65_536  # on a GPU, if half its free memory holds them
# Overrides of generation_config settings that would change what greedy or sampling gives.
PLAIN = {"num_beams": 1, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "top_k": 0}
THINK, END_THINK = "<think>", "</think>"
_MARK = "droptune-answer-mark"  # an answer's text in the probe that finds a turn's shape


class Generated(NamedTuple):
    text: str  # the answer as decoded, its reasoning left out
    tokens: int  # tokens generated: reasoning and the stop token included
    reasoning: str = ""  # what a reasoning model wrote in <think>...</think> first


@dataclass(frozen=True)
class TurnShape:
    """How a chat template writes an assistant turn around the answer's text."""

    end: int | None  # the special token that closes the turn (<|im_end|>, <end_of_turn>)
    lead: int  # tokens written before the text (Qwen3's empty <think></think>: 4), which a
    #            tuned model learns to write first
    start: int | None = None  # the special token that opens a turn (<|im_start|>,
    #                           <start_of_turn>): never part of an answer


def render(tokenizer: Any, prompt: str | list[dict[str, Any]], tools: Any = None) -> str:
    """The text a model continues: a chat through its template (which writes any
    beginning-of-sequence token itself), or raw text with the beginning-of-sequence token the
    tokenizer would add (Llama and Gemma degrade badly without it; generation tokenizes
    without special tokens, so that a template's own is not doubled)."""
    if isinstance(prompt, str):
        bos = tokenizer.bos_token
        if bos and adds_bos(tokenizer) and not prompt.startswith(bos):
            return bos + prompt
        return prompt
    return tokenizer.apply_chat_template(
        prompt, tools=tools, add_generation_prompt=True, tokenize=False
    )


@lru_cache(maxsize=8)  # asked for every raw prompt; a tokenizer does not change its mind
def adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer starts a text with its beginning-of-sequence token."""
    ids = tokenizer("a").input_ids
    return bool(ids) and ids[0] == tokenizer.bos_token_id


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    max_new_tokens: int,
    device: torch.device,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> list[Generated]:
    """The answer to each text; greedy unless `temperature` > 0."""
    inputs = tokenizer(
        texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False
    ).to(device)
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p}
        if temperature > 0
        else {"do_sample": False}
    )
    stops = stop_ids(model, tokenizer)
    opened = [text.rstrip().endswith(THINK) for text in texts]  # the template began thinking
    special = special_tags(tokenizer)
    out = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=sorted(stops),
        **PLAIN,
        **sampling,
    )
    answers = []
    for row, thinking in zip(out[:, inputs["input_ids"].shape[1] :], opened, strict=True):
        ids = row.tolist()
        end = next((i for i, token in enumerate(ids) if token in stops), None)
        if end is not None:  # the answer ends with its stop token; the padding after is not its
            ids = ids[: end + 1]
        text, reasoning = decoded(tokenizer, ids, thinking, special)
        answers.append(Generated(text, len(ids), reasoning))
    return answers


def special_tags(tokenizer: Any) -> list[str]:
    """The tokenizer's special tokens when the thinking tags are among them (decoding then
    keeps them, to split on, and `decoded` removes them after); else none."""
    special = list(getattr(tokenizer, "all_special_tokens", ()))
    return special if {THINK, END_THINK} & set(special) else []


def decoded(tokenizer: Any, ids: list[int], opened: bool, special: list[str]) -> tuple[str, str]:
    """(answer, reasoning) of generated `ids`, special tokens left out (`special_tags`)."""
    text = tokenizer.decode(ids, skip_special_tokens=not special)
    answer, reasoning = split_reasoning(text, opened)
    for token in special:
        answer, reasoning = answer.replace(token, ""), reasoning.replace(token, "")
    return answer, reasoning.strip()


def split_reasoning(text: str, opened: bool = False) -> tuple[str, str]:
    """(answer, reasoning) of a generated text whose reasoning comes first in a
    <think>...</think> block; `opened` when the prompt itself ended with <think>. An answer cut
    off before </think> is all reasoning. Text without such a block is all answer, as it is
    (a raw prompt's continuation keeps its leading space).

    >>> split_reasoning("<think>2 and 2</think> 4")
    ('4', '2 and 2')
    """
    body = text.lstrip()
    if body.startswith(THINK):
        body, opened = body[len(THINK) :], True
    if not opened:
        return text, ""
    reasoning, closed, answer = body.partition(END_THINK)
    return (answer.lstrip(), reasoning.strip()) if closed else ("", reasoning.strip())


def prompt_lengths(tokenizer: Any, texts: list[str]) -> list[int]:
    """Tokens of each rendered prompt, tokenized as `generate` tokenizes it."""
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """Tokens that end an answer (`answer_ends`) and the padding that follows."""
    pad = tokenizer.pad_token_id
    return answer_ends(model, tokenizer) | ({pad} if pad is not None else set())


def answer_ends(model: Any, tokenizer: Any) -> set[int]:
    """The tokenizer's end of text, every end the generation config names (Gemma's
    <end_of_turn>, Llama 3's <|eot_id|>), the chat template's end of an assistant turn and
    the token that opens the next one."""
    config = getattr(model, "generation_config", None)
    ends = getattr(config, "eos_token_id", None)
    ends = ends if isinstance(ends, list) else [ends]
    shape = turn_shape(tokenizer)
    return {t for t in (tokenizer.eos_token_id, shape.end, shape.start, *ends) if t is not None}


def name_the_ends(model: Any, tokenizer: Any) -> None:
    """Write every end of an answer into the model's generation config, as it is saved, so
    that transformers and vLLM stop where the tuned model learned to stop."""
    config = getattr(model, "generation_config", None)
    if config is not None:
        config.eos_token_id = sorted(answer_ends(model, tokenizer))


def turn_shape(tokenizer: Any) -> TurnShape:
    """What the chat template writes around an answer (none without a template)."""
    if not getattr(tokenizer, "chat_template", None):  # raw text only: no turns
        return TurnShape(None, 0)
    return _probed_shape(tokenizer)


@lru_cache(maxsize=8)  # asked for every generation; the template does not change
def _probed_shape(tokenizer: Any) -> TurnShape:
    """From a probe conversation: the text between the generation prompt and the answer,
    the first special token after the answer, and the first of the generation prompt."""
    user = [{"role": "user", "content": "Hi"}]
    try:
        asked = tokenizer.apply_chat_template(user, tokenize=False)
        prompt = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
        whole = tokenizer.apply_chat_template(
            [*user, {"role": "assistant", "content": _MARK}], tokenize=False
        )
    except Exception:  # a template with demands of its own (a system turn, say): no probe
        return TurnShape(None, 0)
    at = whole.find(_MARK)
    if at < 0:
        return TurnShape(None, 0)
    lead = whole[len(prompt) : at] if whole.startswith(prompt) else ""
    after = tokenizer(whole[at + len(_MARK) :], add_special_tokens=False).input_ids
    opener = prompt[len(asked) :] if prompt.startswith(asked) else ""
    opening = tokenizer(opener, add_special_tokens=False).input_ids
    special = set(tokenizer.all_special_ids) | {
        i for i, token in tokenizer.added_tokens_decoder.items() if token.special
    }
    return TurnShape(
        after[0] if after and after[0] in special else None,
        len(tokenizer(lead, add_special_tokens=False).input_ids) if lead else 0,
        opening[0] if opening and opening[0] in special else None,
    )


def token_budget(model: Any, device: torch.device) -> int:
    """Prompt and answer tokens one generation holds, all rows together. On a GPU a step of
    many rows takes about the time of one (a small model's step waits on kernel launches, not
    arithmetic: on an H200, 64 answers of the Qwen2-0.5B shape in one batch took 0.67 s, one
    answer alone 0.74 s), so there a batch holds as many tokens as half the free memory
    takes, up to GPU_TOKENS_PER_BATCH (`bytes_per_token`). On a CPU a step's time grows with
    its rows, and larger batches only add padding: TOKENS_PER_BATCH."""
    if device.type != "cuda":
        return TOKENS_PER_BATCH
    per_token = bytes_per_token(model)
    if per_token is None:
        return TOKENS_PER_BATCH
    free, _ = torch.cuda.mem_get_info(device)  # what the driver has left, and what PyTorch
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # holds
    return max(1024, min(GPU_TOKENS_PER_BATCH, int(free / 2 / per_token)))


def bytes_per_token(model: Any) -> int | None:
    """Memory a token of a batch takes during generation, from the model's config: keys and
    values in every layer, and the MLP's and the residual stream's activations (four of each)
    while the prompt is read. None when the config does not say its shape."""
    config = getattr(model, "config", None)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    try:
        layers, hidden, heads = (
            config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
        )  # fmt: skip
    except AttributeError:
        return None
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
    return getattr(model, "dtype", torch.float32).itemsize * (
        2 * layers * kv_heads * head_dim + 4 * intermediate + 4 * hidden
    )


def batches(lengths: list[int], budget: int, new_tokens: int = 0) -> list[list[int]]:
    """Indices of prompts grouped by length (`lengths`, in tokens) so that padding stays
    small: a batch holds at most `budget` tokens once padded to its longest prompt and
    grown by the `new_tokens` each row may generate (what the KV cache ends up holding)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups, current = [], []
    for i in order:
        if current and (lengths[i] + new_tokens) * (len(current) + 1) > budget:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups
