"""bf16 adapters with fp32 master weights: updates too small for bf16 are kept, checkpoints
hold the fp32 weights and a resumed run ends where an uninterrupted one does, and training
hands the model back in fp32."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from droptune_trainer import checkpoint
from droptune_trainer.cluster import Group
from droptune_trainer.config import TrainConfig
from droptune_trainer.precision import Direct, Masters, cpu_bf16, native_bf16, weights_for
from droptune_trainer.train import device_and_dtype, setup, train

from droptune.local.storage_emulator import free_port
from tests.trainer.conftest import FAST, make_run_dir


def small_model() -> torch.nn.Module:
    """A frozen bf16 weight (a LoRA base's) before fp32 trainable ones (the adapters)."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(1.0)
    model[0].weight.requires_grad_(False)
    model[0].weight.data = model[0].weight.data.to(torch.bfloat16)
    return model


def test_updates_below_bf16s_resolution_accumulate_in_the_masters():
    model, plain = small_model(), small_model().to(torch.bfloat16)
    masters = Masters.lower(model, torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {m.dtype for m in masters.masters} == {torch.float32}
    assert masters.names == ["0.bias", "1.weight", "1.bias"]
    sgd = torch.optim.SGD(masters.masters, lr=1e-4)
    sgd_plain = torch.optim.SGD([p for p in plain.parameters() if p.requires_grad], lr=1e-4)
    x = torch.ones(1, 4, dtype=torch.bfloat16)
    for _ in range(40):
        masters.begin_step()
        model(x).sum().backward()
        masters.take_gradients()
        assert all(p.grad is None for p in masters.params)
        masters.end_step(Group())
        sgd.step()
        masters.after_step(sgd)
        plain(x).sum().backward()
        sgd_plain.step()
        sgd_plain.zero_grad()
    # A step of ~5e-4 is under half of bf16's spacing at 1.0 (2^-8): lost every time in bf16
    # weights, kept in the masters, and the model follows them once they add up.
    assert plain[1].bias.item() == 1.0
    assert masters.masters[2].item() == pytest.approx(1.0 - 40 * 1e-4, rel=1e-5)
    assert model[1].bias.item() == pytest.approx(0.996, abs=2**-8)
    masters.restore()
    assert model[1].bias.dtype == torch.float32
    assert model[1].bias.item() == masters.masters[2].item()
    assert model[0].weight.dtype == torch.bfloat16  # frozen weights are left as they are


def test_masters_are_kept_for_a_model_that_computes_below_fp32_when_asked_for():
    assert isinstance(weights_for(small_model(), torch.bfloat16, masters=True), Masters)
    assert isinstance(weights_for(small_model(), torch.bfloat16, masters=False), Direct)
    direct = weights_for(small_model(), torch.float32, masters=True)  # nothing to gain
    assert isinstance(direct, Direct) and len(direct.trainable) == 3


def test_micro_batches_gradients_add_up_in_fp32():
    model = small_model()
    masters = Masters.lower(model, torch.bfloat16)
    masters.begin_step()
    for scale in (1.0, 2**-10):  # the second is under half of bf16's spacing at 1.0
        x = torch.full((1, 4), scale, dtype=torch.bfloat16)
        model[1](x).sum().backward()  # the last layer's weight gradient is its input
        masters.take_gradients()
    masters.end_step(Group())
    assert masters.masters[1].grad.flatten().tolist() == [1 + 2**-10] * 4
    assert (torch.tensor(1.0, dtype=torch.bfloat16) + 2**-10).item() == 1.0  # what bf16 sums


def test_a_weight_no_row_reached_is_left_alone_by_the_optimizer():
    model = small_model()
    masters = Masters.lower(model, torch.bfloat16)
    adam = torch.optim.AdamW(masters.masters, lr=0.1)
    for step in range(2):
        masters.begin_step()
        out = model(torch.ones(1, 4, dtype=torch.bfloat16))
        (out.sum() if step == 0 else out.sum() * 0 + model[1].bias.sum()).backward()
        if step == 1:  # only the bias was reached; the first layer's bias was not
            model[0].bias.grad = None
            model[1].weight.grad = None
        masters.take_gradients()
        masters.end_step(Group())
        before = [m.detach().clone() for m in masters.masters]
        adam.step()
        masters.after_step(adam)
    after = masters.masters
    assert torch.equal(after[0], before[0]) and torch.equal(after[1], before[1])
    assert not torch.equal(after[2], before[2])


def test_a_checkpoints_state_loads_masters_and_model_alike():
    model = small_model()
    masters = Masters.lower(model, torch.bfloat16)
    state = {name: torch.full_like(m, 0.1234567) for name, m in masters.state().items()}
    masters.load(state)
    assert all(m.flatten()[0].item() == pytest.approx(0.1234567) for m in masters.masters)
    assert model[1].bias.item() == pytest.approx(0.1234567, abs=1e-3)  # rounded to bf16
    assert {t.dtype for t in masters.state().values()} == {torch.float32}


TWO_RANKS = """
import json, os, torch
from droptune_trainer.cluster import join, leave
from droptune_trainer.precision import Masters
group = join(os.environ)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
model[0].weight.requires_grad_(False)
model[0].weight.data = model[0].weight.data.to(torch.bfloat16)
masters = Masters.lower(model, torch.bfloat16)
adam = torch.optim.AdamW(masters.masters, lr=0.05)
masters.wrap(group, torch.device("cpu"))
inputs = [torch.randn(4, 8, generator=torch.Generator().manual_seed(seed)) for seed in (1, 2)]
mine = inputs[group.rank : group.rank + 1] if group.world > 1 else inputs  # rank r: its row
for step in range(3):
    masters.begin_step()
    for x in mine:  # alone: both rows, as gradient accumulation
        loss = model(x.to(torch.bfloat16)).float().pow(2).sum()
        (loss * group.world / 2).backward()
        masters.take_gradients()
    masters.end_step(group)
    adam.step()
    masters.after_step(adam)
name = f"{group.rank}.json" if group.world > 1 else "alone.json"
with open(os.path.join(os.environ["OUT"], name), "w") as out:
    json.dump([m.flatten().tolist() for m in masters.masters], out)
leave(group)
"""


def test_two_ranks_with_masters_train_as_one_process_with_twice_the_accumulation(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(TWO_RANKS)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OUT": str(tmp_path)}
    alone = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    assert alone.returncode == 0, alone.stderr[-3000:]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2"]
    command += [f"--master-port={free_port()}", str(script)]
    together = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert together.returncode == 0, together.stderr[-3000:]
    weights = [json.loads((tmp_path / f"{n}.json").read_text()) for n in ("alone", 0, 1)]
    assert weights[0] == weights[1] == weights[2]  # to the last bit


def bf16_setup(run_dir: Path, steps: int):
    """The GPU's configuration on a CPU: the base in bf16, peft's adapters in fp32."""
    s = setup(str(run_dir), overrides={**FAST, "max_steps": steps, "checkpoint_every": 2})
    s.model.to(torch.bfloat16)
    for param in s.model.parameters():
        if param.requires_grad:
            param.data = param.data.float()
    s.dtype = torch.bfloat16
    return s


@pytest.mark.slow
def test_a_bf16_run_resumed_from_a_checkpoint_ends_where_an_uninterrupted_one_does(
    tmp_path: Path, pulled_model: Path
):
    whole = make_run_dir(tmp_path / "whole")
    s = bf16_setup(whole, 4)
    seen = set()  # the dtype an adapter computes with during training
    lora = next(m for n, m in s.model.named_modules() if n.endswith("q_proj.lora_A.default"))
    hook = lora.register_forward_pre_hook(lambda module, _: seen.add(module.weight.dtype))
    history = train(s)
    hook.remove()
    assert seen == {torch.bfloat16}  # the masters were in use
    losses = [loss for _, loss in history.train_loss]
    assert losses[-1] < losses[0]
    ended = {n: p.detach().clone() for n, p in s.model.named_parameters() if p.requires_grad}
    assert {p.dtype for p in ended.values()} == {torch.float32}  # handed back in fp32
    saved = checkpoint.load_latest(whole / "training" / "checkpoints")
    assert {t.dtype for t in saved["model"].values()} == {torch.float32}
    for name, weight in saved["model"].items():  # the masters, not their bf16 copies
        torch.testing.assert_close(weight, ended[name], rtol=0, atol=0)

    resumed = make_run_dir(tmp_path / "resumed")
    checkpoints = resumed / "training" / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copytree(whole / "training" / "checkpoints" / "step-00000002", checkpoints / "x")
    (checkpoints / "x").rename(checkpoints / "step-00000002")
    (checkpoints / checkpoint.LATEST).write_text("step-00000002\n")
    r = bf16_setup(resumed, 4)
    again = train(r)
    assert again.resumed_from == 2
    for name, param in r.model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param, ended[name], rtol=0, atol=0, msg=name)


def test_full_tuning_in_bf16_steps_fp32_weights_under_autocast(
    tmp_path: Path, tiny_model: Path, monkeypatch
):
    """The GPU's full-tuning configuration on a CPU. Steps of 1e-5 are far below bf16's
    spacing at these weights' size, so a bf16 weight would not move at all; the fp32 weights
    take every step, while the layers compute in bf16."""
    from droptune_trainer import precision

    run_dir = make_run_dir(tmp_path)
    overrides = {**FAST, "base_model": str(tiny_model), "method": "full", "max_steps": 2}
    s = setup(str(run_dir), overrides={**overrides, "learning_rate": 1e-5})
    assert {p.dtype for p in s.model.parameters()} == {torch.float32}
    s.dtype = torch.bfloat16  # what a GPU computes in
    name = "model.layers.0.mlp.up_proj.weight"
    before = s.model.get_parameter(name).detach().clone()
    trained = {}
    cast_down = precision.Upcast.restore

    def keep_then_cast(self) -> None:
        trained["fp32"] = self.model.get_parameter(name).detach().clone()
        cast_down(self)

    monkeypatch.setattr(precision.Upcast, "restore", keep_then_cast)
    computed = set()
    layer = s.model.get_submodule("model.layers.0.mlp.up_proj")
    hook = layer.register_forward_hook(lambda module, args, out: computed.add(out.dtype))
    history = train(s)
    hook.remove()
    assert computed == {torch.bfloat16} and not history.master_weights
    assert {p.dtype for p in s.model.parameters()} == {torch.bfloat16}  # cast down at the end
    step = trained["fp32"] - before
    assert (step != 0).float().mean() > 0.9  # every weight moved, by about the learning rate
    landed = before.bfloat16() + step.bfloat16()  # the same steps taken in bf16
    assert (landed == before.bfloat16()).float().mean() > 0.9  # would mostly have been lost


def test_epochs_run_on_through_epoch_boundaries_and_stop_at_the_count(
    tmp_path: Path, tiny_model: Path
):
    """Steps take rows across epoch boundaries, so 2 epochs of R rows at 3 rows a step are
    ceil(2R / 3) steps, not 2 x ceil(R / 3) (which ran part of a third epoch)."""
    overrides = {**FAST, "base_model": str(tiny_model), "epochs": 2, "gradient_accumulation": 3}
    s = setup(str(make_run_dir(tmp_path)), overrides={**overrides, "eval_every": 100})
    rows = len(s.train_rows)
    assert rows % 3  # else both counts agree
    history = train(s)
    assert history.train_loss[-1][0] == -(-2 * rows // 3)


def test_a_cpu_computes_in_bf16_only_when_it_has_the_hardware_and_the_run_asks():
    assert not native_bf16(torch.device("cpu"))
    if torch.cuda.is_available():
        return
    assert device_and_dtype(TrainConfig())[1] == torch.float32
    asked = device_and_dtype(TrainConfig(cpu_bf16=True))[1]
    assert asked == (torch.bfloat16 if cpu_bf16() else torch.float32)
    assert device_and_dtype(TrainConfig(cpu_bf16=True, bf16=False))[1] == torch.float32


@pytest.mark.skipif(not cpu_bf16(), reason="needs a CPU with bf16 dot products (AVX512-BF16, AMX)")
def test_a_cpu_with_bf16_trains_bf16_adapters_with_fp32_masters(tmp_path: Path, tiny_model: Path):
    overrides = {**FAST, "bf16": True, "cpu_bf16": True, "base_model": str(tiny_model)}
    s = setup(
        str(make_run_dir(tmp_path)), overrides={**overrides, "max_steps": 8, "learning_rate": 1e-2}
    )
    assert s.dtype == torch.bfloat16
    history = train(s)
    losses = [loss for _, loss in history.train_loss]
    assert history.master_weights and losses[-1] < losses[0]
    trainable = {p.dtype for p in s.model.parameters() if p.requires_grad}
    assert trainable == {torch.float32}  # the masters' values, as peft's adapters would be


def test_the_output_head_gets_a_contiguous_input():
    """A strided bf16 input to a frozen head made PyTorch copy the head once per row."""
    model = torch.nn.Module()
    head = torch.nn.Linear(4, 6, bias=False).requires_grad_(False)
    model.get_output_embeddings = lambda: head
    seen = []
    head.register_forward_hook(lambda module, args, out: seen.append(args[0].is_contiguous()))
    from droptune_trainer.precision import contiguous_head_input

    contiguous_head_input(model)
    head(torch.randn(3, 5, 4)[:, -1:, :])
    assert seen == [True]
