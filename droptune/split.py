"""Deterministic train/validation/test split by content hash, stratified by label.

Within each stratum (a label, or the whole set for unlabelled data) examples are ordered by a
64-bit hash of their canonical content; the first `test` share goes to test, the next
`validation` share to validation, the rest to train. The result depends only on the set of
examples: re-uploading the same data, in any order, gives the same split. Exact duplicates
always land in the same split, so they cannot leak from train into test.
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "validation", "test")
TRAIN, VALIDATION, TEST = 0, 1, 2


def assign_splits(
    digests: np.ndarray, strata: np.ndarray, validation: float, test: float
) -> np.ndarray:
    """Split index (0 train, 1 validation, 2 test) for each example.

    >>> d = np.arange(10, dtype=np.uint64)
    >>> assign_splits(d, np.zeros(10, np.int32), 0.2, 0.1).tolist()
    [2, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    """
    out = np.zeros(len(digests), dtype=np.uint8)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        order = members[np.argsort(digests[members], kind="stable")]
        n = len(order)
        n_test, n_val = int(n * test + 0.5), int(n * validation + 0.5)
        ranked = np.zeros(n, dtype=np.uint8)
        ranked[:n_test] = TEST
        ranked[n_test : n_test + n_val] = VALIDATION
        # Duplicates are adjacent in hash order: give each copy the split of the first one.
        sorted_digests = digests[order]
        new_group = np.ones(n, dtype=bool)
        new_group[1:] = sorted_digests[1:] != sorted_digests[:-1]
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
        out[order] = ranked[group_start]
    return out
