"""Attention for packed rows: each example attends to itself only, at the cost of its own length.

Given a packed row's restarting `position_ids`, transformers builds a block-diagonal causal
mask for SDPA. That is correct, but every layer then scores all T² pairs of the row, and no
flash kernel takes a mask. Here the row's example boundaries travel with the forward call
(`Documents`, the `packed_documents` argument) and each layer attends example by example:

- on a GPU that runs flash attention, in bf16/fp16: `torch.nn.attention.varlen.varlen_attn`,
  PyTorch's own variable-length flash kernel, one call per layer for the whole row (checked
  against the per-example path, forward and backward, once per device, dtype and head shape
  before it is used);
- otherwise: SDPA on each example with `is_causal` and no mask, which the CPU and GPU flash
  kernels take.

Calls without boundaries (generation, padded rows) and layers these paths do not cover
(a sliding window or attention chunk shorter than an example, non-causal attention, any
argument that changes the scores) go to transformers' SDPA with the mask it builds as usual,
so the result is always the block-diagonal one. Models that do not run on SDPA (soft-capping,
attention sinks) are left with their own attention.
"""

from __future__ import annotations

import inspect
from functools import cache
from itertools import accumulate, pairwise
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
    bounds = [0, *accumulate(lengths)]
    cumulative = to_device(torch.tensor(bounds, dtype=torch.int32), device)
    return Documents(tuple(bounds), cumulative, max(lengths))


def install(model: Any) -> bool:
    """Make `model` attend per example when a forward call brings `packed_documents`. Only
    models that run transformers' SDPA switch (its fallback is that same SDPA); others (soft-
    capping, attention sinks: models that load as eager) keep their own attention. True when
    the model switched."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    current = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if current not in ("sdpa", NAME):
        log.info(f"packed rows use the model's own {current} attention with its mask")
        return False
    AttentionInterface.register(NAME, packed_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)  # the fallback's mask, as for sdpa
    try:
        model.set_attn_implementation(NAME)
    except (ValueError, NotImplementedError, AttributeError) as error:
        log.warning(f"packed rows use the model's own attention mask: {error}")
    return installed(model)


def installed(model: Any) -> bool:
    return getattr(getattr(model, "config", None), "_attn_implementation", None) == NAME


# Arguments that leave the attention's arithmetic as it is; any other one that is set (soft-
# capping, sinks, a position bias, ...) sends the layer to the masked SDPA.
_NEUTRAL = {KWARG, "sliding_window", "position_ids", "use_cache", "cache_position"}
_NEUTRAL |= {"output_attentions", "output_router_logits"}


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
    if docs is None or not _per_example_is_exact(module, query, docs, is_causal, kwargs):
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
            is_causal=is_causal, **kwargs,
        )  # fmt: skip
    if dropout == 0.0 and varlen_works(query, key, value):
        return _varlen(query, key, value, docs, scaling).unsqueeze(0), None
    return _per_example(query, key, value, docs, scaling, dropout).transpose(1, 2), None


def _per_example_is_exact(
    module: torch.nn.Module,
    query: torch.Tensor,
    docs: Documents,
    is_causal: bool | None,
    kwargs: dict[str, Any],
) -> bool:
    """Whether attending example by example computes what this layer's mask would: one causal
    row of exactly these examples, no window or chunk shorter than an example, nothing else
    that changes the scores."""
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    window = kwargs.get("sliding_window")
    chunk = getattr(getattr(module, "config", None), "attention_chunk_size", None)
    return (
        query.shape[0] == 1
        and query.shape[2] == docs.bounds[-1]
        and bool(causal)
        and (window is None or docs.longest <= window)  # a query sees `window` keys, itself too
        and (chunk is None or docs.longest <= chunk)
        and all(value is None for name, value in kwargs.items() if name not in _NEUTRAL)
    )


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
    kernel, options, takes_scale = _varlen_kernel()
    q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))
    if scaling is not None and not takes_scale:  # the kernel scales by 1/sqrt(dim) itself
        q = q * (scaling * q.shape[-1] ** 0.5)
    elif scaling is not None:
        options = {**options, "scale": scaling}
    return kernel(q, k, v, docs.cumulative, docs.cumulative, docs.longest, docs.longest, **options)


@cache
def _varlen_kernel() -> tuple[Any, dict[str, Any], bool]:
    """PyTorch's varlen flash attention, how this version of it is asked to be causal, and
    whether it takes a scale (2.9's does not)."""
    from torch.nn.attention.varlen import varlen_attn

    parameters = inspect.signature(varlen_attn).parameters
    # a tuple: the kernel recognises causal attention by comparing with (-1, 0)
    options: dict[str, Any] = (
        {"window_size": (-1, 0)} if "window_size" in parameters else {"is_causal": True}
    )
    if "enable_gqa" in parameters:
        options["enable_gqa"] = True
    return varlen_attn, options, "scale" in parameters


_VARLEN_CHECKED: dict[tuple[Any, ...], bool] = {}


def varlen_works(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> bool:
    """Whether the varlen kernel serves these tensors: on CUDA in bf16 or fp16, one head size
    for all three, and matching the per-example path on a probe of the same head counts and
    size (forward and gradients), run once per device, dtype and shape."""
    if query.device.type != "cuda" or query.dtype not in (torch.bfloat16, torch.float16):
        return False
    heads, kv_heads, size = query.shape[1], key.shape[1], query.shape[-1]
    if key.shape[-1] != size or value.shape[-1] != size or size % 8 or size > 256:
        return False
    checked = (str(query.device), query.dtype, heads, kv_heads, size)
    if checked not in _VARLEN_CHECKED:
        _VARLEN_CHECKED[checked] = _probe(query.device, query.dtype, heads, kv_heads, size)
    return _VARLEN_CHECKED[checked]


def _probe(device: torch.device, dtype: torch.dtype, heads: int, kv_heads: int, size: int) -> bool:
    generator = torch.Generator(device=device).manual_seed(0)
    docs = documents([5, 17, 1, 9], device)

    def draw(count: int, last: int = size) -> torch.Tensor:
        shape = (1, count, docs.bounds[-1], last)
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    weights = draw(heads)[0].transpose(0, 1).float()  # (T, heads, size), for the gradients
    with torch.enable_grad():  # the first call may come under no_grad (validation loss)
        query, key, value = (draw(n).requires_grad_() for n in (heads, kv_heads, kv_heads))
        scaling = 0.5 / size**0.5  # not the default, so that passing it on is tested too
        try:
            out = _varlen(query, key, value, docs, scaling)
            grads = torch.autograd.grad((out.float() * weights).sum(), (query, key, value))
        except (ImportError, RuntimeError, TypeError, ValueError) as error:
            log.info(f"varlen flash attention unavailable ({error}); attending per example")
            return False
        expected = _per_example(query, key, value, docs, scaling).transpose(1, 2)[0]
        wanted = torch.autograd.grad((expected.float() * weights).sum(), (query, key, value))
    close = all(
        torch.allclose(a.float(), b.float(), atol=3e-2, rtol=3e-2)
        for a, b in zip((out, *grads), (expected, *wanted), strict=True)
    )
    if not close:
        log.warning("varlen flash attention disagrees with per-example SDPA; not using it")
    return close
