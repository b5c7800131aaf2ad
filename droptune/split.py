"""Deterministic train/validation/test split by content hash, stratified by label.

Within each stratum (a label, or the unlabelled examples) examples are ranked by a 64-bit hash
of their canonical content; the first `test` share goes to test, the next `validation` share to
validation, the rest to train. The result depends only on the set of examples: re-uploading
the same data, in any order, gives the same split. Exact duplicates always land in the same
split (the split of the first copy in hash order), so they cannot leak from train into test.

A split is planned in one pass over the ledger in hash order and comes out as two hash
cut-offs per stratum, so the writer can place each example as it re-reads the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from droptune.ledger import Ledger, first_copy

SPLITS = ("train", "validation", "test")
TRAIN, VALIDATION, TEST = 0, 1, 2


@dataclass(frozen=True)
class SplitPlan:
    """Where every example of a ledger goes.

    In stratum `s` an example with hash `d` is in test when `d <= test_cut[s]`, else in
    validation when `d <= held_cut[s]`, else in train; a stratum whose `has_test` /
    `has_held` is false has no such examples.
    """

    counts: dict[str, int]  # examples per split
    train_tokens: int
    test_cut: np.ndarray
    held_cut: np.ndarray  # the last hash held out of train (test or validation)
    has_test: np.ndarray
    has_held: np.ndarray

    def assign(self, digests: np.ndarray, strata: np.ndarray) -> np.ndarray:
        """Split index (0 train, 1 validation, 2 test) of each (hash, stratum)."""
        s = strata.astype(np.intp)
        test = self.has_test[s] & (digests <= self.test_cut[s])
        held = self.has_held[s] & (digests <= self.held_cut[s])
        return np.where(test, TEST, np.where(held, VALIDATION, TRAIN)).astype(np.uint8)

    def in_file_order(self, ledger: Ledger) -> Iterator[int]:
        """The split index of each example of `ledger`, in file order."""
        for rows in ledger.in_file_order():
            yield from self.assign(rows["digest"], rows["stratum"]).tolist()


def held_out(
    sizes: np.ndarray, share: float, room: np.ndarray, ties: np.ndarray | None = None
) -> np.ndarray:
    """Examples each stratum gives a split of `share`: its own share, rounded; but when that
    leaves the split empty (twelve examples in four labels, a tenth each) the file's share,
    rounded, goes one example each to the largest strata with `room`, so a split asked for is
    never empty. Strata of one size go by `ties` (ascending; default: their order), which
    should not depend on the order of the file.

    >>> held_out(np.array([3, 3, 3, 3]), 0.1, np.array([3, 3, 3, 3])).tolist()
    [1, 0, 0, 0]
    >>> held_out(np.array([3, 3, 3, 3]), 0.1, np.array([3, 3, 3, 3]), np.array([3, 1, 2, 0]))
    array([0, 0, 0, 1])
    """
    counts = (sizes * share + 0.5).astype(np.int64)
    if counts.sum():
        return counts
    ties = np.arange(len(sizes)) if ties is None else ties
    largest = np.lexsort((ties, -sizes))
    counts[largest[room[largest] > 0][: int(sizes.sum() * share + 0.5)]] = 1
    return counts


def plan_split(
    ledger: Ledger, validation: float, test: float, labels: Sequence[str] = ()
) -> SplitPlan:
    """Where each example goes. `labels`: the label of each stratum after the first (the
    unlabelled one), by which strata of one size are told apart, whatever the file's order."""
    sizes = ledger.strata_counts()
    names = ["", *labels][: len(sizes)]
    names += [""] * (len(sizes) - len(names))
    ties = np.empty(len(sizes), np.int64)
    ties[sorted(range(len(sizes)), key=names.__getitem__)] = np.arange(len(sizes))
    n_test = held_out(sizes, test, sizes, ties)
    n_held = n_test + held_out(sizes, validation, sizes - n_test, ties)
    seen = np.zeros_like(sizes)
    test_cut, held_cut = np.zeros(len(sizes), np.uint64), np.zeros(len(sizes), np.uint64)
    per_split, train_tokens = np.zeros(3, np.int64), 0
    for rows in ledger.by_hash():
        if not len(rows):
            continue
        digests, strata = rows["digest"], rows["stratum"].astype(np.intp)
        rank = seen[strata] + _rank_within(strata)
        seen += np.bincount(strata, minlength=len(seen))
        group_rank = rank[first_copy(digests)]  # copies go where their first copy goes
        which = np.where(
            group_rank < n_test[strata],
            TEST,
            np.where(group_rank < n_held[strata], VALIDATION, TRAIN),
        )
        per_split += np.bincount(which, minlength=3)
        train_tokens += int(rows["tokens"][which == TRAIN].sum())
        for cut, n in ((test_cut, n_test), (held_cut, n_held)):
            last = rank == n[strata] - 1
            cut[strata[last]] = digests[last]
    return SplitPlan(
        counts={name: int(per_split[i]) for i, name in enumerate(SPLITS)},
        train_tokens=train_tokens,
        test_cut=test_cut,
        held_cut=held_cut,
        has_test=n_test > 0,
        has_held=n_held > 0,
    )


def assign_splits(
    digests: np.ndarray, strata: np.ndarray, validation: float, test: float
) -> np.ndarray:
    """Split index (0 train, 1 validation, 2 test) of each example held in memory.

    >>> d = np.arange(10, dtype=np.uint64)
    >>> assign_splits(d, np.zeros(10, np.int32), 0.2, 0.1).tolist()
    [2, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    """
    with Ledger(chunk=max(1, len(digests))) as ledger:
        for digest, stratum in zip(digests.tolist(), strata.tolist(), strict=True):
            ledger.add(digest, 0, 0, stratum)
        plan = plan_split(ledger, validation, test)
        return plan.assign(digests, strata)


def _rank_within(strata: np.ndarray) -> np.ndarray:
    """Each row's position among the rows of its stratum.

    >>> _rank_within(np.array([1, 0, 1, 1, 0])).tolist()
    [0, 0, 1, 2, 1]
    """
    order = np.argsort(strata, kind="stable")
    ordered = strata[order]
    new = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    starts, group = np.flatnonzero(new), np.cumsum(new) - 1
    rank = np.empty(len(strata), np.int64)
    rank[order] = np.arange(len(strata)) - starts[group]
    return rank
