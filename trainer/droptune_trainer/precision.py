"""Adapters in the compute dtype, fp32 master weights in the optimizer.

peft keeps LoRA weights in fp32 on a bf16 model, so that the optimizer's small updates are
not rounded away. The price is paid in every layer: each adapter casts its bf16 input up to
fp32, multiplies in fp32, and the fp32 result is cast back, forward and backward. On an H200
(Qwen2-0.5B shape, LoRA on all 168 linear layers, 8k tokens a step, 176 ms) a profile counted
about 1,260 casts a step, 26 ms of GPU time and 39 us of CPU dispatch each, and the fp32
matmuls another 16 ms of GPU time (`bench/gpu_train_bench.py --profile` counts them).

Here the model computes with bf16 adapters while the optimizer steps fp32 copies
of them (`Masters`). After each micro-batch's backward pass its gradients are added into the
masters' fp32 gradients, so that accumulation sums in fp32 as it does with fp32 adapters;
with several processes the masters' gradients are averaged in fp32 in one all-reduce after
the step's last micro-batch (instead of DDP's bf16 buckets; LoRA's gradients are a few tens
of MB). After the optimizer's step the masters are copied down into the model. When training
ends the model gets the fp32 weights back, so that evaluation, the saved adapter and the
merged model are what they were with fp32 adapters throughout. What changes against fp32
adapters is the adapters' matmuls, in bf16 as under autocast.

Full fine-tuning and QLoRA go the other way (`upcast`): their trainable weights are fp32
and autocast computes in bf16. A fully tuned model is loaded in fp32 for it: its optimizer
steps (about the learning rate, 1e-5) are far below bf16's spacing at a weight's size (about
1e-4 at 0.02), so a bf16 weight would keep most of them from ever landing; when training
ends it is cast to bf16 (`Upcast`), the dtype it is evaluated, saved and served in. QLoRA's
adapters, norms and embeddings are fp32 already (peft's preparation of a 4-bit model), and
without autocast its activations would stay fp32 end to end.

The training loop sees every way through the same calls: `Direct` (the optimizer steps the
model's own weights: fp32 runs, QLoRA, `master_weights: false`), `Upcast` (full tuning in
bf16) or `Masters`; `weights_for` picks, and `compute` is the forward pass's autocast.
A CPU computes fp32, or, when a run sets `cpu_bf16` and the CPU has bf16 dot products,
takes the GPU's paths.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch

from droptune_trainer.cluster import Group


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 itself; emulated bf16 (T4, V100) is slow and has no
    flash attention, so fp32 is used there. CPUs compute fp32 unless a run asks for bf16
    (`cpu_bf16` setting, where `cpu_bf16()` says the hardware has it)."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)


@cache
def cpu_bf16() -> bool:
    """Whether this CPU has bf16 dot products in hardware: AVX512-BF16 (AMD Zen 4 and later,
    Intel Cooper Lake) or AMX (Intel Sapphire Rapids and later). Measured on a 2-core AMD
    EPYC with AVX512-BF16: bf16 matmuls of SmolLM2-135M's shapes at 2.4x fp32's speed, LoRA
    training at 1.45x (292 against 201 tokens/s), 30% less memory over a few steps; but the
    resident set grows by ~30 MB a step (oneDNN keeps what it built for each new shape, and
    packed rows and examples bring new shapes), so it is opt-in. Without these instructions
    bf16 is emulated and slower than fp32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def upcast(method: str, dtype: torch.dtype) -> bool:
    """Whether `method` trains fp32 weights under autocast when the compute dtype is `dtype`."""
    return method in ("full", "qlora") and dtype != torch.float32


def compute(method: str, dtype: torch.dtype, device: torch.device) -> Any:
    """The context a forward pass runs in: autocast to `dtype` where `upcast`."""
    if not upcast(method, dtype):
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def weights_for(
    model: torch.nn.Module, dtype: torch.dtype, method: str = "lora", masters: bool = True
) -> Direct | Masters:
    """`Masters` for LoRA when asked for and the model computes below fp32; `Upcast` for full
    tuning below fp32; else `Direct`."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if method == "full" and dtype != torch.float32:
        return Upcast(trainable, model, dtype)
    if method == "lora" and masters and dtype != torch.float32:
        return Masters.lower(model, dtype)
    return Direct(trainable, model)


def contiguous_head_input(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with its output head fed a contiguous input. On a CPU in bf16, a linear layer
    whose weight needs no gradient multiplies a strided 3-D input (generation's last-position
    slice of the hidden states) by expanding the weight into one copy per row: for SmolLM2's
    49,152 x 576 head and 172 prompts, 9.7 GB and 2 s a token instead of 10 ms (PyTorch 2.13;
    fp32 and contiguous inputs are unaffected). The copy it makes instead is one row a prompt."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if isinstance(head, torch.nn.Module):
        head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))
    return model


@dataclass
class Direct:
    """The optimizer steps the model's trainable weights themselves; DDP averages their
    gradients over the ranks while backward runs."""

    trainable: list[torch.nn.Parameter]
    model: torch.nn.Module

    def wrap(self, group: Group, device: torch.device) -> torch.nn.Module:
        return group.wrap(self.model, device)

    def begin_step(self) -> None:
        pass

    def take_gradients(self) -> None:
        pass  # they accumulate in the weights' own .grad

    def end_step(self, group: Group) -> None:
        pass

    def after_step(self, optimizer: Any) -> None:
        optimizer.zero_grad(set_to_none=True)

    def state(self) -> dict[str, torch.Tensor]:
        """The trainable weights by name (what a checkpoint keeps)."""
        return cpu_copies((n, p) for n, p in self.model.named_parameters() if p.requires_grad)

    def load(self, state: dict[str, torch.Tensor]) -> None:
        """The trainable weights from a checkpoint's `state()`."""
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value.to(params[name].device, params[name].dtype))

    def restore(self) -> None:
        pass


