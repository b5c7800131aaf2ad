"""What a training step keeps for its backward pass, counted exactly (saved-tensor hooks), so
that memory cannot creep back: logits only where a label is, no dropout copies of the
adapted layers' inputs, activations within the budget docs/training.md states per token."""

from __future__ import annotations

from pathlib import Path

import torch
from droptune_trainer.train import loss_sum, setup

from tests.trainer.conftest import FAST, make_run_dir


def saved_by_one_forward(s, row) -> list[torch.Tensor]:
    """Every distinct tensor the autograd graph of one micro-batch keeps, parameters left out."""
    parameters = {p.untyped_storage().data_ptr() for p in s.model.parameters()}
    kept: dict[int, torch.Tensor] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage().data_ptr()
        if storage not in parameters:
            kept.setdefault(storage, tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss, _ = loss_sum(s, row)
    loss.backward()
    return list(kept.values())


def test_a_step_keeps_no_full_vocabulary_logits_no_dropout_copies_and_little_else(
    tmp_path: Path, tiny_model: Path
):
    overrides = {**FAST, "base_model": str(tiny_model), "max_steps": 1}
    s = setup(str(make_run_dir(tmp_path)), overrides=overrides)
    row = max(s.train_rows, key=lambda r: r.tokens)
    config = s.model.config
    vocab, hidden, mlp = config.vocab_size, config.hidden_size, config.intermediate_size
    saved = saved_by_one_forward(s, row)

    # logits: only at the label positions, never one per token of the row
    widest = max((t.numel() for t in saved if t.dim() and t.shape[-1] == vocab), default=0)
    assert widest <= row.label_tokens * vocab < row.tokens * vocab
    # lora_dropout 0: nothing keeps a dropout mask (a bool tensor the size of an input)
    assert not [t for t in saved if t.dtype == torch.bool and t.numel() >= row.tokens * hidden]
    # activations: within docs/training.md's 4 bytes x (11 hidden + 3 mlp) a token and layer,
    # with a margin for the small ones (positions, norms' statistics, attention's)
    activations = sum(
        t.untyped_storage().nbytes() for t in saved if not t.dim() or t.shape[-1] != vocab
    )
    per_token_layer = activations / row.tokens / config.num_hidden_layers
    assert per_token_layer <= 4 * (11 * hidden + 3 * mlp) * 1.25, per_token_layer
