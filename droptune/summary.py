"""Dataset-level checks and statistics, computed once a scan has finished.

Duplicates, label balance, token statistics against the backend's limits, dataset-size
limits and the cost estimate; all from the scan's ledger, a hash-ordered pass at a time.
"""

from __future__ import annotations

import numpy as np

from droptune import cost, sizing
from droptune.config import RunConfig
from droptune.formats import BY_NAME
from droptune.issues import Issue
from droptune.ledger import first_copy
from droptune.limits import GEMINI_LIMITS
from droptune.report import LimitCheck, Report, TokenStats
from droptune.scan import Scan

IMBALANCE_RATIO = 10
HISTOGRAM_BINS = 30


def find_duplicates(scan: Scan) -> None:
    """A warning at every copy of an example after the first (in file order)."""
    for rows in scan.ledger.by_hash():
        digests = rows["digest"]
        same = digests[1:] == digests[:-1]
        if not same.any():
            continue
        first = first_copy(digests)
        lines = rows["line"]
        for pos in np.flatnonzero(same) + 1:
            scan.issues.add(
                Issue(
                    "duplicate_example",
                    f"same example as line {int(lines[first[pos]])}",
                    line=int(lines[pos]),
                    path="$",
                    file=scan.uri,
                )
            )


def check_labels(scan: Scan) -> dict[str, int]:
    if not scan.labels:
        return {}
    counts = scan.ledger.strata_counts()
    by_label = {label: int(counts[i + 1]) for label, i in scan.labels.items()}
    most, least = (
        max(by_label.items(), key=lambda kv: kv[1]),
        min(by_label.items(), key=lambda kv: kv[1]),
    )
    if least[1] and most[1] / least[1] >= IMBALANCE_RATIO:
        scan.issues.add(
            Issue(
                "label_imbalance",
                f"label {most[0]!r} has {most[1]} examples, {least[0]!r} only {least[1]}",
                file=scan.uri,
            )
        )
    return dict(sorted(by_label.items(), key=lambda kv: -kv[1]))


def token_stats(
    scan: Scan, config: RunConfig, train_tokens: int | None, train_examples: int | None = None
) -> TokenStats | None:
    """Statistics of the token counts; the over-limit examples were reported by the scan.
    Epochs left unset count as the passes droptune.sizing chooses for the file on a GPU."""
    if not scan.valid or scan.counter is None or not scan.count_tokens:
        return None
    values, counts = scan.ledger.tally()
    examples, total = int(counts.sum()), int((values * counts).sum())
    train_total = total if train_tokens is None else train_tokens
    epochs = (
        config.epochs
        or sizing.plan(
            max(train_examples or examples, 1), max(train_total, 1), int(values[-1])
        ).epochs.value
    )
    return TokenStats(
        method=scan.counter.method,
        description=scan.counter.description,
        examples=examples,
        total=total,
        min=int(values[0]),
        mean=total / examples,
        p50=int(percentile(values, counts, 50)),
        p95=int(percentile(values, counts, 95)),
        max=int(values[-1]),
        train_total=train_total,
        epochs=epochs,
        billable=round(train_total * epochs),
        limit=scan.token_limit,
        over_limit=int(counts[values > scan.token_limit].sum()),
        load_seconds=round(scan.tokenizer_seconds, 3),
        histogram=histogram(values, counts),
    )


