"""Batch token counting: the same counts in the same order, in this process or in workers."""

from __future__ import annotations

import os

import orjson
import pytest

from droptune import counting, pipeline
from droptune.config import RunConfig
from droptune.counting import OrderedCounts, worth_a_pool
from droptune.tokens import EstimateCounter


class CharCounter:
    """An 'exact' counter that is cheap to check: characters of the messages, and the pid."""

    method = "exact"
    description = "characters"
    unrendered = frozenset()

    def count(self, records):
        return [
            sum(len(m["content"]) for m in r["messages"]) * 1000 + os.getpid() % 1000
            for r in records
        ]


def lines(n: int, start: int = 0) -> list[bytes]:
    return [
        orjson.dumps({"messages": [{"role": "user", "content": "x" * (i % 50 + 1)}]})
        for i in range(start, start + n)
    ]


def chars_of(counts: list[int]) -> list[int]:
    return [c // 1000 for c in counts]


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_come_back_counted_in_the_order_they_went_out(workers: int) -> None:
    counts = OrderedCounts(CharCounter(), workers)
    try:
        seen = []
        for b in range(10):
            counts.add(lines(7, start=7 * b), attached=b)
            seen += list(counts.done())
        seen += list(counts.done(wait=True))
    finally:
        counts.close()
    assert [b for b, _ in seen] == list(range(10))
    assert [c for _, batch in seen for c in chars_of(batch)] == [i % 50 + 1 for i in range(70)]
    pids = {c % 1000 for _, batch in seen for c in batch}
    assert (os.getpid() % 1000 in pids) == (workers == 0)  # workers count in other processes


def test_a_pool_only_where_it_pays(monkeypatch) -> None:
    monkeypatch.setattr(counting, "usable_cpus", lambda: 4)
    assert worth_a_pool(CharCounter(), 100_000_000) == 4
    assert worth_a_pool(CharCounter(), None) == 4  # stdin: no size, may be big
    assert worth_a_pool(CharCounter(), 1_000_000) == 0  # small: start-up would cost more
    assert worth_a_pool(EstimateCounter(), 100_000_000) == 0  # estimates are cheap
    monkeypatch.setattr(counting, "usable_cpus", lambda: 64)
    assert worth_a_pool(CharCounter(), 10_000_000) == 2  # not 64 forks for a few batches
    assert worth_a_pool(CharCounter(), 10**10) == counting.MAX_WORKERS
    monkeypatch.setattr(counting, "usable_cpus", lambda: 1)
    assert worth_a_pool(CharCounter(), 100_000_000) == 0


@pytest.mark.slow
def test_a_scan_counts_the_same_in_workers_as_alone(tmp_path, real_counter, monkeypatch) -> None:
    records = [
        {"messages": [{"role": "user", "content": f"question {i} " * (i % 7 + 1)},
                      {"role": "assistant", "content": f"answer {i}"}]}
        for i in range(1500)
    ]  # fmt: skip
    path = tmp_path / "chat.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    alone = pipeline.validate(str(path), RunConfig(), counter=real_counter)
    monkeypatch.setattr(counting, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(counting, "usable_cpus", lambda: 2)
    pools = []
    monkeypatch.setattr(counting, "ProcessPoolExecutor", spy(counting.ProcessPoolExecutor, pools))
    pooled = pipeline.validate(str(path), RunConfig(), counter=real_counter)
    assert len(pools) == 1  # the scan counted in workers
    assert pooled.tokens == alone.tokens and pooled.counts == alone.counts


def spy(cls, made: list):
    def make(*args, **kwargs):
        made.append(cls(*args, **kwargs))
        return made[-1]

    return make
