"""The data plane's three operations over a source file (path, `-`, or gs:// URI).

- `validate`: scan and report; nothing written.
- `convert`: every valid example, in one target format, to one output.
- `prepare`: a run's `data/` folder — deterministic train/validation/test split in the
  canonical chat format (and the Gemini format for the gemini backend) — plus
  `validation/report.json` and `report.md`. Data files are written only for valid datasets.

All three stream: examples flow through as they are read; `prepare` spools canonical lines to
a local temporary file because a split by content hash is known only once every hash is.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from typing import IO, Literal

import numpy as np
import orjson

from droptune.config import RunConfig
from droptune.formats.gemini import to_gemini
from droptune.issues import IssueLog
from droptune.report import Report, render_markdown
from droptune.scan import Progress, Scan
from droptune.split import SPLITS, TRAIN, VALIDATION, assign_splits
from droptune.storage import join, open_output, write_all
from droptune.summary import build_report
from droptune.tokens import TokenCounter

Target = Literal["chat", "gemini"]


def validate(
    uri: str,
    config: RunConfig,
    counter: TokenCounter | None = None,
    progress: Progress | None = None,
    count_tokens: bool = True,
) -> Report:
    started = time.perf_counter()
    scan = Scan(uri, config, counter, progress, count_tokens=count_tokens)
    for _ in scan:
        pass
    return build_report(scan, config, time.perf_counter() - started)


def convert(
    uri: str,
    config: RunConfig,
    target: Target,
    output: str,
    counter: TokenCounter | None = None,
    progress: Progress | None = None,
) -> Report:
    """Write every valid example of `uri` to `output` in the `target` format."""
    started = time.perf_counter()
    if target == "gemini" and config.backend != "gemini":
        config = dataclasses.replace(config, backend="gemini")  # Gemini's checks apply
    scan = Scan(uri, config, counter, progress)
    with open_output(output) as out:
        for scanned in scan:
            if target == "gemini":
                out.write(orjson.dumps(to_gemini(scanned.example.to_record())) + b"\n")
            else:
                out.write(scanned.encoded + b"\n")
    report = build_report(scan, config, time.perf_counter() - started)
    report.outputs = {target: output}
    return report


def prepare(
    uri: str,
    config: RunConfig,
    run_dir: str,
    counter: TokenCounter | None = None,
    progress: Progress | None = None,
) -> Report:
    """Validate, split and write `run_dir/data/...` and `run_dir/validation/report.*`."""
    started = time.perf_counter()
    issues = IssueLog(config.max_issues_per_code)
    has_validation_file = config.validation_file is not None
    scan = Scan(uri, config, counter, progress, issues)
    with tempfile.TemporaryFile() as spool:
        for scanned in scan:
            spool.write(scanned.encoded + b"\n")
        digests = np.frombuffer(scan.digests, dtype=np.uint64)
        strata = _strata(scan, len(digests))
        validation_share = 0.0 if has_validation_file else config.validation_fraction
        assignment = assign_splits(digests, strata, validation_share, config.test_fraction)
        extra = _validation_file(config, counter, issues) if has_validation_file else None
        splits = {name: int((assignment == i).sum()) for i, name in enumerate(SPLITS)}
        if extra is not None:
            splits["validation"] = len(extra)
        report = build_report(scan, config, 0.0, splits, assignment == TRAIN)
        if report.valid and scan.format.name:
            spool.seek(0)
            report.outputs = _write_splits(spool, assignment, extra, run_dir, config.backend)
    report.seconds = time.perf_counter() - started
    write_report(report, run_dir)
    return report


def _strata(scan: Scan, n: int) -> np.ndarray:
    if scan.labels and len(scan.label_ids) == n:
        return np.frombuffer(scan.label_ids, dtype=np.uint16).astype(np.int32)
    return np.zeros(n, dtype=np.int32)


def _validation_file(
    config: RunConfig, counter: TokenCounter | None, issues: IssueLog
) -> list[bytes]:
    """Examples of the user's own validation file; its problems join the same report."""
    scan = Scan(config.validation_file, config, counter, issues=issues)
    return [scanned.encoded for scanned in scan]


def _write_splits(
    spool: IO[bytes], assignment: np.ndarray, extra: list[bytes] | None, run_dir: str, backend: str
) -> dict[str, str]:
    paths = {name: join(run_dir, "data", f"{name}.jsonl") for name in SPLITS}
    outs = {name: open_output(path) for name, path in paths.items()}
    gemini_outs = {}
    if backend == "gemini":
        for name in ("train", "validation"):
            paths[f"gemini/{name}"] = join(run_dir, "data", "gemini", f"{name}.jsonl")
            gemini_outs[name] = open_output(paths[f"gemini/{name}"])
    try:
        for line, which in zip(spool, assignment, strict=True):
            name = SPLITS[which]
            if extra is not None and which == VALIDATION:
                continue
            outs[name].write(line)
            if name in gemini_outs:
                gemini_outs[name].write(orjson.dumps(to_gemini(orjson.loads(line))) + b"\n")
        for encoded in extra or ():
            outs["validation"].write(encoded + b"\n")
            if gemini_outs:
                gemini_outs["validation"].write(
                    orjson.dumps(to_gemini(orjson.loads(encoded))) + b"\n"
                )
    finally:
        for out in [*outs.values(), *gemini_outs.values()]:
            out.close()
    return paths


def write_report(report: Report, run_dir: str) -> None:
    report_json = orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2)
    write_all(join(run_dir, "validation", "report.json"), report_json)
    write_all(join(run_dir, "validation", "report.md"), render_markdown(report).encode())
