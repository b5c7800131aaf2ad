"""Per-example attention for packed rows: the same logits and gradients as each example run
alone (and as transformers' masked SDPA), fallbacks where it does not apply, and the varlen
kernel's call shapes (its CUDA run is the `gpu` test)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from droptune_trainer import attention
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, Qwen2Config

LENGTHS = [7, 19, 1, 12, 25]


def tiny(sliding_window: int | None = None) -> Any:
    """A random Qwen2 with grouped-query attention (4 query heads share 2 key/value heads)."""
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        use_sliding_window=sliding_window is not None, sliding_window=sliding_window,
        max_window_layers=0,
    )  # fmt: skip
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()


def packed(lengths: list[int]) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 97, (1, sum(lengths)), generator=torch.Generator().manual_seed(1))
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    return {"input_ids": ids, "position_ids": positions}


def alone(model: Any, batch: dict[str, torch.Tensor], lengths: list[int]) -> torch.Tensor:
    """Logits of each example run by itself, side by side."""
    ends = torch.tensor(lengths).cumsum(0).tolist()
    pieces = zip([0, *ends[:-1]], ends, strict=True)
    return torch.cat([model(input_ids=batch["input_ids"][:, a:b]).logits for a, b in pieces], 1)


@pytest.fixture
def per_example_calls(monkeypatch) -> list[int]:
    """How many layer calls took the per-example path (the masked SDPA gives the same logits)."""
    calls: list[int] = []
    per_example = attention._per_example

    def counted(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(1)
        return per_example(*args, **kwargs)

    monkeypatch.setattr(attention, "_per_example", counted)
    return calls


def test_a_packed_row_gives_each_example_its_own_logits(per_example_calls: list[int]):
    model, batch = tiny(), packed(LENGTHS)
    with torch.no_grad():
        expected = alone(model, batch, LENGTHS)
        assert attention.install(model)
        docs = attention.documents(LENGTHS, torch.device("cpu"))
        got = model(**batch, use_cache=False, packed_documents=docs).logits
    assert model.config._attn_implementation == attention.NAME
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert len(per_example_calls) == 2  # both layers


def test_lora_gradients_match_the_masked_sdpa(per_example_calls: list[int]):
    lora = LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM")
    batch, docs = packed(LENGTHS), attention.documents(LENGTHS, torch.device("cpu"))

    def grads(install: bool) -> tuple[float, list[torch.Tensor]]:
        torch.manual_seed(2)
        model = get_peft_model(tiny(), lora).train()
        for name, p in model.named_parameters():
            if "lora_B" in name:  # B starts at zero, which would leave A's gradient zero
                torch.nn.init.normal_(p, std=0.1)
        extra = {}
        if install:
            assert attention.install(model)
            extra = {attention.KWARG: docs}
        out = model(**batch, labels=batch["input_ids"], use_cache=False, **extra)
        out.loss.backward()
        return out.loss.item(), [p.grad for p in model.parameters() if p.requires_grad]

    (masked_loss, masked), (loss, ours) = grads(False), grads(True)
    assert loss == pytest.approx(masked_loss, rel=1e-5) and len(per_example_calls) == 2
    assert len(ours) == len(masked) == 2 * 7 * 2  # A and B of 7 linear layers in 2 layers
    for a, b in zip(ours, masked, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_calls_without_boundaries_use_sdpa_as_before():
    model = tiny()
    batch = {"input_ids": packed([9])["input_ids"], "attention_mask": torch.ones(1, 9).long()}
    with torch.no_grad():
        before = model(**batch).logits
        attention.install(model)
        after = model(**batch).logits
        generated = model.generate(**batch, max_new_tokens=4, do_sample=False)
    torch.testing.assert_close(after, before)
    assert generated.shape == (1, 13)


def test_a_sliding_window_shorter_than_an_example_falls_back_to_the_mask(
    per_example_calls: list[int],
):
    """Within the window the per-example path is exact; past it, the masked SDPA decides."""
    for window, expected_path in [(32, "per"), (10, "mask")]:
        per_example_calls.clear()
        model, batch = tiny(sliding_window=window), packed(LENGTHS)
        with torch.no_grad():
            expected = model(**batch, use_cache=False).logits  # sdpa's own packed mask
            attention.install(model)
            docs = attention.documents(LENGTHS, torch.device("cpu"))
            got = model(**batch, use_cache=False, packed_documents=docs).logits
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        assert ("per" if per_example_calls else "mask") == expected_path


@pytest.mark.parametrize("takes_scale", [True, False], ids=["scale", "no-scale"])
def test_the_varlen_path_hands_the_kernel_the_whole_row(monkeypatch, takes_scale: bool):
    """The kernel's arguments (token-major tensors, cumulative bounds, longest example, causal,
    the layer's scale or, for a kernel that takes none, the query scaled instead) checked with
    a stand-in that computes masked attention from those arguments alone."""
    seen: dict[str, Any] = {}

    def stand_in(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, **causal):
        assert (scale is not None) == takes_scale
        seen.update(shapes=(q.shape, k.shape), bounds=cu_q.tolist(), longest=max_q, **causal)
        example = torch.bucketize(torch.arange(q.shape[0]), cu_q[1:], right=True)
        position = torch.arange(q.shape[0])
        allowed = (example[:, None] == example[None, :]) & (position[:, None] >= position[None])
        out = functional_attention(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1))
        return out(allowed, scale).transpose(0, 1)

    def functional_attention(q, k, v):
        k, v = (x.repeat_interleave(q.shape[0] // x.shape[0], 0) for x in (k, v))
        return lambda mask, scale: torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=scale
        )

    kernel = (stand_in, {"window_size": (-1, 0)}, takes_scale)
    monkeypatch.setattr(attention, "_varlen_kernel", lambda: kernel)
    monkeypatch.setattr(attention, "varlen_works", lambda query, key, value: True)
    model, batch = tiny(), packed(LENGTHS)
    for layer in model.model.layers:  # a scale other than the kernel's default 1/sqrt(dim)
        layer.self_attn.scaling = 0.5
    with torch.no_grad():
        expected = alone(model, batch, LENGTHS)
        attention.install(model)
        docs = attention.documents(LENGTHS, torch.device("cpu"))
        got = model(**batch, use_cache=False, packed_documents=docs).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert seen["shapes"] == (torch.Size([64, 4, 16]), torch.Size([64, 2, 16]))
    assert seen["bounds"] == [0, 7, 26, 27, 39, 64] and seen["longest"] == 25
    assert seen["window_size"] == (-1, 0)


def test_the_varlen_kernel_is_kept_off_the_cpu():
    query = torch.zeros(1, 4, 8, 64, dtype=torch.bfloat16)
    assert not attention.varlen_works(query, query[:, :2], query[:, :2])


@pytest.mark.parametrize("architecture", ["Gemma2Config", "GptOssConfig"])
def test_models_that_do_not_run_on_sdpa_keep_their_attention(architecture: str):
    """Soft-capping (Gemma 2) and attention sinks (gpt-oss): eager attention, left alone."""
    import transformers

    config = getattr(transformers, architecture)(
        vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_config(config)
    assert model.config._attn_implementation == "eager"
    assert not attention.install(model) and not attention.installed(model)
    assert model.config._attn_implementation == "eager"


def test_arguments_that_change_the_scores_send_a_layer_to_the_mask():
    layer = tiny().model.layers[0].self_attn
    docs = attention.documents(LENGTHS, torch.device("cpu"))
    query = torch.zeros(1, 4, sum(LENGTHS), 16)

    def exact(**kwargs: Any) -> bool:
        return attention._per_example_is_exact(layer, query, docs, None, kwargs)

    assert exact(position_ids=torch.zeros(1), sliding_window=None, s_aux=None)
    assert exact(sliding_window=25) and not exact(sliding_window=24)  # the longest example: 25
    assert not exact(s_aux=torch.zeros(4)) and not exact(softcap=50.0)
    assert not attention._per_example_is_exact(layer, query, docs, False, {})  # not causal
    layer.config.attention_chunk_size = 16  # chunked attention (Llama 4) shorter than one
    assert not exact()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_varlen_flash_attention_matches_per_example_sdpa_on_the_gpu():
    model = tiny().to("cuda", torch.bfloat16)
    batch = {k: v.cuda() for k, v in packed(LENGTHS).items()}
    with torch.no_grad():
        expected = alone(model, batch, LENGTHS).float()
        attention.install(model)
        docs = attention.documents(LENGTHS, torch.device("cuda"))
        query = torch.zeros(1, 4, 8, 16, device="cuda", dtype=torch.bfloat16)
        key = query[:, :2]
        assert attention.varlen_works(query, key, key), "the probe refused the varlen kernel"
        got = model(**batch, use_cache=False, packed_documents=docs).logits.float()
    torch.testing.assert_close(got, expected, atol=5e-2, rtol=5e-2)
