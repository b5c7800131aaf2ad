"""What a scan keeps of each valid example, in memory that does not grow with the file.

Four numbers an example — content hash, line, token count, stratum (0 for an unlabelled
example, label id + 1 otherwise) — are all the dataset-level checks need: duplicate detection
and the split read them in hash order, the split's writer reads hash and stratum again in file
order, token statistics read a tally of the counts.

Rows collect in a buffer of `chunk` rows. A full buffer is appended to two temporary files:
as it came (file order) and sorted by hash (a *run*). Reading in hash order then goes one
range of hash values at a time, merging every run's share of that range, so about `chunk`
rows are in memory at any moment whatever the number of examples. A file of up to `chunk`
examples (65,536) never touches the disk. An external sort by hash range
rather than a `sqlite3` table or a Bloom filter: it keeps duplicate detection exact and needs
nothing but numpy.
"""

from __future__ import annotations

import tempfile
from array import array
from collections.abc import Iterator
from typing import IO

import numpy as np

ROW = np.dtype([("digest", "<u8"), ("line", "<u4"), ("tokens", "<u4"), ("stratum", "<u4")])
CHUNK = 1 << 16  # 1.3 MB of rows; a spill's sort and copies peak at about 5 MB


class Ledger:
    """Append rows with `add`; read them back with `by_hash`, `in_file_order`, `tally`.

    >>> ledger = Ledger(chunk=2)
    >>> for digest, line in [(30, 1), (10, 2), (20, 3), (10, 4)]:
    ...     ledger.add(digest, line, tokens=5, stratum=0)
    >>> [(int(r["digest"]), int(r["line"])) for rows in ledger.by_hash() for r in rows]
    [(10, 2), (10, 4), (20, 3), (30, 1)]
    >>> [int(d) for rows in ledger.in_file_order() for d in rows["digest"]]
    [30, 10, 20, 10]
    """

    def __init__(self, chunk: int | None = None) -> None:
        self.chunk = chunk or CHUNK
        self._digests, self._lines = array("Q"), array("I")
        self._tokens, self._strata = array("I"), array("I")
        self._sorted: IO[bytes] | None = None  # runs, each sorted by hash
        self._in_order: IO[bytes] | None = None  # the same rows as they came
        self._runs: list[tuple[int, int]] = []  # (first row, rows) of each run
        self._strata_counts = np.zeros(1, np.int64)
        self._tally: dict[int, int] = {}  # token count -> examples
        self._shift = 0  # tokens added to every count since (shift_tokens)

    def add(self, digest: int, line: int, tokens: int, stratum: int) -> None:
        self._digests.append(digest)
        self._lines.append(line)
        self._tokens.append(tokens)
        self._strata.append(stratum)
        if len(self._digests) == self.chunk:
            self._spill()

    def __len__(self) -> int:
        return self._spilled() + len(self._digests)

    # --- reading --------------------------------------------------------------------------
    def by_hash(self) -> Iterator[np.ndarray]:
        """Every row in ascending hash order (equal hashes in file order), in slices that
        never part two rows of the same hash."""
        if not self._runs:
            rows = self._buffer()
            yield rows[np.argsort(rows["digest"], kind="stable")]
            return
        self._spill()  # the last, partial buffer becomes a run too
        assert self._sorted is not None
        ranges = max(1, -(-2 * len(self) // self.chunk))  # about chunk / 2 rows a range
        edges = np.array([(i << 64) // ranges for i in range(1, ranges)], dtype=np.uint64)
        cuts = [self._cuts(start, rows, edges) for start, rows in self._runs]
        for r in range(ranges):
            rows = np.concatenate(
                [
                    self._read(self._sorted, start + cut[r], cut[r + 1] - cut[r])
                    for (start, _), cut in zip(self._runs, cuts, strict=True)
                ]
            )
            yield rows[np.argsort(rows["digest"], kind="stable")]

    def in_file_order(self) -> Iterator[np.ndarray]:
        """Every row as it was added, `chunk` rows at a time."""
        for start, rows in self._runs:
            assert self._in_order is not None
            yield self._read(self._in_order, start, rows)
        if self._digests:
            yield self._buffer()

    def strata_counts(self) -> np.ndarray:
        """Examples per stratum (index 0: unlabelled)."""
        counts = np.bincount(np.frombuffer(self._strata, np.uint32))
        return _add(self._strata_counts, counts)

    def tally(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct token counts, ascending, and how many examples have each."""
        tally = dict(self._tally)
        _count_into(tally, np.frombuffer(self._tokens, np.uint32))
        values = np.array(sorted(tally), dtype=np.int64)
        return values + self._shift, np.array([tally[v] for v in values.tolist()], dtype=np.int64)

    def shift_tokens(self, tokens: int) -> None:
        """Add `tokens` to every example's count in `tally` (a system turn given to all of
        them after the scan); the rows keep the counts they were added with."""
        self._shift += tokens

    def close(self) -> None:
        for f in (self._sorted, self._in_order):
            if f is not None:
                f.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------
    def _buffer(self) -> np.ndarray:
        rows = np.empty(len(self._digests), ROW)
        rows["digest"] = np.frombuffer(self._digests, np.uint64)
        rows["line"] = np.frombuffer(self._lines, np.uint32)
        rows["tokens"] = np.frombuffer(self._tokens, np.uint32)
        rows["stratum"] = np.frombuffer(self._strata, np.uint32)
        return rows

    def _spill(self) -> None:
        if not self._digests:
            return
        if self._sorted is None or self._in_order is None:
            # owned by the ledger, closed (and so deleted) by `close`
            self._sorted = tempfile.TemporaryFile()  # noqa: SIM115
            self._in_order = tempfile.TemporaryFile()  # noqa: SIM115
        rows = self._buffer()
        self._strata_counts = _add(self._strata_counts, np.bincount(rows["stratum"]))
        _count_into(self._tally, rows["tokens"])
        self._runs.append((self._spilled(), len(rows)))
        self._in_order.write(rows.data)
        self._sorted.write(rows[np.argsort(rows["digest"], kind="stable")].data)
        for buffer in (self._digests, self._lines, self._tokens, self._strata):
            del buffer[:]

    def _spilled(self) -> int:
        return sum(rows for _, rows in self._runs)

    def _cuts(self, start: int, rows: int, edges: np.ndarray) -> list[int]:
        """Row offsets in one run where each hash range begins, plus the run's end."""
        assert self._sorted is not None
        self._sorted.flush()
        run = np.memmap(self._sorted, ROW, mode="r", offset=start * ROW.itemsize, shape=(rows,))
        cuts = np.searchsorted(run["digest"], edges).tolist()
        del run  # unmapped at once: only the pages the binary search touched were read
        return [0, *cuts, rows]

    @staticmethod
    def _read(f: IO[bytes], start: int, rows: int) -> np.ndarray:
        f.seek(start * ROW.itemsize)
        return np.frombuffer(f.read(rows * ROW.itemsize), ROW)


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(max(len(a), len(b)), np.int64)
    out[: len(a)] += a
    out[: len(b)] += b
    return out


def _count_into(tally: dict[int, int], tokens: np.ndarray) -> None:
    values, counts = np.unique(tokens, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        tally[value] = tally.get(value, 0) + count


def first_copy(digests: np.ndarray) -> np.ndarray:
    """Index of the first row with each row's hash, for rows sorted by hash.

    >>> first_copy(np.array([3, 5, 5, 5, 8], dtype=np.uint64)).tolist()
    [0, 1, 1, 1, 4]
    """
    new = np.concatenate(([True], digests[1:] != digests[:-1]))
    return np.maximum.accumulate(np.where(new, np.arange(len(digests)), 0))
