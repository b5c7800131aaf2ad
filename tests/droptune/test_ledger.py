"""The ledger gives the same rows back whether it spilled to disk or not, and reads them in
hash order a bounded slice at a time."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from droptune.ledger import Ledger

rng = np.random.default_rng(20261204)


def filled(chunk: int, digests: np.ndarray, strata: np.ndarray, tokens: np.ndarray) -> Ledger:
    ledger = Ledger(chunk=chunk)
    for line, (d, s, t) in enumerate(
        zip(digests.tolist(), strata.tolist(), tokens.tolist(), strict=False)
    ):
        ledger.add(d, line + 1, t, s)
    return ledger


@pytest.fixture
def rows() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    unique = rng.integers(0, 2**64, size=3000, dtype=np.uint64)
    digests = np.concatenate([unique, unique[:400], unique[:50]])  # copies across many runs
    order = rng.permutation(len(digests))
    strata = rng.integers(0, 4, size=len(digests), dtype=np.uint32)
    tokens = rng.integers(1, 300, size=len(digests), dtype=np.uint32)
    return digests[order], strata, tokens


def as_list(slices) -> list[tuple[int, int, int, int]]:
    return [tuple(int(x) for x in row) for rows in slices for row in rows.tolist()]


@pytest.mark.parametrize("chunk", [16, 256, 1000])
def test_a_spilled_ledger_reads_back_like_one_in_memory(rows, chunk: int) -> None:
    in_memory, spilled = filled(10**6, *rows), filled(chunk, *rows)
    with in_memory, spilled:
        assert len(spilled) == len(in_memory) == len(rows[0])
        assert as_list(spilled.by_hash()) == as_list(in_memory.by_hash())
        assert as_list(spilled.in_file_order()) == as_list(in_memory.in_file_order())
        assert spilled.strata_counts().tolist() == in_memory.strata_counts().tolist()
        for a, b in zip(spilled.tally(), in_memory.tally(), strict=True):
            assert a.tolist() == b.tolist()


def test_hash_order_keeps_copies_in_file_order(rows) -> None:
    with filled(97, *rows) as ledger:
        ordered = [row for rows_ in ledger.by_hash() for row in rows_.tolist()]
    digests = [d for d, *_ in ordered]
    assert digests == sorted(digests)
    for earlier, later in itertools.pairwise(ordered):
        if earlier[0] == later[0]:
            assert earlier[1] < later[1]  # line


def test_hash_order_comes_in_bounded_slices_that_never_part_copies(rows) -> None:
    chunk = 256
    with filled(chunk, *rows) as ledger:
        slices = list(ledger.by_hash())
    assert len(slices) > 10
    assert max(len(s) for s in slices) <= 2 * chunk  # what bounds the memory
    seen: set[int] = set()
    for s in slices:
        here = set(s["digest"].tolist())
        assert not here & seen
        seen |= here


def test_tally_counts_each_token_length() -> None:
    with filled(2, np.arange(5, dtype=np.uint64), np.zeros(5, np.uint32),
                np.array([7, 3, 7, 7, 3], np.uint32)) as ledger:  # fmt: skip
        values, counts = ledger.tally()
    assert (values.tolist(), counts.tolist()) == ([3, 7], [2, 3])


def test_an_empty_ledger_reads_back_nothing() -> None:
    with Ledger(chunk=4) as ledger:
        assert len(ledger) == 0
        assert as_list(ledger.by_hash()) == as_list(ledger.in_file_order()) == []
        assert ledger.tally()[0].tolist() == []
