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
    answers = []
    for row in out[:, inputs["input_ids"].shape[1] :]:
        ids = row.tolist()
        if tokenizer.eos_token_id in ids:
            ids = ids[: ids.index(tokenizer.eos_token_id) + 1]
        answers.append((tokenizer.decode(ids, skip_special_tokens=True).strip(), len(ids)))
    return answers
