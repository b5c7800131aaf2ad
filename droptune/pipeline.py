"""The data plane's three operations over a source file (path, `-`, or gs:// URI).

- `validate`: scan and report; nothing written.
- `convert`: every valid example, in one target format, to one output.
- `prepare`: a run's `data/` folder — deterministic train/validation/test split in the
  canonical chat format (and the Gemini format for the gemini backend) — plus
  `validation/report.json` and `report.md`. Data files are written only for valid datasets.
  Labelled text that came without a system instruction gets one naming the task and its
  labels (droptune/instruction.py), in every split alike.

All three stream: examples flow through as they are read; `prepare` spools canonical lines to
a local temporary file because a split by content hash is known only once every hash is, then
places each line by the split plan as it reads the spool back.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Literal

import orjson

from droptune.config import RunConfig
from droptune.formats.gemini import to_gemini
from droptune.instruction import classification_instruction, token_overhead, with_system
from droptune.issues import IssueLog
from droptune.report import Report, render_markdown
from droptune.scan import Progress, Scan
from droptune.split import SPLITS, plan_split
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
    with Scan(uri, config, counter, progress, count_tokens=count_tokens) as scan:
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
    with Scan(uri, config, counter, progress) as scan, open_output(output) as out:
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
    own_validation = config.validation_file is not None
    with (
        Scan(uri, config, counter, progress, issues) as scan,
        tempfile.TemporaryFile() as spool,
        tempfile.TemporaryFile() as validation_spool,
    ):
        first: bytes | None = None
        for scanned in scan:
            spool.write(scanned.encoded + b"\n")
            first = first or scanned.encoded
        validation_share = 0.0 if own_validation else config.validation_fraction
        labels = sorted(scan.labels, key=scan.labels.__getitem__)  # stratum order
        plan = plan_split(scan.ledger, validation_share, config.test_fraction, labels)
        train_tokens = plan.train_tokens
        instruction = _written_instruction(scan, config, labels)
        if instruction and first and scan.count_tokens and scan.counter is not None:
            overhead = token_overhead(scan.counter, orjson.loads(first), instruction)
            scan.ledger.shift_tokens(overhead)
            train_tokens += overhead * dict(plan.counts)["train"]
        splits = dict(plan.counts)
        if own_validation:
            splits["validation"] = _spool_validation_file(config, counter, issues, validation_spool)
        report = build_report(scan, config, 0.0, splits, train_tokens)
        if instruction:
            report.system_prompt, report.system_prompt_source = instruction, "droptune"
        if report.valid and scan.format.name:
            spool.seek(0)
            validation_spool.seek(0)
            report.outputs = _write_splits(
                zip(spool, plan.in_file_order(scan.ledger), strict=True),
                validation_spool if own_validation else None,
                run_dir,
                config.backend,
                instruction,
            )
    report.seconds = time.perf_counter() - started
    write_report(report, run_dir)
    return report


def _written_instruction(scan: Scan, config: RunConfig, labels: list[str]) -> str | None:
    """The system instruction droptune writes: for text + label data with none of its own
    (no `system_instruction` setting, no system turn in the examples)."""
    if scan.format.name != "classification" or not labels:
        return None
    if config.system_instruction or scan.system_prompt:
        return None
    return classification_instruction(labels)


def _spool_validation_file(
    config: RunConfig, counter: TokenCounter | None, issues: IssueLog, spool: IO[bytes]
) -> int:
    """Spool the examples of the user's own validation file; its problems join the same
    report. Returns how many there are."""
    with Scan(config.validation_file, config, counter, issues=issues) as scan:
        for scanned in scan:
            spool.write(scanned.encoded + b"\n")
        return scan.valid


def _write_splits(
    placed: Iterator[tuple[bytes, int]],
    own_validation: IO[bytes] | None,
    run_dir: str,
    backend: str,
    instruction: str | None = None,
) -> dict[str, str]:
    """Write each (canonical line, split index) to its split's file, and the Gemini copies;
    the user's own validation file, when given, replaces the validation split. An
    `instruction` opens every conversation that has no system turn."""
    paths = {name: join(run_dir, "data", f"{name}.jsonl") for name in SPLITS}
    outs = {name: open_output(path) for name, path in paths.items()}
    gemini_outs = {}
    if backend == "gemini":
        for name in ("train", "validation"):
            paths[f"gemini/{name}"] = join(run_dir, "data", "gemini", f"{name}.jsonl")
            gemini_outs[name] = open_output(paths[f"gemini/{name}"])

    def put(name: str, line: bytes) -> None:
        if instruction:
            line = orjson.dumps(with_system(orjson.loads(line), instruction)) + b"\n"
        outs[name].write(line)
        if name in gemini_outs:
            gemini_outs[name].write(orjson.dumps(to_gemini(orjson.loads(line))) + b"\n")

    try:
        for line, which in placed:
            put(SPLITS[which], line)
        for line in own_validation or ():
            put("validation", line)
    finally:
        for out in [*outs.values(), *gemini_outs.values()]:
            out.close()
    return paths


def write_report(report: Report, run_dir: str) -> None:
    report_json = orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2)
    write_all(join(run_dir, "validation", "report.json"), report_json)
    write_all(join(run_dir, "validation", "report.md"), render_markdown(report).encode())
