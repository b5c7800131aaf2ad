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
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
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
# A header word, in any case, as the formats spell it ("Label" is "label"; synonyms mapped).
COLUMN_NAMES = {word: word for word in HEADER_WORDS} | {
    "textinput": "textInput",
    "sentence": "text",
    "review": "text",
    "class": "label",
    "category": "label",
}
_HEAD = 4096  # bytes a container is told from
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")  # after a CR that no LF follows
_ARRAY_CHUNK = 1 << 20
MAX_LINE_BYTES = 32 << 20  # a line, array element or CSV field: parsed, ~14x this in memory
# Lists and objects inside each other, at most: no training format comes near it, and every
# recursive step after reading (schema checks, Python's own json on a line orjson refused at
# its 1,024) stays far from a recursion limit.
MAX_DEPTH = 64


def too_deep(value: Any, text: str | bytes, start: int = 0, end: int | None = None) -> bool:
    """Whether `value`, parsed from `text[start:end]`, nests lists or objects more than
    MAX_DEPTH deep. Counting the text's brackets first keeps it free for ordinary records.

    >>> deep = [[[]]]
    >>> too_deep(deep, "[[[]]]"), too_deep({"a": [1, 2]}, '{"a": [1, 2]}')
    (False, False)
    >>> nested = []
    >>> for _ in range(70):
    ...     nested = [nested]
    >>> too_deep(nested, "[" * 71 + "]" * 71)
    True
    """
    end = len(text) if end is None else end
    brackets = "[{" if isinstance(text, str) else b"[{"
    if text.count(brackets[0], start, end) + text.count(brackets[1], start, end) <= MAX_DEPTH:
        return False
    level: list[tuple[Any, int]] = [(value, 1)]
    while level:
        item, depth = level.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(item, dict):
            level.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            level.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return False


