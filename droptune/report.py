"""The validation report: facts as data, and renderers for machines (JSON) and people.

`validation/report.json` is `Report.to_dict()`; `report.md` is `render_markdown`; the CLI
prints `render_issue_lines` (`file:line: $.path: message`) and a summary table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from droptune.cost import CostEstimate
from droptune.issues import CATALOGUE, Issue, Severity


@dataclass
class FormatDecision:
    container: str  # jsonl | json_array | delimited
    name: str | None  # a droptune.formats name; None when no format could be decided
    title: str | None
    reason: str


@dataclass
class TokenStats:
    method: str  # exact | estimate
    description: str
    examples: int
    total: int
    min: int
    mean: float
    p50: int
    p95: int
    max: int
    train_total: int
    epochs: float  # set, or what droptune.sizing chooses (a GPU run's passes)
    billable: int  # train tokens x epochs
    limit: int
    over_limit: int
    load_seconds: float  # loading the tokenizer, part of the report's `seconds`
    # tokens per example: counts[i] examples have edges[i] <= tokens < edges[i + 1]
    histogram: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class LimitCheck:
    name: str
    limit: int
    value: int
    ok: bool
    detail: str = ""


@dataclass
class Report:
    file: str
    backend: str
    base_model: str
    format: FormatDecision
    counts: dict[str, Any]
    issues: list[Issue]
    issue_counts: dict[str, int]
    tokens: TokenStats | None = None
    cost: CostEstimate | None = None
    limits: list[LimitCheck] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    system_prompt: str | None = None  # the one every example has, which the model expects
    system_prompt_source: str = "data"  # data (the examples or the run's settings) | droptune

    @property
    def errors(self) -> int:
        return sum(
            n for c, n in self.issue_counts.items() if CATALOGUE[c].severity == Severity.ERROR
        )

    @property
    def warnings(self) -> int:
        return sum(self.issue_counts.values()) - self.errors

    @property
    def valid(self) -> bool:
        return self.errors == 0

    def shown_counts(self) -> dict[str, int]:
        """Issues listed in `issues`, per code."""
        shown: dict[str, int] = {}
        for issue in self.issues:
            shown[issue.code] = shown.get(issue.code, 0) + 1
        return shown

    def cut_codes(self) -> dict[str, tuple[int, int]]:
        """(listed, found) of the codes whose list was cut short."""
        shown = self.shown_counts()
        return {
            code: (shown.get(code, 0), total)
            for code, total in self.issue_counts.items()
            if shown.get(code, 0) < total
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "file": self.file,
            "backend": self.backend,
            "base_model": self.base_model,
            "format": asdict(self.format),
            "counts": self.counts,
            "errors": self.errors,
            "warnings": self.warnings,
            "issue_counts": self.issue_counts,
            # Per code: how many are listed in `issues` and how many were found, which differ
            # where max_issues_per_code cut the list.
            "issues_shown": self.shown_counts(),
            "issues_total": self.issue_counts,
            "issues": [issue.to_dict() for issue in self.issues],
            "tokens": asdict(self.tokens) if self.tokens else None,
            "cost": asdict(self.cost) if self.cost else None,
            "limits": [asdict(limit) for limit in self.limits],
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "outputs": self.outputs,
            "system_prompt": self.system_prompt,
            "system_prompt_source": self.system_prompt_source,
        }


def unread_report(
    file: str, backend: str, base_model: str, issue: Issue, size: int | None = None
) -> Report:
    """The report of a file rejected before reading it (too large, gone, bad configuration)."""
    return Report(
        file=file,
        backend=backend,
        base_model=base_model,
        format=FormatDecision("unknown", None, None, "the file was not read"),
        counts={"records": 0, "valid": 0, "invalid": 0},
        issues=[issue],
        issue_counts={issue.code: 1},
        bytes=size or 0,
    )


def issue_line(issue: Issue, default_file: str) -> str:
    """`file:line: $.path: message [code]`, the form editors and CI logs link."""
    where = issue.file or default_file
    if issue.line is not None:
        where += f":{issue.line}"
        if issue.column is not None:
            where += f":{issue.column}"
    path = f" {issue.path}:" if issue.path else ""
    return f"{where}:{path} {issue.severity.value}: {issue.message} [{issue.code}]"


def render_issue_lines(report: Report) -> list[str]:
    return [issue_line(issue, report.file) for issue in report.issues]


def render_markdown(report: Report) -> str:
    verdict = "valid" if report.valid else "invalid"
    counts = report.counts
    out = [
        f"# Validation report: `{report.file}`",
        "",
        f"**Verdict: {verdict}** — {report.errors} error(s), {report.warnings} warning(s).",
        "",
        f"- Format: **{report.format.title or 'not recognised'}** ({report.format.container}). "
        f"{report.format.reason}",
        f"- Backend: `{report.backend}`, base model `{report.base_model}`",
        f"- Records read: {counts.get('records', 0)}; valid examples: {counts.get('valid', 0)}; "
        f"invalid: {counts.get('invalid', 0)}",
    ]
    splits = counts.get("splits")
    if splits:
        out.append("- Split: " + ", ".join(f"{name} {n}" for name, n in splits.items()))
    if counts.get("labels"):
        labels = ", ".join(f"`{k}` {v}" for k, v in counts["labels"].items())
        out.append(f"- Labels: {labels}")
    if report.system_prompt_source == "droptune":
        out.append(
            f"- System instruction, written by droptune (the data had none; set "
            f"`system_instruction` to use your own): {report.system_prompt}"
        )
    if report.tokens:
        t = report.tokens
        out += [
            "",
            "## Tokens",
            "",
            f"Counted with {t.description}.",
            "",
            "| examples | total | min | mean | p50 | p95 | max | train × epochs | over limit |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {t.examples} | {t.total:,} | {t.min} | {t.mean:.1f} | {t.p50} | {t.p95} | {t.max} "
            f"| {t.billable:,} | {t.over_limit} (> {t.limit:,}) |",
        ]
    if report.cost:
        c = report.cost
        price = f"${c.usd:,.2f}" if c.usd is not None else "not estimated"
        out += [
            "",
            f"**Estimated training cost:** {price} ({c.billable_tokens:,} tokens; {c.basis})",
        ]
    if report.limits:
        out += [
            "",
            "## Limits checked",
            "",
            "| limit | value | allowed | ok |",
            "|---|---|---|---|",
        ]
        out += [
            f"| {x.name} | {x.value:,} | {x.limit:,} | {'yes' if x.ok else '**no**'} |"
            for x in report.limits
        ]
    if report.issue_counts:
        out += [
            "",
            "## Issues",
            "",
            "| code | severity | count | how to fix |",
            "|---|---|---|---|",
        ]
        for code, n in sorted(
            report.issue_counts.items(),
            key=lambda kv: (CATALOGUE[kv[0]].severity != Severity.ERROR, kv[0]),
        ):
            kind = CATALOGUE[code]
            out.append(f"| `{code}` | {kind.severity.value} | {n} | {kind.hint} |")
        out += ["", "First occurrences:", "", "```"]
        out += render_issue_lines(report)
        out += ["```"]
    return "\n".join(out) + "\n"