def percentile(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """`np.percentile` (linear interpolation) of the data that has `counts[i]` copies of
    `values[i]`, without expanding it.

    >>> values, counts = np.array([1, 4, 9]), np.array([2, 1, 3])
    >>> percentile(values, counts, 50) == np.percentile([1, 1, 4, 9, 9, 9], 50)
    np.True_
    """
    ends = np.cumsum(counts)  # values[i] fills sorted positions ends[i-1] .. ends[i] - 1
    position = (ends[-1] - 1) * q / 100
    below = int(np.floor(position))
    at = values[np.searchsorted(ends, [below, min(below + 1, ends[-1] - 1)], side="right")]
    return float(at[0] + (position - below) * (at[1] - at[0]))


def histogram(
    values: np.ndarray, counts: np.ndarray, bins: int = HISTOGRAM_BINS
) -> dict[str, list[int]]:
    """Tokens per example in at most `bins` bins of one whole-token width: what the report's
    length chart draws. Each bin holds the examples with `edges[i] <= tokens < edges[i + 1]`.

    >>> histogram(np.array([3, 4, 9]), np.array([1, 2, 1]), bins=3)
    {'edges': [3, 6, 9, 12], 'counts': [3, 0, 1]}
    """
    low, high = int(values[0]), int(values[-1])
    width = -(-(high - low + 1) // bins)  # ceil
    edges = np.arange(low, high + width + 1, width)
    tallies, _ = np.histogram(values, bins=edges, weights=counts)
    return {"edges": edges.tolist(), "counts": tallies.astype(np.int64).tolist()}


def limit_checks(scan: Scan, config: RunConfig, splits: dict[str, int]) -> list[LimitCheck]:
    valid = scan.valid
    checks = [LimitCheck("min_examples", config.min_examples, valid, valid >= config.min_examples)]
    if config.backend == "gemini":
        train = splits.get("train", valid)
        checks.append(
            LimitCheck(
                "train_examples",
                GEMINI_LIMITS["train_examples"],
                train,
                train <= GEMINI_LIMITS["train_examples"],
            )
        )
        if "validation" in splits:
            n = splits["validation"]
            checks.append(
                LimitCheck(
                    "validation_examples",
                    GEMINI_LIMITS["validation_examples"],
                    n,
                    n <= GEMINI_LIMITS["validation_examples"],
                )
            )
        if scan.size is not None:
            checks.append(
                LimitCheck(
                    "file_bytes",
                    GEMINI_LIMITS["file_bytes"],
                    scan.size,
                    scan.size <= GEMINI_LIMITS["file_bytes"],
                )
            )
    codes = {
        "min_examples": "too_few_examples",
        "train_examples": "too_many_examples",
        "validation_examples": "too_many_examples",
        "file_bytes": "file_too_large",
    }
    said = {
        "min_examples": lambda c: (
            f"{c.value:,} valid example{'s' * (c.value != 1)} of {scan.records:,} "
            f"record{'s' * (scan.records != 1)}; at least {c.limit:,} needed (min_examples)"
        ),
        "train_examples": lambda c: (
            f"{c.value:,} training examples; Gemini tuning takes at most {c.limit:,}"
        ),
        "validation_examples": lambda c: (
            f"{c.value:,} validation examples; Gemini tuning takes at most {c.limit:,}"
        ),
        "file_bytes": lambda c: f"the file is {c.value:,} bytes; Gemini tuning takes {c.limit:,}",
    }
    for check in checks:
        if not check.ok:
            scan.issues.add(Issue(codes[check.name], said[check.name](check), file=scan.uri))
    return checks


def build_report(
    scan: Scan,
    config: RunConfig,
    seconds: float,
    splits: dict[str, int] | None = None,
    train_tokens: int | None = None,
) -> Report:
    """Run the dataset-level checks and assemble the report of a finished scan."""
    find_duplicates(scan)
    labels = check_labels(scan)
    tokens = token_stats(scan, config, train_tokens, (splits or {}).get("train"))
    trainable = scan.format.name in BY_NAME  # a format droptune trains on (not preference)
    limits = limit_checks(scan, config, splits or {}) if trainable else []
    estimate = None
    if tokens is not None:
        estimate = cost.estimate(
            config.base_model, tokens.train_total, tokens.epochs, config.price_per_million_tokens
        )
    counts = {"records": scan.records, "valid": scan.valid, "invalid": scan.invalid}
    if splits:
        counts["splits"] = splits
    if labels:
        counts["labels"] = labels
    return Report(
        file=scan.uri,
        backend=config.backend,
        base_model=config.base_model,
        format=scan.format,
        counts=counts,
        system_prompt=scan.system_prompt,
        issues=sorted(scan.issues.examples, key=lambda i: (i.line is None, i.line or 0)),
        issue_counts=dict(scan.issues.counts),
        tokens=tokens,
        cost=estimate,
        limits=limits,
        bytes=scan.bytes or scan.size or 0,
        seconds=seconds,
    )