SKIPPED = object()  # an array element read past, its issue logged


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
        self._record_start: int | None = None  # CSV: the line the record being read starts on
        head = self._head()
        self.container = sniff_container(head)
        if head.startswith(BOM):
            self._issue("bom", "the file starts with a UTF-8 byte-order mark (ignored)", line=1)
            self.stream.read(len(BOM))
            self.bytes_read = len(BOM)

    def _head(self) -> bytes:
        """The first bytes, up to the first that is not white space. One peek() shows them
        for a file; a pipe may hand out a few bytes at a time, so read on and put what was
        read back in front of the stream."""
        head = self.stream.peek(_HEAD)[:_HEAD]
        if not head or head.removeprefix(BOM).strip():
            return head
        taken = b""
        while not taken.removeprefix(BOM).strip() and len(taken) < _ARRAY_CHUNK:
            chunk = self.stream.read1(_HEAD)
            if not chunk:
                break
            taken += chunk
        self.stream = io.BufferedReader(_Replay(taken, self.stream), _ARRAY_CHUNK)
        return taken

    def __iter__(self) -> Iterator[Row]:
        if self.container == "json_array":
            return self._json_array()
        if self.container == "delimited":
            return self._delimited()
        return self._jsonl()

    def _issue(self, code: str, message: str, **where: Any) -> None:
        self.issues.add(Issue(code, message, file=self.name, **where))

    def _invalid_utf8(
        self, exc: UnicodeDecodeError, line: int, line_offset: int, note: str = ""
    ) -> None:
        """The bad byte of a line that starts `line_offset` bytes into the file."""
        self.issues.add(self._utf8_issue(exc, line_offset + exc.start, line, exc.start + 1, note))

    def _utf8_issue(
        self, exc: UnicodeDecodeError, at: int, line: int, column: int, note: str = ""
    ) -> Issue:
        """`invalid_utf8` for the byte where `exc` failed, `at` bytes into the file."""
        return Issue(
            "invalid_utf8",
            f"byte 0x{exc.object[exc.start]:02x} at byte offset {at} is not valid UTF-8{note}",
            file=self.name,
            line=line,
            column=column,
            byte_offset=at,
        )

    # --- JSONL ----------------------------------------------------------------------------
    def _jsonl(self) -> Iterator[Row]:
        loads, decode_error = orjson.loads, orjson.JSONDecodeError
        offset = self.bytes_read
        readline, most = self.stream.readline, MAX_LINE_BYTES + 1
        line = 0
        while raw := readline(most):
            line += 1
            if len(raw) == most and not raw.endswith(b"\n"):
                offset += self._skip_too_large(raw, line)
                continue
            try:
                value = loads(raw)
            except decode_error:
                self._bad_line(raw, line, offset)
                if self.pretty_printed:
                    return
            else:
                if line == 1 and raw.endswith(b"\r\n"):
                    self._issue("crlf_line_endings", "lines end with CRLF", line=1)
                if too_deep(value, raw):
                    self._too_deep(line)
                else:
                    yield Row(line, value)
            offset += len(raw)
        self.bytes_read = offset

    def _skip_too_large(self, start: bytes, line: int) -> int:
        """`record_too_large` for a line that begins with `start` (the most a line may hold)
        and goes on: the rest is read past unkept. Returns the line's length in bytes."""
        self._issue(
            "record_too_large",
            f"line {line} is over {MAX_LINE_BYTES:,} bytes; skipped unread",
            line=line,
        )
        return len(start) + self._skip_line()

    def _skip_line(self) -> int:
        """Reads past the rest of the current line a chunk at a time; its length in bytes."""
        skipped = 0
        while chunk := self.stream.readline(_ARRAY_CHUNK):
            skipped += len(chunk)
            if chunk.endswith(b"\n"):
                break
        return skipped

    def _too_deep(self, line: int) -> None:
        self._issue(
            "too_deep",
            f"line {line} nests lists or objects more than {MAX_DEPTH} levels deep; skipped",
            line=line,
        )

    def _bad_line(self, raw: bytes, line: int, offset: int) -> None:
        if not raw.strip():
            self._issue("blank_line", "blank line skipped", line=line)
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._invalid_utf8(exc, line, offset)
            return
        text = text.rstrip("\r\n")  # an error at the end is on this line, not the next
        try:
            if too_deep(json.loads(text), text):  # orjson stops at 1,024 levels
                self._too_deep(line)
                return
            message = "invalid JSON"  # orjson is stricter (e.g. lone surrogates)
            column = None
        except json.JSONDecodeError as exc:
            message, column = f"invalid JSON: {exc.msg} at column {exc.colno}", exc.colno
        except RecursionError:  # past orjson's 1,024 levels, and Python's own limit
            self._too_deep(line)
            return
        if line == 1 and text.strip() == "{":
            self.pretty_printed = True
            message = (
                "the file is one pretty-printed JSON object, not a dataset: write JSONL (one "
                "object per line) or a JSON array of objects"
            )
        self._issue("json_syntax", message, line=line, column=column)

    # --- JSON array -----------------------------------------------------------------------
    def _json_array(self) -> Iterator[Row]:
        text = _ArrayText(self)
        try:
            if text.skip_ws() != "[":
                text.syntax("expected a JSON array", text.pos)
                return
            text.pos += 1
            if text.skip_ws() == "]":
                text.pos += 1
            else:
                while True:
                    element = text.element()
                    if element is None:
                        return
                    if element.value is not SKIPPED:
                        yield element
                    char = text.skip_ws()
                    if char == "]":
                        text.pos += 1
                        break
                    if char != ",":
                        text.syntax("expected ',' or ']' after an element", text.pos)
                        return
                    text.pos += 1
                    text.skip_ws()
            if text.skip_ws():
                text.syntax(
                    "text after the array's closing ']': a file holds one JSON array", text.pos
                )
        finally:
            if text.bad_byte is not None:
                self.issues.add(text.bad_byte)

    # --- CSV / TSV ------------------------------------------------------------------------
    def _delimited(self) -> Iterator[Row]:
        lines = self._text_lines()
        first = next(lines, "")
        if self._record_start not in (None, 1):
            return  # the first line is unreadable (reported): the columns cannot be known
        delimiter = self._delimiter(first)
        # The csv module's own field limit (128 KiB, process-wide) would end a file at its
        # first long text; a field, like a line, may be as large as a record can be.
        csv.field_size_limit(MAX_LINE_BYTES)
        records = self._numbered(csv.reader(chain([first], lines), delimiter=delimiter))
        # The first record, read as every other (it may span lines), after any blank lines.
        while (head := next(records, None)) is not None and not head[1]:
            self._issue("blank_line", "blank line skipped", line=head[0])
        if head is None:
            return
        columns = self._header(*head)
        if columns is None:
            return
        yield from self._rows(
            records if self._is_header(head[1]) else chain([head], records), columns
        )

    def _numbered(self, reader: Any) -> Iterator[tuple[int, list[str]]]:
        """(first line, fields) of each record. The reader takes exactly the lines of one
        record from the line iterator (no read-ahead), so the first line handed out since
        the last record is where this one starts."""
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # one record is lost; the reader goes on after it
                self._unreadable_record(exc)
            else:
                yield self._record_start or 0, row
            self._record_start = None

    def _unreadable_record(self, exc: csv.Error) -> None:
        line = self._record_start
        if "field limit" in str(exc):
            message = (
                f"a field over {MAX_LINE_BYTES:,} characters (a quote left open?): the record "
                "is skipped and reading goes on at the next line"
            )
            self._issue("record_too_large", message, line=line)
        else:
            self._issue("csv_row_length", f"unreadable row: {exc}", line=line)

    def _text_lines(self) -> Iterator[str]:
        """The stream's lines as text, line terminators kept (the csv module wants them). A
        line that is not valid UTF-8 is reported where it is and left out."""
        offset, number = self.bytes_read, 0
        readline, most = self.stream.readline, MAX_LINE_BYTES + 1
        cr_lines: bool | None = None  # known from the first line
        while raw := readline(most):
            if len(raw) == most and not raw.endswith(b"\n"):
                number += 1
                offset += self._skip_too_large(raw, number)
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                number += 1
                self._invalid_utf8(exc, number, offset, " (line left out)")
            else:
                # A file whose lines end in a lone CR (classic Mac) arrives as one line: split
                # it. In a file of LF lines a lone CR is the data's own, inside a field.
                # Known from the first line: a CR before its end (a header holds no line
                # breaks, but the first record of a CR file may hold an LF, quoted).
                if cr_lines is None:
                    cr_lines = _unquoted_cr(text)
                lone_cr = cr_lines and text.find("\r", 0, len(text) - 2) >= 0
                for piece in _split_cr(text) if lone_cr else (text,):
                    number += 1
                    if self._record_start is None:
                        self._record_start = number
                    yield piece
            offset += len(raw)
        self.bytes_read = offset

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

    def _header(self, line: int, row: list[str]) -> list[str] | None:
        """Field names for each column, or None (issue logged) when they cannot be known."""
        if self._is_header(row):
            names = [cell.strip() for cell in row]
            names = [self.column_map.get(n, COLUMN_NAMES.get(n.lower(), n)) for n in names]
            return names
        if self.column_map and all(key.isdigit() for key in self.column_map):
            return [self.column_map.get(str(i), f"column_{i}") for i in range(len(row))]
        if len(row) == 2:  # the common headerless classification file: text, label
            return ["text", "label"]
        self._issue(
            "csv_no_header",
            f"the first row ({', '.join(repr(c[:20]) for c in row[:4])}) is not a header "
            "droptune recognises",
            line=line,
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


def _unquoted_cr(line: str) -> bool:
    r"""Whether a CR outside quotes comes before the line's end: the mark of a file of CR
    lines (a CR inside a quoted field is the data's own).

    >>> _unquoted_cr('text,label\r"a\nb",x\r'), _unquoted_cr('"a\rb",x\n'), _unquoted_cr("a\r\n")
    (True, False, False)
    """
    at = line.find("\r", 0, len(line) - 2)
    while at >= 0 and line.count('"', 0, at) % 2:
        at = line.find("\r", at + 1, len(line) - 2)
    return at >= 0


def _split_cr(text: str) -> list[str]:
    r"""The lines of a text whose lines end in a lone CR (no empty line after the last one).

    >>> _split_cr("a\rb\rc\r"), _split_cr('"x\ny"\r')
    (['a\r', 'b\r', 'c\r'], ['"x\ny"\r'])
    """
    pieces = _LONE_CR.split(text)
    return pieces if pieces[-1] else pieces[:-1]


class _ArrayText:
    """A JSON array's text, decoded a chunk at a time: `buf[pos:]` is what is left to parse,
    and `line` is the line number at `buf[0]`. Invalid UTF-8 ends the text at the bad byte,
    kept as `bad_byte` (the one problem reported past it)."""

    def __init__(self, reader: RecordReader) -> None:
        self.reader = reader
        self.utf8 = codecs.getincrementaldecoder("utf-8")("strict")
        self.decoder = json.JSONDecoder()
        self.buf, self.pos, self.line, self.eof = "", 0, 1, False
        # Newlines are counted once: `here` moves this mark (a position in `buf` and its line).
        self.mark, self.mark_line = 0, 1
        self.before = 0  # characters of buf[0]'s line dropped with earlier chunks
        self.fed = reader.bytes_read  # bytes handed to the UTF-8 decoder so far
        self.bad_byte: Issue | None = None

    def fill(self) -> bool:
        """Read the next chunk onto the end of what is left; False when nothing more came."""
        if self.eof:
            return False
        raw = self.reader.stream.read(_ARRAY_CHUNK)
        pending = len(self.utf8.getstate()[0])  # bytes of a character split across chunks
        try:
            chunk = self.utf8.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:  # keep the text before the bad byte
            chunk = exc.object[: exc.start].decode("utf-8")
            self.eof, at = True, self.fed - pending + exc.start
            last = chunk.rfind("\n")  # where the bad byte's line starts, without buf + chunk
            column = len(chunk) - last if last >= 0 else self.column(len(self.buf)) + len(chunk)
            newlines = self.buf.count("\n") + chunk.count("\n")
            self.bad_byte = self.reader._utf8_issue(exc, at, self.line + newlines, column)
        self.fed += len(raw)
        if not raw:
            self.eof = True
        if not chunk:  # the end, or only part of a character so far: read on for the rest
            return False if self.eof else self.fill()
        self.line = self.here(self.pos)  # the mark moves to pos, which becomes buf[0]
        self.before = self.column(self.pos) - 1
        self.buf, self.pos, self.mark = self.buf[self.pos :] + chunk, 0, 0
        return True

    def skip_ws(self) -> str:
        """Move past white space; the next character, or "" at the end."""
        while True:
            buf = self.buf
            while self.pos < len(buf) and buf[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(buf) or not self.fill():
                return self.buf[self.pos] if self.pos < len(self.buf) else ""

    def element(self) -> Row | None:
        """The element at `pos` (reading on until it is whole), or None with the issue logged."""
        start = self.pos
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, start)
                break
            except RecursionError:  # where it ends is not known: the array stops here
                self.reader._issue(
                    "too_deep",
                    f"an element nests lists or objects more than {MAX_DEPTH} levels deep; "
                    "the rest of the array is not read",
                    line=self.here(start),
                )
                return None
            except json.JSONDecodeError as exc:
                if len(self.buf) - start > MAX_LINE_BYTES:
                    self.reader._issue(
                        "record_too_large",
                        f"an element over {MAX_LINE_BYTES:,} characters; the rest of the array "
                        "is not read",
                        line=self.here(start),
                    )
                    return None
                if not self.fill():
                    self.syntax(f"invalid JSON: {exc.msg}", exc.pos)
                    return None
                start = self.pos  # fill() dropped what was consumed
        row = Row(self.here(start), value)
        self.pos = end
        if too_deep(value, self.buf, start, end):
            self.reader._too_deep(row.line)
            row.value = SKIPPED
        return row

    def here(self, at: int) -> int:
        """The line number of `buf[at]`, counting only the text since the last call (counting
        from the start of the buffer for each element took most of the read)."""
        if at >= self.mark:
            self.mark_line += self.buf.count("\n", self.mark, at)
        else:
            self.mark_line -= self.buf.count("\n", at, self.mark)
        self.mark = at
        return self.mark_line

    def syntax(self, message: str, at: int) -> None:
        # Past invalid UTF-8 the text is cut short: the bad byte is the one problem.
        if self.bad_byte is None:
            self.reader._issue("json_syntax", message, line=self.here(at), column=self.column(at))

    def column(self, at: int) -> int:
        """The column (from 1) of `buf[at]` in its line, which may have begun in a chunk
        dropped already (a one-line array of many megabytes)."""
        newline = self.buf.rfind("\n", 0, at)
        return at - newline if newline >= 0 else self.before + at + 1


class _Replay(io.RawIOBase):
    """`head`, then the rest of `stream`: bytes read ahead, put back in front."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self.head, self.stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.stream.read1(len(buffer))  # type: ignore[attr-defined]
        buffer[: len(data)] = data
        return len(data)
