"""Streaming readers: bytes in, (line, record) out, file-level problems into the issue log.

Three containers, told apart by the first bytes, never by the file name:
JSONL (`{` first), a JSON array (`[` first), and CSV/TSV with or without a header row.
Memory stays flat: JSONL and CSV are read a line at a time and a JSON array an element at a
time. Lines are 1-based; byte offsets count from the start of the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from droptune.issues import Issue, IssueLog

BOM = codecs.BOM_UTF8
# Column names (lower case) that make a first CSV row a header.
HEADER_WORDS = frozenset(
    {
        "text",
        "label",
        "sentence",
        "review",
        "class",
        "category",
        "instruction",
        "input",
        "output",
        "question",
        "answer",
        "prompt",
        "completion",
        "response",
        "query",
        "system",
        "textinput",
        "session_id",
        "role",
        "content",
        "related_message",
        "message_id",
    }
)
# Header synonyms mapped onto the names formats use.
COLUMN_SYNONYMS = {"sentence": "text", "review": "text", "class": "label", "category": "label"}
_ARRAY_CHUNK = 1 << 20
_ARRAY_MAX_ELEMENT = 256 << 20


@dataclass(slots=True)
class Row:
    line: int
    value: Any


def sniff_container(head: bytes) -> str:
    """'jsonl', 'json_array' or 'delimited', from the first bytes of a file.

    >>> sniff_container(b'  [{"a": 1}]'), sniff_container(b'{"a": 1}'), sniff_container(b"a,b")
    ('json_array', 'jsonl', 'delimited')
    """
    stripped = head.removeprefix(BOM).lstrip()
    if stripped.startswith(b"["):
        return "json_array"
    if stripped.startswith(b"{") or not stripped:
        return "jsonl"
    return "delimited"


class RecordReader:
    """Reads records from a binary stream; `container` says which reader was chosen."""

    def __init__(
        self,
        stream: IO[bytes],
        name: str,
        issues: IssueLog,
        column_map: dict[str, str] | None = None,
    ) -> None:
        self.stream = stream if hasattr(stream, "peek") else io.BufferedReader(stream)  # type: ignore[arg-type]
        self.name = name
        self.issues = issues
        self.column_map = column_map or {}
        self.bytes_read = 0
        self.pretty_printed = False
        head = self.stream.peek(4096)[:4096]
        self.container = sniff_container(head)
        if head.startswith(BOM):
            self._issue("bom", "the file starts with a UTF-8 byte-order mark (ignored)", line=1)
            self.stream.read(len(BOM))
            self.bytes_read = len(BOM)

    def __iter__(self) -> Iterator[Row]:
        if self.container == "json_array":
            return self._json_array()
        if self.container == "delimited":
            return self._delimited()
        return self._jsonl()

    def _issue(self, code: str, message: str, **where: Any) -> None:
        self.issues.add(Issue(code, message, file=self.name, **where))

    # --- JSONL ----------------------------------------------------------------------------
    def _jsonl(self) -> Iterator[Row]:
        loads, decode_error = orjson.loads, orjson.JSONDecodeError
        offset = self.bytes_read
        for line, raw in enumerate(self.stream, start=1):
            try:
                value = loads(raw)
            except decode_error:
                self._bad_line(raw, line, offset)
                if self.pretty_printed:
                    return
            else:
                if line == 1 and raw.endswith(b"\r\n"):
                    self._issue("crlf_line_endings", "lines end with CRLF", line=1)
                yield Row(line, value)
            offset += len(raw)
        self.bytes_read = offset

    def _bad_line(self, raw: bytes, line: int, offset: int) -> None:
        if not raw.strip():
            self._issue("blank_line", "blank line skipped", line=line)
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._issue(
                "invalid_utf8",
                f"byte 0x{raw[exc.start]:02x} at byte offset {offset + exc.start} is not valid "
                "UTF-8",
                line=line,
                column=exc.start + 1,
                byte_offset=offset + exc.start,
            )
            return
        try:
            json.loads(text)
            message = "invalid JSON"  # orjson is stricter (e.g. lone surrogates)
            column = None
        except json.JSONDecodeError as exc:
            message, column = f"invalid JSON: {exc.msg} at column {exc.colno}", exc.colno
        if line == 1 and text.strip() == "{":
            self.pretty_printed = True
            message = (
                "the file is one pretty-printed JSON object, not a dataset: write JSONL (one "
                "object per line) or a JSON array of objects"
            )
        self._issue("json_syntax", message, line=line, column=column)

    # --- JSON array -----------------------------------------------------------------------
    def _json_array(self) -> Iterator[Row]:
        reader = io.TextIOWrapper(self.stream, encoding="utf-8", errors="strict")
        decoder = json.JSONDecoder()
        buf, pos, line, eof = "", 0, 1, False  # `line` is the line number at buf[0]

        def fill() -> bool:
            nonlocal buf, pos, line, eof
            try:
                chunk = reader.read(_ARRAY_CHUNK)
            except UnicodeDecodeError as exc:
                self._issue("invalid_utf8", f"not valid UTF-8: {exc.reason}", line=line)
                eof, chunk = True, ""
            if not chunk:
                eof = True
                return False
            line += buf.count("\n", 0, pos)
            buf, pos = buf[pos:] + chunk, 0
            return True

        def skip_ws() -> str:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not fill():
                    return buf[pos] if pos < len(buf) else ""

        def here(at: int) -> int:
            return line + buf.count("\n", 0, at)

        if skip_ws() != "[":
            self._issue("json_syntax", "expected a JSON array", line=here(pos))
            return
        pos += 1
        if skip_ws() == "]":
            return
        while True:
            start = pos
            while True:
                try:
                    value, end = decoder.raw_decode(buf, start)
                    break
                except json.JSONDecodeError as exc:
                    if eof or len(buf) - start > _ARRAY_MAX_ELEMENT or not fill():
                        self._issue(
                            "json_syntax",
                            f"invalid JSON: {exc.msg}",
                            line=here(exc.pos),
                            column=exc.pos - buf.rfind("\n", 0, exc.pos),
                        )
                        return
                    start = pos  # fill() dropped what was consumed
            yield Row(here(start), value)
            pos = end
            char = skip_ws()
            if char == "]":
                return
            if char != ",":
                self._issue("json_syntax", "expected ',' or ']' after an element", line=here(pos))
                return
            pos += 1
            skip_ws()

    # --- CSV / TSV ------------------------------------------------------------------------
    def _delimited(self) -> Iterator[Row]:
        text = io.TextIOWrapper(self.stream, encoding="utf-8", errors="strict", newline="")
        try:
            first = text.readline()
        except UnicodeDecodeError as exc:
            self._issue("invalid_utf8", f"not valid UTF-8: {exc.reason}", line=1)
            return
        delimiter = self._delimiter(first)
        rows = csv.reader(io.StringIO(first), delimiter=delimiter)
        first_row = next(rows, [])
        columns = self._header(first_row)
        if columns is None:
            return
        has_header = columns is not None and self._is_header(first_row)
        reader = csv.reader(text, delimiter=delimiter)
        offset_line = 1
        if not has_header:
            yield from self._rows([(1, first_row)], columns)
        try:
            numbered = ((offset_line + reader.line_num, row) for row in reader)
            yield from self._rows(numbered, columns)
        except UnicodeDecodeError as exc:
            self._issue(
                "invalid_utf8", f"not valid UTF-8: {exc.reason}", line=offset_line + reader.line_num
            )
        except csv.Error as exc:
            self._issue(
                "csv_row_length", f"unreadable row: {exc}", line=offset_line + reader.line_num
            )

    def _delimiter(self, first_line: str) -> str:
        """Tab or comma: the file name's extension when it says, else the first line's tabs."""
        if self.name.lower().endswith((".tsv", ".tab")):
            return "\t"
        if self.name.lower().endswith(".csv"):
            return ","
        return "\t" if "\t" in first_line else ","

    def _is_header(self, row: list[str]) -> bool:
        if self.column_map and all(key.isdigit() for key in self.column_map):
            return False
        names = {cell.strip().lower() for cell in row} | set()
        return bool(names & (HEADER_WORDS | {k.lower() for k in self.column_map}))

    def _header(self, row: list[str]) -> list[str] | None:
        """Field names for each column, or None (issue logged) when they cannot be known."""
        if self._is_header(row):
            names = [cell.strip() for cell in row]
            names = [self.column_map.get(n, COLUMN_SYNONYMS.get(n.lower(), n)) for n in names]
            return names
        if self.column_map and all(key.isdigit() for key in self.column_map):
            return [self.column_map.get(str(i), f"column_{i}") for i in range(len(row))]
        if len(row) == 2:  # the common headerless classification file: text, label
            return ["text", "label"]
        self._issue(
            "csv_no_header",
            f"the first row ({', '.join(repr(c[:20]) for c in row[:4])}) is not a header "
            "droptune recognises",
            line=1,
        )
        return None

    def _rows(self, numbered: Any, columns: list[str]) -> Iterator[Row]:
        width = len(columns)
        for line, row in numbered:
            if not row:
                self._issue("blank_line", "blank line skipped", line=line)
                continue
            if len(row) != width:
                self._issue(
                    "csv_row_length",
                    f"{len(row)} fields, expected {width} ({', '.join(columns)})",
                    line=line,
                )
                continue
            yield Row(line, dict(zip(columns, row, strict=True)))
