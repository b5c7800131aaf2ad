"""Deterministic split by content hash: order-free, stratified, duplicates kept together."""

from __future__ import annotations

import numpy as np
import pytest

from droptune.ledger import Ledger
from droptune.split import SPLITS, TEST, TRAIN, VALIDATION, assign_splits, plan_split

rng = np.random.default_rng(20240601)


def digests(n: int) -> np.ndarray:
    return rng.integers(0, 2**63, size=n, dtype=np.uint64)


def split_of(d: np.ndarray, strata: np.ndarray, validation=0.1, test=0.1) -> dict[int, int]:
    assignment = assign_splits(d, strata, validation, test)
    return {int(x): int(s) for x, s in zip(d, assignment, strict=True)}


def test_split_names() -> None:
    assert (SPLITS[TRAIN], SPLITS[VALIDATION], SPLITS[TEST]) == ("train", "validation", "test")


def test_docstring_example() -> None:
    d = np.arange(10, dtype=np.uint64)
    assert assign_splits(d, np.zeros(10, np.int32), 0.2, 0.1).tolist() == [
        2,
        1,
        1,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]


def test_same_examples_in_any_order_get_the_same_split() -> None:
    d = digests(500)
    strata = rng.integers(0, 3, size=500).astype(np.int32)
    expected = split_of(d, strata)
    for _ in range(5):
        order = rng.permutation(500)
        assert split_of(d[order], strata[order]) == expected


@pytest.mark.parametrize(
    ("n", "validation", "test"), [(100, 0.1, 0.1), (1000, 0.2, 0.05), (7, 0.1, 0.1), (3, 0.0, 0.5)]
)
def test_fractions_are_rounded_shares(n: int, validation: float, test: float) -> None:
    assignment = assign_splits(digests(n), np.zeros(n, np.int32), validation, test)
    counts = np.bincount(assignment, minlength=3)
    assert counts[TEST] == int(n * test + 0.5)
    assert counts[VALIDATION] == int(n * validation + 0.5)
    assert counts.sum() == n


def test_no_holdout_means_all_train() -> None:
    assert set(assign_splits(digests(50), np.zeros(50, np.int32), 0.0, 0.0).tolist()) == {TRAIN}


def test_each_label_is_split_on_its_own() -> None:
    strata = np.repeat(np.arange(3, dtype=np.int32), [100, 50, 10])
    assignment = assign_splits(digests(160), strata, 0.2, 0.1)
    for label, size in enumerate([100, 50, 10]):
        counts = np.bincount(assignment[strata == label], minlength=3)
        assert counts.tolist() == [
            size - int(size * 0.2 + 0.5) - int(size * 0.1 + 0.5),
            int(size * 0.2 + 0.5),
            int(size * 0.1 + 0.5),
        ]


def test_labels_too_small_for_a_share_still_give_the_file_its_share() -> None:
    strata = np.repeat(np.arange(4, dtype=np.int32), 3)  # twelve examples, four labels of 3
    assignment = assign_splits(digests(12), strata, 0.1, 0.1)
    assert np.bincount(assignment, minlength=3).tolist() == [10, 1, 1]  # not [12, 0, 0]


def test_strata_of_one_size_are_told_apart_by_label_not_by_file_order() -> None:
    """Strata are numbered as their labels first appear; which of four equal labels gives
    the one test example must not change when the file is shuffled."""
    d, labels = digests(12), np.repeat(["a", "b", "c", "d"], 3)

    def held(order: np.ndarray) -> set[int]:
        seen = list(dict.fromkeys(labels[order].tolist()))
        strata = np.array([seen.index(label) + 1 for label in labels[order]], np.int32)
        with Ledger(chunk=12) as ledger:
            for digest, stratum in zip(d[order].tolist(), strata.tolist(), strict=True):
                ledger.add(digest, 0, 0, stratum)
            which = plan_split(ledger, 0.1, 0.1, seen).assign(d[order], strata)
        return {int(x) for x, split in zip(d[order], which, strict=True) if split != TRAIN}

    expected = held(np.arange(12))
    assert len(expected) == 2
    for _ in range(6):
        assert held(rng.permutation(12)) == expected


def test_duplicates_land_in_the_same_split() -> None:
    unique = digests(200)
    d = np.concatenate([unique, unique[:60], unique[:20]])
    order = rng.permutation(len(d))
    d = d[order]
    assignment = assign_splits(d, np.zeros(len(d), np.int32), 0.25, 0.25)
    by_digest: dict[int, set[int]] = {}
    for x, s in zip(d.tolist(), assignment.tolist(), strict=True):
        by_digest.setdefault(x, set()).add(s)
    assert all(len(s) == 1 for s in by_digest.values())
    assert len({s for group in by_digest.values() for s in group}) == 3


def test_a_block_of_copies_takes_the_first_copys_split() -> None:
    # Ten copies of the smallest digest: its first copy is in test, so all ten are.
    d = np.array([0] * 10 + list(range(1, 11)), dtype=np.uint64)
    assignment = assign_splits(d, np.zeros(20, np.int32), 0.1, 0.1)
    assert assignment[:10].tolist() == [TEST] * 10


def test_empty_input() -> None:
    assert assign_splits(np.zeros(0, np.uint64), np.zeros(0, np.int32), 0.1, 0.1).tolist() == []


@pytest.mark.parametrize("chunk", [3, 64, 10**6])
def test_a_plan_over_a_spilled_ledger_matches_the_split_in_memory(chunk: int) -> None:
    unique = digests(700)
    d = np.concatenate([unique, unique[:90], unique[:9]])
    order = rng.permutation(len(d))
    d = d[order]
    strata = (d % 3).astype(np.uint32)  # copies of an example share its label
    tokens = rng.integers(1, 50, size=len(d))
    expected = assign_splits(d, strata, 0.15, 0.1)
    with Ledger(chunk=chunk) as ledger:
        for line, (x, s, t) in enumerate(
            zip(d.tolist(), strata.tolist(), tokens.tolist(), strict=False)
        ):
            ledger.add(x, line + 1, t, s)
        plan = plan_split(ledger, 0.15, 0.1)
        assert list(plan.in_file_order(ledger)) == expected.tolist()
    assert plan.counts == {name: int((expected == i).sum()) for i, name in enumerate(SPLITS)}
    assert plan.train_tokens == int(tokens[expected == TRAIN].sum())
