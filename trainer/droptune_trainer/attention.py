"""Attention for packed rows: each example attends to itself only, at the cost of its own length.

Given a packed row's restarting `position_ids`, transformers builds a block-diagonal causal
mask for SDPA. That is correct, but every layer then scores all T² pairs of the row, and no
flash kernel takes a mask. Here the row's example boundaries travel with the forward call
(`Documents`, the `packed_documents` argument) and each layer attends example by example:

- on a GPU that runs flash attention, in bf16/fp16: `torch.nn.attention.varlen.varlen_attn`,
  PyTorch's own variable-length flash kernel, one call per layer for the whole row (checked
  once per device against the per-example path, forward and backward, before it is used);
- otherwise: SDPA on each example with `is_causal` and no mask, which the CPU and GPU flash
  kernels take.

Calls without boundaries (generation, padded rows) and layers these paths do not cover
(a sliding window shorter than an example, soft-capping, a position bias, non-causal
attention) go to transformers' SDPA with the mask it builds as usual, so the result is
always the block-diagonal one.
"""

from __future__ import annotations

import inspect
from itertools import pairwise
from typing import Any, NamedTuple

import torch
from torch.nn import functional

from droptune.log import get_logger
from droptune_trainer.data import to_device

log = get_logger("droptune.trainer")

NAME = "droptune_packed"  # the attention implementation's name in transformers' registry
KWARG = "packed_documents"  # the forward argument that carries a row's boundaries


class Documents(NamedTuple):
    """Where each example of a packed row starts and ends."""

    bounds: tuple[int, ...]  # 0, end of the first example, ..., the row's length
    cumulative: torch.Tensor  # the same, int32 on the model's device (the varlen kernel's)
    longest: int


def documents(lengths: list[int], device: torch.device) -> Documents:
    bounds = [0]
    for n in lengths:
        bounds.append(bounds[-1] + n)
    cumulative = to_device(torch.tensor(bounds, dtype=torch.int32), device)
    return Documents(tuple(bounds), cumulative, max(lengths))


def install(model: Any) -> bool:
    """Make `model` attend per example when a forward call brings `packed_documents`; False
    (and the model as it was) for architectures whose attention transformers cannot swap."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(NAME, packed_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the fallback's mask, as for sdpa
    try:
        model.set_attn_implementation(NAME)
    except (ValueError, NotImplementedError, AttributeError) as error:
        log.warning(f"packed rows use the model's own attention mask: {error}")
        return False
    return True


def packed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention interface: query (1, heads, T, dim), key and value (1, kv
    heads, T, dim) -> (1, T, heads, dim)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    docs: Documents | None = kwargs.get(KWARG)
    window = kwargs.get("sliding_window")
    if (
        docs is None
        or query.shape[0] != 1
        or query.shape[2] != docs.bounds[-1]
        or not (is_causal if is_causal is not None else getattr(module, "is_causal", True))
        or (window is not None and docs.longest > window)
        or kwargs.get("softcap") is not None
        or kwargs.get("position_bias") is not None
    ):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
            is_causal=is_causal, **kwargs,
        )  # fmt: skip
    if dropout == 0.0 and varlen_works(query):
        return _varlen(query, key, value, docs, scaling).unsqueeze(0), None
    return _per_example(query, key, value, docs, scaling, dropout).transpose(1, 2), None


def _per_example(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    docs: Documents,
    scaling: float | None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """(1, heads, T, dim), SDPA on each example's own slice."""
    options = {"dropout_p": dropout, "is_causal": True, "scale": scaling}
    options["enable_gqa"] = query.shape[1] != key.shape[1]
    parts = [
        functional.scaled_dot_product_attention(
            query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], **options
        )
        for a, b in pairwise(docs.bounds)
    ]
    return torch.cat(parts, dim=2)


def _varlen(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    docs: Documents,
    scaling: float | None,
) -> torch.Tensor:
    """(T, heads, dim), the whole row in one variable-length flash attention call."""
    kernel, causal = _varlen_kernel()
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))
    return kernel(
        q, k, v, docs.cumulative, docs.cumulative, docs.longest, docs.longest, scale=scaling,
        **causal,
    )  # fmt: skip


def _varlen_kernel() -> tuple[Any, dict[str, Any]]:
    """PyTorch's varlen flash attention and how this version asks it to be causal."""
    from torch.nn.attention.varlen import varlen_attn

    parameters = inspect.signature(varlen_attn).parameters
    causal: dict[str, Any] = (
        {"window_size": (-1, 0)} if "window_size" in parameters else {"is_causal": True}
    )
    if "enable_gqa" in parameters:
        causal["enable_gqa"] = True
    return varlen_attn, causal


_VARLEN_CHECKED: dict[tuple[str, torch.dtype], bool] = {}


def varlen_works(query: torch.Tensor) -> bool:
    """Whether the varlen kernel serves tensors like `query`: on CUDA in bf16 or fp16, with a
    head size it takes, and matching the per-example path on a small probe (forward and
    gradients), run once per device and dtype."""
    if query.device.type != "cuda" or query.dtype not in (torch.bfloat16, torch.float16):
        return False
    if query.shape[-1] % 8 or query.shape[-1] > 256:
        return False
    key = (str(query.device), query.dtype)
    if key not in _VARLEN_CHECKED:
        _VARLEN_CHECKED[key] = _probe(query.device, query.dtype)
    return _VARLEN_CHECKED[key]


def _probe(device: torch.device, dtype: torch.dtype) -> bool:
    generator = torch.Generator(device=device).manual_seed(0)
    docs = documents([5, 17, 1, 9], device)

    def draw(heads: int) -> torch.Tensor:
        shape = (1, heads, docs.bounds[-1], 64)
        x = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        return x.requires_grad_()

    query, key, value = draw(4), draw(2), draw(2)
    weights = torch.randn(docs.bounds[-1], 4, 64, generator=generator, device=device)
    try:
        out = _varlen(query, key, value, docs, None)
        grads = torch.autograd.grad((out.float() * weights).sum(), (query, key, value))
    except (ImportError, RuntimeError, TypeError, ValueError) as error:
        log.info(f"varlen flash attention unavailable ({error}); attending per example")
        return False
    expected = _per_example(query, key, value, docs, None).transpose(1, 2)[0]
    wanted = torch.autograd.grad((expected.float() * weights).sum(), (query, key, value))
    close = all(
        torch.allclose(a.float(), b.float(), atol=3e-2, rtol=3e-2)
        for a, b in zip((out, *grads), (expected, *wanted), strict=True)
    )
    if not close:
        log.warning("varlen flash attention disagrees with per-example SDPA; not using it")
    return close
