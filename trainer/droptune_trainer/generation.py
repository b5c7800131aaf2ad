"""Batched generation: prompts padded on the left so every row starts answering together.

Shared by the evaluation (greedy, many test prompts) and the server (requests batched
together). Prompts are chat messages rendered with the tokenizer's template, or raw text.
"""

from __future__ import annotations

from typing import Any

import torch


def render(tokenizer: Any, prompt: str | list[dict[str, Any]], tools: Any = None) -> str:
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(
        prompt, tools=tools, add_generation_prompt=True, tokenize=False
    )


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    max_new_tokens: int,
    device: torch.device,
    temperature: float = 0.0,
    top_p: float = 1.0,
) -> list[tuple[str, int]]:
    """(answer, generated token count) for each text; greedy unless `temperature` > 0."""
    tokenizer.padding_side = "left"
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
        device
    )
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p}
        if temperature > 0
        else {"do_sample": False}
    )
    out = model.generate(
        **inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
    )
    stops = stop_ids(model, tokenizer)
    answers = []
    for row in out[:, inputs["input_ids"].shape[1] :]:
        ids = row.tolist()
        end = next((i for i, token in enumerate(ids) if token in stops), None)
        if end is not None:  # the answer ends with its stop token; the padding after is not its
            ids = ids[: end + 1]
        answers.append((tokenizer.decode(ids, skip_special_tokens=True).strip(), len(ids)))
    return answers


def stop_ids(model: Any, tokenizer: Any) -> set[int]:
    """Tokens that end an answer: the tokenizer's end of text and every end the generation
    config names (Gemma's <end_of_turn>, Llama 3's <|eot_id|>), and the padding that follows."""
    config = getattr(model, "generation_config", None)
    ends = getattr(config, "eos_token_id", None)
    ends = ends if isinstance(ends, list) else [ends]
    return {t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id, *ends) if t is not None}
