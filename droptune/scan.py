"""One streaming pass over a source: records in, valid canonical examples out.

    records (reader) -> format detection -> schema -> to_chat -> turn checks
        -> content hash -> tokens (batched; in worker processes for big inputs)

The content hash is XXH3-64 (`xxhash`) of the canonical record's JSON: a frozen, portable
algorithm (duplicates and the split depend on its values), non-cryptographic because nothing
here needs that, and several times faster than blake2b (`bench/validate_bench.py` measures
both on the same records).

Problems go to the issue log. Nothing is kept per example but a few numbers (hash, line,
token count, label) in a `Ledger`, whose memory stays flat as files grow; `droptune.summary`
turns them into the dataset-level checks of the report.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain, islice

import orjson
import xxhash

from droptune import checks, limits
from droptune.config import RunConfig
from droptune.counting import OrderedCounts, worth_a_pool
from droptune.errors import TokenizerError
from droptune.formats import BY_NAME, Example, Format, RecordProblem, classify
from droptune.formats.export import group_sessions
from droptune.formats.schema import load_schema
from droptune.issues import CATALOGUE, Issue, IssueLog, Severity
from droptune.ledger import Ledger
from droptune.reader import RecordReader, Row
from droptune.report import FormatDecision
from droptune.storage import open_input
from droptune.tokens import EstimateCounter, TokenCounter, counter_for
from droptune.unread import UnreadKeys

DETECTION_SAMPLE = 200
TOKEN_BATCH = 512
Progress = Callable[[int, int | None], None]  # (bytes read, total bytes or None)


@dataclass(slots=True)
class Scanned:
    """A valid example as it leaves the scan."""

    line: int
    example: Example
    encoded: bytes  # orjson of the canonical record, written to data/*.jsonl
    digest: int
    tokens: int


class Scan:
    """One pass over one source. Iterate it for valid examples; then call `report()`."""

    def __init__(
        self,
        uri: str,
        config: RunConfig,
        counter: TokenCounter | None = None,
        progress: Progress | None = None,
        issues: IssueLog | None = None,
        count_tokens: bool = True,
    ) -> None:
        self.uri, self.config, self.progress = uri, config, progress
        self.count_tokens = count_tokens
        self.issues = issues or IssueLog(config.max_issues_per_code)
        self.counter = counter
        self.records = self.invalid = 0
        self.format = FormatDecision("jsonl", None, None, "not read yet")
        self.ledger = Ledger()
        self.token_limit, self.over_limit_code = limits.tokens_per_example(config)
        self.unread = UnreadKeys()  # keys nothing reads: warned once each at the end
        self.broken_sessions: set[str | int] = set()  # conversation exports: refused members
        self.labels: dict[str, int] = {}  # label -> id; its stratum in the ledger is id + 1
        # The system prompt every valid example shares (None: none, or they differ), which
        # the tuned model expects: `droptune runs ask` sends it.
        self.system_prompt: str | None = None
        self._systems_seen, self._systems_agree = 0, True
        self.size: int | None = None
        self.bytes = 0
        self.tokenizer_seconds = 0.0  # loading the counter, when this scan loaded it

    @property
    def valid(self) -> int:
        """Valid examples so far."""
        return len(self.ledger)

    def close(self) -> None:
        self.ledger.close()

    def __enter__(self) -> Scan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the pass -------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Scanned]:
        stream, self.size = open_input(self.uri)
        counts: OrderedCounts | None = None
        try:
            reader = RecordReader(stream, self.uri, self.issues, self.config.column_map)
            self.format.container = reader.container
            pending: list[Scanned] = []
            keep, progress = self._keep, self.progress
            for n, scanned in enumerate(self._valid(reader)):
                if self.count_tokens:  # counted in batches: the tokenizer takes many at once
                    pending.append(scanned)
                    if len(pending) == TOKEN_BATCH:
                        counts = self._submit(counts, pending)
                        yield from self._counted(counts.done())
                        pending = []
                else:  # nothing to wait for: no batch, no per-batch objects kept alive
                    keep(scanned)
                    yield scanned
                if progress and n % 8192 == 0:
                    progress(_tell(stream), self.size)
            if pending:
                counts = self._submit(counts, pending)
            if counts is not None:
                yield from self._counted(counts.done(wait=True))
            self.bytes = _tell(stream) or reader.bytes_read
        finally:
            if counts is not None:
                counts.close()
            if stream is not sys.stdin.buffer:
                stream.close()

    def _valid(self, reader: RecordReader) -> Iterator[Scanned]:
        rows = iter(reader)
        sample = list(islice(rows, DETECTION_SAMPLE))
        fmt = self._decide_format(sample)
        if fmt is None:
            self.records = len(sample) + sum(1 for _ in rows)
            return
        rows = self._renamed(chain(sample, rows), reader.container)
        yield from self._checked(self._examples(fmt, rows))
        for issue in self.unread.issues(fmt, self.records, self.uri):
            self.issues.add(issue)

    def _checked(self, examples: Iterator[tuple[int, Example]]) -> Iterator[Scanned]:
        for line, example in examples:
            if self._check(line, example):
                try:
                    encoded = orjson.dumps(example.to_record())
                except TypeError as exc:  # what Python's json let through, orjson refuses
                    self._unstorable(line, str(exc))
                    continue
                digest = xxhash.xxh3_64_intdigest(encoded)
                if self._systems_agree:
                    self._note_system(example)
                yield Scanned(line, example, encoded, digest, 0)
            else:
                self.invalid += 1

    def _unstorable(self, line: int, why: str) -> None:
        self.invalid += 1
        if "Integer" in why:  # orjson keeps integers within 64 bits
            said = "a number is an integer beyond 64 bits; write it as a string or a float"
            self._issue("invalid_type", said, line, "$")
        else:  # a lone surrogate (\ud800)
            self._issue("invalid_utf8", "text holds a lone UTF-16 surrogate escape", line, "$")

    def _note_system(self, example: Example) -> None:
        first = example.messages[0] if example.messages else {}
        text = first.get("content") if first.get("role") == "system" else None
        if not self._systems_seen:
            self.system_prompt = text
        elif text != self.system_prompt:
            self.system_prompt, self._systems_agree = None, False
        self._systems_seen += 1

    def _renamed(self, rows: Iterator[Row], container: str) -> Iterator[Row]:
        mapping = self.config.column_map
        if not mapping or container == "delimited":  # the CSV reader maps columns itself
            return rows
        return (
            Row(r.line, {mapping.get(k, k): v for k, v in r.value.items()})
            if type(r.value) is dict
            else r
            for r in rows
        )

    def _examples(self, fmt: Format, rows: Iterator[Row]) -> Iterator[tuple[int, Example]]:
        schema = load_schema(fmt.schema)
        is_valid, matches, to_chat = schema.is_valid, fmt.matches, fmt.to_chat
        good_rows = self._good_rows(fmt, rows, is_valid, matches, schema.fields)
        if fmt.groups_records:
            good_rows = self._whole_sessions(group_sessions(good_rows))
        system = self.config.system_instruction
        for line, record in good_rows:
            try:
                example = to_chat(record)
            except RecordProblem as problem:
                self.invalid += 1
                self._issue(problem.code, problem.message, line, problem.path)
                continue
            if example.unread:
                self.unread.in_messages(line, example.unread)
            if system:
                example.give_system(system)
            yield line, example

    def _good_rows(self, fmt, rows, is_valid, matches, fields) -> Iterator[tuple[int, dict]]:
        for row in rows:
            self.records += 1
            record = row.value
            if type(record) is dict and matches(record) and is_valid(record):
                if not fields.issuperset(record):
                    self.unread.fields(row.line, record.keys() - fields)
                yield row.line, record
            else:
                self.invalid += 1
                self._record_problems(fmt, row)
                if fmt.groups_records and type(record) is dict:
                    session = record.get("session_id")
                    if isinstance(session, str | int):
                        self.broken_sessions.add(session)

    def _whole_sessions(self, sessions: Iterator[tuple[int, dict]]) -> Iterator[tuple[int, dict]]:
        """The sessions none of whose messages was refused: a conversation without one of its
        messages would say something else. (Sessions come once the file is read through.)"""
        for line, session in sessions:
            if session["session_id"] not in self.broken_sessions:
                yield line, session
                continue
            self.invalid += 1
            self._issue(
                "incomplete_session",
                f"session {session['session_id']!r} has a message that is not valid (reported "
                "at its line), so the whole session is left out",
                line,
                "$.session_id",
            )

    def _record_problems(self, fmt: Format, row: Row) -> None:
        record = row.value
        if type(record) is not dict:
            kind = type(record).__name__ if record is not None else "null"
            self._issue("not_an_object", f"expected a JSON object, found {kind}", row.line, "$")
            return
        kind = classify(record)
        if kind == "preference":
            self._issue("preference_data", "chosen/rejected or boolean-label record", row.line, "$")
        elif kind is not None and kind != fmt.name:
            self._issue(
                "format_mismatch",
                f"this record looks like {BY_NAME[kind].title}, but the file is {fmt.title} "
                f"(decided from the first records)",
                row.line,
                "$",
            )
        else:
            problems = load_schema(fmt.schema).problems(record)
            for p in problems:
                self._issue(p.code, p.message, row.line, p.path)
            if not problems:
                self._issue(
                    "format_mismatch", f"expected {fmt.title}, e.g. {fmt.example}", row.line, "$"
                )

    def _check(self, line: int, example: Example) -> bool:
        if example.messages is None:
            if not example.text.strip():
                self._issue("empty_text", "the text is empty", line, "$.text")
                return False
            return True
        ok = True
        for code, i, message in checks.turn_problems(example):
            self._issue(code, message, *self._where(example, line, i))
            ok = False
        if example.tools or any("tool_calls" in m for m in example.messages):
            for code, i, j, message in checks.tool_call_problems(example):
                at, path = self._where(example, line, i)
                if path.endswith(".content"):
                    path = path.removesuffix(".content") + f".tool_calls[{j}].function"
                    path += ".arguments" if code == "invalid_tool_arguments" else ".name"
                self._issue(code, message, at, path)
                ok = ok and CATALOGUE[code].severity is not Severity.ERROR
        if self.config.backend == "gemini" and checks.uses_tools(example):
            self._issue(
                "tool_calls_unsupported", "Gemini tuning data here takes text turns only", line, "$"
            )
            ok = False
        if self.config.backend == "gemini" and (i := checks.first_unweighted(example)) is not None:
            self._issue(
                "weight_unsupported",
                "this assistant turn has weight 0, but Gemini tuning learns every model turn",
                *self._where(example, line, i),
            )
        if self.config.backend == "gemini" and (i := checks.first_reasoning(example)) is not None:
            self._issue(
                "reasoning_unsupported",
                "Gemini tuning data carries no reasoning: this turn's `reasoning_content` is "
                "left out, the answer is learned without it",
                *self._where(example, line, i),
            )
        if ok and (i := checks.has_placeholder(example)) is not None:
            self._issue(
                "template_placeholder",
                "a {{placeholder}} in the text",
                *self._where(example, line, i),
            )
        return ok

    @staticmethod
    def _where(example: Example, line: int, i: int) -> tuple[int, str]:
        i = max(0, min(i, len(example.origins) - 1))
        return (example.lines[i] if example.lines else line), example.origins[i]

    def _counted(self, batches: Iterator[tuple[list[Scanned], list[int]]]) -> Iterator[Scanned]:
        gaps = self.counter.unrendered
        for batch, counts in batches:
            for scanned, n in zip(batch, counts, strict=True):
                if gaps and not self._rendered_whole(scanned, gaps):
                    continue
                scanned.tokens = n
                self._keep(scanned)
                yield scanned

    def _rendered_whole(self, scanned: Scanned, gaps: frozenset[str]) -> bool:
        """False (the example refused) when the base model's chat template would drop its
        tool calls or tools: the trainer would learn a call as an empty answer. Dropped
        reasoning is a warning: the answers stay."""
        lost = checks.parts_used(scanned.example.messages, scanned.example.tools) & gaps
        if not lost:
            return True
        said = f"the chat template of {self.config.base_model} leaves out {', '.join(sorted(lost))}"
        if not lost & checks.TOOL_PARTS:
            self._issue("template_drops_reasoning", said, scanned.line, "$")
            return True
        self.invalid += 1
        self._issue("template_drops_tools", said, scanned.line, "$")
        return False

    def _keep(self, scanned: Scanned) -> None:
        """Record the few numbers the dataset-level checks need."""
        label = scanned.example.label
        stratum = 0 if label is None else self.labels.setdefault(label, len(self.labels)) + 1
        self.ledger.add(scanned.digest, scanned.line, scanned.tokens, stratum)
        if scanned.tokens > self.token_limit:
            self._issue(
                self.over_limit_code,
                f"{scanned.tokens:,} tokens, limit {self.token_limit:,}",
                scanned.line,
                "$",
            )

    def _submit(self, counts: OrderedCounts | None, batch: list[Scanned]) -> OrderedCounts:
        counts = counts or self._counts()
        counts.add([s.encoded for s in batch], batch)
        return counts

    def _counts(self) -> OrderedCounts:
        """The batch counter: the exact one where it loads (in worker processes for big
        inputs), else a labelled estimate."""
        if self.counter is None:
            started = time.perf_counter()
            try:
                self.counter = counter_for(self.config.backend, self.config.base_model)
            except TokenizerError as exc:
                self._issue("tokenizer_unavailable", str(exc), None, None)
                self.counter = EstimateCounter()
            self.tokenizer_seconds = time.perf_counter() - started
        return OrderedCounts(self.counter, worth_a_pool(self.counter, self.size))

    def _issue(self, code: str, message: str, line: int | None, path: str | None) -> None:
        self.issues.add(Issue(code, message, line=line, path=path, file=self.uri))

    # --- format detection -----------------------------------------------------------------
    def _decide_format(self, sample: list[Row]) -> Format | None:
        if self.config.format:
            fmt = BY_NAME[self.config.format]
            self.format = FormatDecision(
                self.format.container,
                fmt.name,
                fmt.title,
                "set by the run configuration (`format`)",
            )
            return self._backend_accepts(fmt)
        votes: dict[str, list[int]] = {}
        for row in sample:
            value = row.value
            if type(value) is dict and self.config.column_map:
                value = {self.config.column_map.get(k, k): v for k, v in value.items()}
            kind = classify(value)
            if kind is not None:
                votes.setdefault(kind, []).append(row.line)
        if not votes:
            self._no_format(sample)
            return None
        winner, lines = max(votes.items(), key=lambda kv: len(kv[1]))
        total = sum(len(v) for v in votes.values())
        if winner == "preference":
            self._issue(
                "preference_data",
                "preference data: not supported for supervised tuning",
                lines[0],
                "$",
            )
            self.format = FormatDecision(
                self.format.container,
                "preference",
                "Preference data",
                "chosen/rejected or boolean labels",
            )
            return None
        if len(lines) < 0.9 * total:
            ranges = "; ".join(
                f"{BY_NAME[k].title if k in BY_NAME else k}: lines {_ranges(v)}"
                for k, v in votes.items()
            )
            self._issue("mixed_formats", f"records follow different formats — {ranges}", None, None)
            self.format = FormatDecision(self.format.container, None, None, f"mixed: {ranges}")
            return None
        fmt = BY_NAME[winner]
        reason = f"{len(lines)} of the first {total} records match, e.g. {fmt.example}"
        self.format = FormatDecision(self.format.container, fmt.name, fmt.title, reason)
        return self._backend_accepts(fmt)

    def _backend_accepts(self, fmt: Format) -> Format | None:
        if not fmt.chat_only and self.config.backend == "gemini":
            self._issue("text_only_unsupported", "plain text data cannot tune Gemini", None, None)
            return None
        return fmt

    def _no_format(self, sample: list[Row]) -> None:
        objects = [r for r in sample if type(r.value) is dict]
        if not sample:
            if not self.issues.errors:  # a file of bad lines is not reported as empty too
                self._issue("empty_file", "no records found", None, None)
        elif not objects:
            self._issue("not_an_object", "records are not JSON objects", sample[0].line, "$")
        else:
            keys = ", ".join(sorted(objects[0].value)[:8]) or "none"
            self._issue(
                "unknown_format",
                f"no supported format has these keys ({keys})",
                objects[0].line,
                "$",
            )
        self.format = FormatDecision(self.format.container, None, None, self._unmatched(sample))

    def _unmatched(self, sample: list[Row]) -> str:
        """Why no format was decided: nothing parsed (and where parsing failed), or no
        format has the records' keys."""
        if sample:
            return "no supported format matched"
        failed = next(
            (
                i
                for i in self.issues.examples
                if i.code in ("json_syntax", "invalid_utf8", "too_deep")
            ),
            None,
        )
        if failed is None:
            return "no records"
        said = failed.message.split(" at column ")[0]  # the place is said once, below
        if failed.line and failed.column:
            return f"not parsed: {said} at {failed.line}:{failed.column}"
        return f"not parsed: {said}" + (f" at line {failed.line}" if failed.line else "")


def _ranges(lines: list[int]) -> str:
    return f"{lines[0]}" if len(lines) == 1 else f"{lines[0]}–{lines[-1]} ({len(lines)} records)"


def _tell(stream) -> int | None:
    try:
        return stream.tell()
    except (OSError, AttributeError, ValueError):
        return None
