"""CLUSTER_SPEC read as Vertex AI writes it, torchrun's command line, and two machines on one
host (gloo on CPU) training exactly as one process with twice the gradient accumulation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from droptune_trainer.cluster import Group, Topology, launch_command, topology
from droptune_trainer.train import run

from droptune.errors import ConfigError
from droptune.local.storage_emulator import free_port
from tests.trainer.conftest import FAST


def spec(task: str, index: int = 0, workers: int = 2) -> dict[str, str]:
    cluster = {
        "workerpool0": ["primary-0:2222"],
        "workerpool1": [f"worker-{i}:2222" for i in range(workers)],
    }
    return {
        "CLUSTER_SPEC": json.dumps(
            {"cluster": cluster, "environment": "cloud", "task": {"type": task, "index": index}}
        )
    }


def test_without_a_cluster_one_machine_runs_a_process_per_gpu() -> None:
    assert topology({}, gpus=0) == Topology(1, 0, "127.0.0.1", 29500, 1)
    assert topology({}, gpus=8).world_size == 8
    assert topology({"DROPTUNE_PROCESSES_PER_NODE": "2"}, gpus=0).world_size == 2


def test_the_primary_is_node_zero_and_workers_follow_it() -> None:
    primary = topology(spec("workerpool0"), gpus=4)
    assert primary == Topology(3, 0, "primary-0", 2222, 4)
    assert primary.world_size == 12
    assert topology(spec("workerpool1", 1), gpus=4).node_rank == 2


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CLUSTER_SPEC": "{not json"}, "not readable"),
        ({"CLUSTER_SPEC": '{"cluster": {}, "task": {"type": "workerpool0"}}'}, "not readable"),
        (spec("workerpool3"), "does not train"),
        (spec("workerpool1", 5), "is not in the cluster"),
        (
            {"CLUSTER_SPEC": json.dumps({"cluster": {"workerpool0": ["a", "b"]}, "task": {"type": "workerpool0"}})},
            "exactly one address",
        ),
        (
            {"CLUSTER_SPEC": json.dumps({"cluster": {"workerpool0": ["nohost"]}, "task": {"type": "workerpool0"}})},
            "is not host:port",
        ),
        ({"DROPTUNE_PROCESSES_PER_NODE": "0"}, "at least 1"),
    ],
)  # fmt: skip
def test_a_cluster_spec_that_cannot_train_says_why(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        topology(env, gpus=1)


def test_torchrun_gets_the_whole_topology() -> None:
    command = launch_command(Topology(2, 1, "primary-0", 2222, 4), ["train", "--run-dir", "R"])
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert {
        "--nnodes=2",
        "--node-rank=1",
        "--nproc-per-node=4",
        "--master-addr=primary-0",
        "--master-port=2222",
    } <= set(command)
    assert command[-5:] == ["-m", "droptune_trainer", "train", "--run-dir", "R"]


def test_a_lone_process_sums_nothing() -> None:
    import torch

    assert Group().sum([1.5, 2.0], torch.device("cpu")) == [1.5, 2.0]


AVERAGE_AND_BROADCAST = """
import json, os, torch
from droptune_trainer.cluster import join, leave
group = join(os.environ)
rank = float(group.rank)
grads = [torch.full((2, 3), rank + 1), torch.full((4,), 10 * rank)]
weights = [torch.full((3,), rank), torch.full((1, 2), rank - 5)]
group.average(grads)
group.broadcast(weights)
with open(os.path.join(os.environ["OUT"], f"{group.rank}.json"), "w") as out:
    json.dump([t.flatten().tolist() for t in grads + weights], out)
leave(group)
"""


def test_ranks_average_tensors_in_one_reduce_and_take_rank_zeros_weights(tmp_path: Path) -> None:
    """What bf16 adapters with fp32 masters use instead of DDP (two processes, gloo)."""
    script = tmp_path / "ranks.py"
    script.write_text(AVERAGE_AND_BROADCAST)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2"]
    command += [f"--master-port={free_port()}", str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OUT": str(tmp_path)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
    for grads_a, grads_b, weights_a, weights_b in ranks:
        assert grads_a == [1.5] * 6 and grads_b == [5.0] * 4  # (1 + 2) / 2, (0 + 10) / 2
        assert weights_a == [0.0] * 3 and weights_b == [-5.0] * 2  # rank 0's


@pytest.mark.slow
def test_two_machines_train_as_one_process_with_twice_the_accumulation(run_dir: Path) -> None:
    settings = {**FAST, "max_steps": 3, "eval_every": 3, "lora_dropout": 0.0}
    settings["evaluate_at_end"] = False
    parallel = run_dir / "parallel"
    shutil.copytree(run_dir / "data", parallel / "data")
    shutil.copy(run_dir / "run.json", parallel / "run.json")

    alone = run(str(run_dir), overrides={**settings, "gradient_accumulation": 2})

    port = free_port()
    cluster = {"workerpool0": [f"127.0.0.1:{port}"], "workerpool1": [f"127.0.0.1:{port}"]}
    args = [sys.executable, "-m", "droptune_trainer", "train", "--run-dir", str(parallel)]
    args += [f"--set={k}={v}" for k, v in settings.items()]
    jobs = []
    for pool in ("workerpool0", "workerpool1"):
        task = {"cluster": cluster, "environment": "cloud", "task": {"type": pool, "index": 0}}
        env = {**os.environ, "CLUSTER_SPEC": json.dumps(task), "OMP_NUM_THREADS": "1"}
        jobs.append(subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True))
    for job in jobs:
        _, err = job.communicate(timeout=600)
        assert job.returncode == 0, err[-3000:]

    together = json.loads((parallel / "training" / "metrics.json").read_text())
    assert together["processes"] == 2 and alone["processes"] == 1
    assert together["steps"] == alone["steps"] == 3
    assert together["tokens"] == alone["tokens"]
    for (step, a), (step2, b) in zip(alone["train_loss"], together["train_loss"], strict=True):
        assert step == step2 and b == pytest.approx(a, rel=1e-4)
    assert together["eval_loss"][-1][1] == pytest.approx(alone["eval_loss"][-1][1], rel=1e-4)
    assert (parallel / "model" / "merged" / "config.json").is_file()
