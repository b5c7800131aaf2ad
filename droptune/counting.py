"""Token counting for a scan, in batches, on the cores the process may use (up to eight).

Counting exact tokens (chat template, then BPE) costs several times what reading, validating
and converting an example does (`bench/validate_bench.py` measures both), so on big inputs
the scan hands batches of examples to worker processes and goes on reading while they count;
counts come back in the order the batches went out. Workers are forked from the scanning
process, so they start at once with its loaded tokenizer; each batch travels as the canonical
JSON lines the scan has already encoded. Small inputs, one-core machines and estimated counts
are counted in the scanning process, where a pool would cost more than it saves.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import orjson

from droptune.tokens import TokenCounter

PARALLEL_MIN_BYTES = 8_000_000  # below this (when the size is known) one process is enough
BYTES_PER_WORKER = 4_000_000  # a fraction of a second of counting: fewer keep a worker idle
MAX_WORKERS = 8  # each one is a fork of the scanning process, with its own word cache
_worker_counter: TokenCounter | None = None  # set in the parent; forked workers inherit it


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worth_a_pool(counter: TokenCounter, size: int | None) -> int:
    """How many worker processes to count with (0: count in this process)."""
    cpus = usable_cpus()
    if (
        counter.method != "exact"
        or cpus < 2
        or "fork" not in multiprocessing.get_all_start_methods()
        or (size is not None and size < PARALLEL_MIN_BYTES)
    ):
        return 0
    fits = MAX_WORKERS if size is None else max(2, size // BYTES_PER_WORKER)
    return min(cpus, MAX_WORKERS, fits)


class OrderedCounts:
    """Counts batches of canonical JSON lines, inline or in a pool; `done` yields each batch's
    counts in the order `add` received them, with what the caller attached to it."""

    def __init__(self, counter: TokenCounter, workers: int = 0) -> None:
        self._count = counter.count
        self._pool: ProcessPoolExecutor | None = None
        if workers:
            global _worker_counter
            _worker_counter = counter
            context = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(workers, mp_context=context)
        self._queued: deque[tuple[Any, Future[list[int]] | list[int]]] = deque()
        self._depth = 2 * workers  # batches in flight: enough to keep every worker busy

    def add(self, lines: list[bytes], attached: Any) -> None:
        if self._pool is None:
            self._queued.append((attached, self._count([orjson.loads(x) for x in lines])))
        else:
            self._queued.append((attached, self._pool.submit(_count_lines, b"\n".join(lines))))

    def done(self, wait: bool = False) -> Iterator[tuple[Any, list[int]]]:
        """Batches counted so far (all of them with `wait`), oldest first."""
        while self._queued and (wait or len(self._queued) > self._depth):
            attached, counts = self._queued.popleft()
            yield attached, counts.result() if isinstance(counts, Future) else counts

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _count_lines(blob: bytes) -> list[int]:
    count: Callable[[list[Any]], list[int]] = _worker_counter.count  # type: ignore[union-attr]
    return count([orjson.loads(line) for line in blob.split(b"\n")])