@dataclass
class Upcast(Direct):
    """Full tuning: fp32 weights stepped directly, computed in `dtype` under autocast, and
    cast to `dtype` when training ends."""

    dtype: torch.dtype = torch.bfloat16

    def restore(self) -> None:
        self.model.to(self.dtype)


@dataclass
class Masters:
    """The model's trainable `params` (in the compute dtype) and their fp32 `masters`."""

    names: list[str]
    params: list[torch.nn.Parameter]
    masters: list[torch.Tensor]
    model: torch.nn.Module

    reached: list[bool] = field(default_factory=list)  # which weights this step's rows reached

    @classmethod
    def lower(cls, model: torch.nn.Module, dtype: torch.dtype) -> Masters:
        """Keep fp32 copies of `model`'s trainable weights and turn the weights to `dtype`."""
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        masters = []
        for _, param in named:
            master = param.detach().float().clone().requires_grad_()
            master.grad = torch.zeros_like(master)
            masters.append(master)
            param.data = param.data.to(dtype)
        return cls([n for n, _ in named], [p for _, p in named], masters, model)

    @property
    def trainable(self) -> list[torch.Tensor]:
        """What the optimizer steps."""
        return self.masters

    def wrap(self, group: Group, device: torch.device) -> torch.nn.Module:
        """The model itself, with rank 0's weights on every rank (as DDP would give them):
        the masters' gradients are averaged over the ranks in `end_step`, in fp32."""
        group.broadcast(self.masters)
        self.give_weights()
        return self.model

    def begin_step(self) -> None:
        """Zero the masters' gradients for a new optimizer step."""
        for master in self.masters:
            if master.grad is None:  # a weight no row reached last step
                master.grad = torch.zeros_like(master)
        torch._foreach_zero_([m.grad for m in self.masters])
        self.reached = [False] * len(self.masters)

    @torch.no_grad()
    def take_gradients(self) -> None:
        """The model's gradients, added into the masters' in fp32; the model's are cleared."""
        arrived = [i for i, p in enumerate(self.params) if p.grad is not None]
        grads = [self.params[i].grad for i in arrived]
        torch._foreach_add_([self.masters[i].grad for i in arrived], grads)
        for i in arrived:
            self.reached[i] = True
            self.params[i].grad = None

    def end_step(self, group: Group) -> None:
        """Before the optimizer's step: the gradients averaged over the ranks (each rank's are
        scaled by the world size, as under DDP), or, in one process, no gradient at all for a
        weight no row of the step reached, so that the optimizer leaves it alone."""
        if group.world > 1:
            group.average([m.grad for m in self.masters])
            return
        for master, reached in zip(self.masters, self.reached, strict=True):
            if not reached:
                master.grad = None

    def after_step(self, optimizer: Any) -> None:
        """The masters, stepped, copied down into the model (their gradients are zeroed when
        the next step begins)."""
        self.give_weights()

    @torch.no_grad()
    def give_weights(self) -> None:
        torch._foreach_copy_(self.params, self.masters)

    def state(self) -> dict[str, torch.Tensor]:
        """The trainable weights by name, at full precision (what a checkpoint keeps)."""
        return cpu_copies(zip(self.names, self.masters, strict=True))

    @torch.no_grad()
    def load(self, state: dict[str, torch.Tensor]) -> None:
        """Masters and model from a checkpoint's `state()`."""
        for name, master in zip(self.names, self.masters, strict=True):
            master.copy_(state[name])
        self.give_weights()

    def restore(self) -> None:
        """The model's weights in fp32 again, holding the masters' values."""
        for param, master in zip(self.params, self.masters, strict=True):
            param.data = master.detach()
            param.grad = None


def cpu_copies(named: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in named}
