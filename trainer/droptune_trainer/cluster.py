"""Data-parallel training across GPUs and machines: Vertex AI's `CLUSTER_SPEC` to torchrun.

Vertex AI starts one container per replica and tells each, in the JSON `CLUSTER_SPEC`, the
address of every replica and which one it is:

    {"cluster": {"workerpool0": ["primary:2222"], "workerpool1": ["w-0:2222", "w-1:2222"]},
     "task": {"type": "workerpool1", "index": 0}, "environment": "cloud"}

`workerpool0` is the primary (one replica), `workerpool1` the other training machines;
pools 2 and 3 (reduction servers, evaluators) take no part in data-parallel training. Every
machine runs one training process per GPU under torchrun (`torch.distributed.run`), with the
primary's address as the rendezvous, so that rank 0 is the primary's first GPU. torchrun,
rather than our own process spawning, because it sets each process's `RANK`, `LOCAL_RANK`
and `WORLD_SIZE`, forwards signals, and ends the whole group when one process fails.

`DROPTUNE_PROCESSES_PER_NODE` overrides the processes per machine (default: its GPUs, or one
on a machine without): several CPU processes on one machine exercise the same code paths.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import torch

from droptune.errors import ConfigError

PRIMARY, WORKERS = "workerpool0", "workerpool1"
PROCESSES_ENV = "DROPTUNE_PROCESSES_PER_NODE"
COLLECTIVE_TIMEOUT = timedelta(hours=1)  # how long a rank waits for the others


@dataclass(frozen=True)
class Topology:
    """Where this machine stands in the training cluster."""

    nodes: int  # machines: the primary and the workers
    node_rank: int  # 0 for the primary, 1 + index for workerpool1's replicas
    master_addr: str  # the primary's host: the rendezvous
    master_port: int
    processes_per_node: int

    @property
    def world_size(self) -> int:
        return self.nodes * self.processes_per_node


def _spec_error(problem: str) -> ConfigError:
    return ConfigError(
        f"CLUSTER_SPEC: {problem}; Vertex AI sets it as JSON with cluster.workerpool0 "
        '(["host:port"]) and task.type/task.index'
    )


def topology(env: Mapping[str, str], gpus: int) -> Topology:
    """This machine's place from `CLUSTER_SPEC` (one machine when it is unset) and `gpus`."""
    processes = _processes(env, gpus)
    raw = env.get("CLUSTER_SPEC")
    if not raw:
        return Topology(1, 0, "127.0.0.1", 29500, processes)
    try:
        spec = json.loads(raw)
        cluster, task = spec["cluster"], spec["task"]
        primary = cluster[PRIMARY]
        pool, index = task["type"], int(task.get("index", 0))
    except (ValueError, TypeError, KeyError) as exc:
        raise _spec_error(f"not readable ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(primary, list) or len(primary) != 1:
        raise _spec_error(f"{PRIMARY} must list exactly one address; got {primary!r}")
    if pool not in (PRIMARY, WORKERS):
        raise _spec_error(
            f"task.type {pool!r} does not train: data-parallel training runs on "
            f"{PRIMARY} and {WORKERS} only (no reduction servers or evaluators)"
        )
    workers = cluster.get(WORKERS, [])
    host, _, port = str(primary[0]).rpartition(":")
    if not host or not port.isdigit():
        raise _spec_error(f"{PRIMARY} address {primary[0]!r} is not host:port")
    node_rank = 0 if pool == PRIMARY else 1 + index
    nodes = 1 + len(workers)
    if node_rank >= nodes:
        raise _spec_error(f"task {pool}[{index}] is not in the cluster ({len(workers)} workers)")
    return Topology(nodes, node_rank, host, int(port), processes)


def _processes(env: Mapping[str, str], gpus: int) -> int:
    value = env.get(PROCESSES_ENV)
    if not value:
        return max(gpus, 1)
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{PROCESSES_ENV} must be a whole number of at least 1; got {value!r}")
    return int(value)


def launched(env: Mapping[str, str]) -> bool:
    """Whether this process is one of torchrun's (it sets LOCAL_RANK)."""
    return "LOCAL_RANK" in env


def launch_command(topo: Topology, argv: Sequence[str]) -> list[str]:
    """torchrun starting this machine's processes, each running `python -m droptune_trainer
    <argv>`. Static rendezvous at the primary: every machine knows all it needs."""
    return [
        sys.executable, "-m", "torch.distributed.run",
        f"--nnodes={topo.nodes}",
        f"--node-rank={topo.node_rank}",
        f"--nproc-per-node={topo.processes_per_node}",
        f"--master-addr={topo.master_addr}",
        f"--master-port={topo.master_port}",
        "-m", "droptune_trainer", *argv,
    ]  # fmt: skip


def relaunch_if_parallel(argv: Sequence[str]) -> None:
    """Replace this process with torchrun when the cluster has more than one process to
    run; return (and train in this process) when it has one, or when already launched."""
    if launched(os.environ):
        return
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    topo = topology(os.environ, gpus)
    if topo.world_size == 1:
        return
    command = launch_command(topo, argv)
    sys.stderr.flush()
    os.execv(command[0], command)


@dataclass(frozen=True)
class Group:
    """This process among the training processes: rank 0 alone checkpoints, logs the loss
    curve, evaluates and saves; every rank trains on its share of each step's rows."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def primary(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """`model` for data parallelism (DDP: gradients averaged over the ranks while
        backward runs), or `model` itself in a single process."""
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """Element-wise sums over all ranks (NCCL needs the tensor on the GPU)."""
        if self.world == 1:
            return list(values)
        import torch.distributed as dist

        total = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return total.tolist()

    def average(self, tensors: list[torch.Tensor]) -> None:
        """In place: each tensor averaged over all ranks, in one all-reduce of them all."""
        import torch.distributed as dist

        def reduce(flat: torch.Tensor) -> None:
            dist.all_reduce(flat)
            flat /= self.world

        self._collective(tensors, reduce)

    def broadcast(self, tensors: list[torch.Tensor]) -> None:
        """In place: rank 0's values of the tensors on every rank."""
        import torch.distributed as dist

        self._collective(tensors, partial(dist.broadcast, src=0))

    def _collective(
        self, tensors: list[torch.Tensor], operation: Callable[[torch.Tensor], object]
    ) -> None:
        """`operation` on all `tensors` at once, flattened into one, then copied back."""
        if self.world == 1 or not tensors:
            return
        flat = torch.cat([t.detach().reshape(-1) for t in tensors])
        operation(flat)
        parts = flat.split([t.numel() for t in tensors])
        with torch.no_grad():
            torch._foreach_copy_(
                tensors, [part.view_as(t) for part, t in zip(parts, tensors, strict=True)]
            )


def join(env: Mapping[str, str]) -> Group:
    """Join the process group torchrun described in the environment (NCCL between GPUs,
    gloo on CPUs); alone (`Group()`) when not launched by torchrun."""
    world = int(env.get("WORLD_SIZE", "1"))
    if not launched(env) or world == 1:
        return Group()
    import torch.distributed as dist

    group = Group(int(env["RANK"]), world, int(env["LOCAL_RANK"]))
    if torch.cuda.is_available():
        torch.cuda.set_device(group.local_rank)
        # The other ranks wait in a collective while rank 0 writes a checkpoint (a fully tuned
        # model's: tens of GB, uploaded when staged): longer than NCCL's 10-minute default.
        dist.init_process_group(
            "nccl", timeout=COLLECTIVE_TIMEOUT, device_id=torch.device("cuda", group.local_rank)
        )
    else:
        dist.init_process_group("gloo", timeout=COLLECTIVE_TIMEOUT)
    return group


def leave(group: Group) -> None:
    """Leave the process group once every rank has reached this point (a rank that tears
    its group down while a peer still talks to it can abort in gloo's teardown)."""
    if group.world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
