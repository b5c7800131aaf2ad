"""Dataset-level checks and statistics, computed once a scan has finished.

Duplicates, label balance, token statistics against the backend's limits, dataset-size
limits and the cost estimate; all from the compact per-example arrays the scan kept.
"""

from __future__ import annotations

import numpy as np

from droptune import cost
from droptune.config import RunConfig
from droptune.issues import Issue
from droptune.report import LimitCheck, Report, TokenStats
from droptune.scan import Scan

# Vertex AI Gemini supervised tuning limits (Gemini 2.x documentation).
GEMINI_LIMITS = {
    "tokens_per_example": 131_072,
    "train_examples": 1_000_000,
    "validation_examples": 5_000,
    "file_bytes": 1 << 30,
}
IMBALANCE_RATIO = 10
HISTOGRAM_BINS = 30


def find_duplicates(scan: Scan) -> None:
    digests = np.frombuffer(scan.digests, dtype=np.uint64)
    if len(digests) < 2:
        return
    lines = np.frombuffer(scan.lines, dtype=np.uint32)
    order = np.argsort(digests, kind="stable")
    ordered = digests[order]
    same = ordered[1:] == ordered[:-1]
    del ordered  # peak memory: a few temporaries of 8 bytes per example, freed early
    if not same.any():
        return
    first = np.maximum.accumulate(
        np.where(np.concatenate(([True], ~same)), np.arange(len(order)), 0)
    )
    for pos in np.flatnonzero(same) + 1:
        line, original = int(lines[order[pos]]), int(lines[order[first[pos]]])
        scan.issues.add(
            Issue(
                "duplicate_example",
                f"same example as line {original}",
                line=line,
                path="$",
                file=scan.uri,
            )
        )


def check_labels(scan: Scan) -> dict[str, int]:
    if not scan.labels:
        return {}
    ids = np.frombuffer(scan.label_ids, dtype=np.uint16)
    counts = np.bincount(ids, minlength=len(scan.labels))
    by_label = {label: int(counts[i]) for label, i in scan.labels.items()}
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


def token_stats(scan: Scan, config: RunConfig, train_mask: np.ndarray | None) -> TokenStats | None:
    if not len(scan.token_counts) or scan.counter is None or not scan.count_tokens:
        return None
    counts = np.frombuffer(scan.token_counts, dtype=np.uint32)
    gemini = config.backend == "gemini"
    limit = GEMINI_LIMITS["tokens_per_example"] if gemini else config.max_length
    over = np.flatnonzero(counts > limit)
    lines = np.frombuffer(scan.lines, dtype=np.uint32)
    for i in over:
        code = "over_token_limit" if gemini else "over_max_length"
        scan.issues.add(
            Issue(
                code,
                f"{int(counts[i]):,} tokens, limit {limit:,}",
                line=int(lines[i]),
                path="$",
                file=scan.uri,
            )
        )
    train_total = int(counts[train_mask].sum()) if train_mask is not None else int(counts.sum())
    return TokenStats(
        method=scan.counter.method,
        description=scan.counter.description,
        examples=len(counts),
        total=int(counts.sum()),
        min=int(counts.min()),
        mean=float(counts.mean()),
        p50=int(np.percentile(counts, 50)),
        p95=int(np.percentile(counts, 95)),
        max=int(counts.max()),
        train_total=train_total,
        epochs=config.epochs,
        billable=train_total * config.epochs,
        limit=limit,
        over_limit=len(over),
        histogram=histogram(counts),
    )


def histogram(counts: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict[str, list[int]]:
    """Tokens per example in at most `bins` bins of one whole-token width: what the report's
    length chart draws. Each bin holds the examples with `edges[i] <= tokens < edges[i + 1]`.

    >>> histogram(np.array([3, 4, 4, 9]), bins=3)
    {'edges': [3, 6, 9, 12], 'counts': [3, 0, 1]}
    """
    low, high = int(counts.min()), int(counts.max())
    width = -(-(high - low + 1) // bins)  # ceil
    edges = np.arange(low, high + width + 1, width)
    tallies, _ = np.histogram(counts, bins=edges)
    return {"edges": edges.tolist(), "counts": tallies.tolist()}


def limit_checks(scan: Scan, config: RunConfig, splits: dict[str, int]) -> list[LimitCheck]:
    valid = len(scan.digests)
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
    for check in checks:
        if not check.ok:
            relation = "fewer than" if check.name == "min_examples" else "more than"
            scan.issues.add(
                Issue(
                    codes[check.name],
                    f"{check.name}: {check.value:,} is {relation} the limit {check.limit:,}",
                    file=scan.uri,
                )
            )
    return checks


def build_report(
    scan: Scan,
    config: RunConfig,
    seconds: float,
    splits: dict[str, int] | None = None,
    train_mask: np.ndarray | None = None,
) -> Report:
    """Run the dataset-level checks and assemble the report of a finished scan."""
    find_duplicates(scan)
    labels = check_labels(scan)
    tokens = token_stats(scan, config, train_mask)
    limits = limit_checks(scan, config, splits or {}) if scan.format.name else []
    estimate = None
    if tokens is not None:
        estimate = cost.estimate(
            config.base_model, tokens.train_total, config.epochs, config.price_per_million_tokens
        )
    counts = {"records": scan.records, "valid": len(scan.digests), "invalid": scan.invalid}
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
        issues=sorted(scan.issues.examples, key=lambda i: (i.line is None, i.line or 0)),
        issue_counts=dict(scan.issues.counts),
        tokens=tokens,
        cost=estimate,
        limits=limits,
        bytes=scan.bytes or scan.size or 0,
        seconds=seconds,
    )
