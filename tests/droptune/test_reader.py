"""The streaming readers: containers, line numbers, file-level issues, CSV headers, streams.

Files whose exact bytes matter (BOM, CRLF, invalid UTF-8) are written here as bytes rather
than committed as fixtures, so no editor or git setting can change them.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from droptune import reader
from droptune.issues import IssueLog
from droptune.reader import RecordReader, sniff_container


def read(data: bytes, name: str = "data.jsonl", column_map=None) -> tuple[list, IssueLog]:
    issues = IssueLog()
    rows = list(RecordReader(io.BytesIO(data), name, issues, column_map))
    return [(row.line, row.value) for row in rows], issues


def found(issues: IssueLog) -> list[tuple[str, int | None]]:
    return [(issue.code, issue.line) for issue in issues.examples]


class Trickle(io.RawIOBase):
    """A raw stream that hands out at most `step` bytes per read, like a slow pipe."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self.data[self.pos : self.pos + min(self.step, len(buffer))]
        buffer[: len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)


# --- containers ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("head", "container"),
    [
        (b'{"a": 1}', "jsonl"),
        (b'  \n{"a": 1}', "jsonl"),
        (b"", "jsonl"),
        (b'[{"a": 1}]', "json_array"),
        (b'\n\n  [\n{"a": 1}]', "json_array"),
        (b'\xef\xbb\xbf[{"a": 1}]', "json_array"),
        (b"text,label\n", "delimited"),
        (b"sentence\tlabel\n", "delimited"),
    ],
)
def test_sniff_container(head: bytes, container: str) -> None:
    assert sniff_container(head) == container


def test_container_is_chosen_by_content_not_name() -> None:
    rows, issues = read(b'[{"text": "a"}]', name="data.jsonl")
    assert rows == [(1, {"text": "a"})]
    assert issues.counts == {}


# --- JSONL ---------------------------------------------------------------------------------
def test_jsonl_lines_are_one_based_and_blank_lines_warn() -> None:
    rows, issues = read(b'{"text": "a"}\n\n{"text": "b"}\n   \n{"text": "c"}')
    assert rows == [(1, {"text": "a"}), (3, {"text": "b"}), (5, {"text": "c"})]
    assert found(issues) == [("blank_line", 2), ("blank_line", 4)]


def test_jsonl_syntax_error_has_line_and_column_and_reading_goes_on() -> None:
    rows, issues = read(b'{"text": "a"}\n{"text": "b",}\n{"text": "c"}\n')
    assert [line for line, _ in rows] == [1, 3]
    (issue,) = issues.examples
    assert (issue.code, issue.line, issue.column) == ("json_syntax", 2, 14)


def test_a_line_cut_short_is_located_at_its_end_not_on_the_next_line() -> None:
    _, issues = read(b'{"text": "a"}\n{"text":"c"\r\n')
    (issue,) = issues.examples
    assert (issue.line, issue.column) == (2, 12)
    assert "at column 12" in issue.message


def test_pretty_printed_object_stops_after_one_issue() -> None:
    rows, issues = read(b'{\n  "text": "a"\n}\n')
    assert rows == []
    assert found(issues) == [("json_syntax", 1)]
    assert "pretty-printed" in issues.examples[0].message


def test_invalid_utf8_in_jsonl_is_located_exactly() -> None:
    data = b'{"text": "ok"}\n{"text": "caf\xe9"}\n{"text": "fine"}\n'
    rows, issues = read(data)
    assert [line for line, _ in rows] == [1, 3]
    (issue,) = issues.examples
    assert (issue.code, issue.line, issue.column, issue.byte_offset) == ("invalid_utf8", 2, 14, 28)
    assert "0xe9" in issue.message


def test_bom_is_reported_and_skipped() -> None:
    for data, name in [
        (b'\xef\xbb\xbf{"text": "a"}\n', "data.jsonl"),
        (b'\xef\xbb\xbf[{"text": "a"}]', "data.json"),
        (b"\xef\xbb\xbftext,label\na,b\n", "data.csv"),
    ]:
        rows, issues = read(data, name)
        assert found(issues) == [("bom", 1)], name
        assert len(rows) == 1 and "text" in rows[0][1], name


def test_crlf_line_endings_warn_once() -> None:
    rows, issues = read(b'{"text": "a"}\r\n{"text": "b"}\r\n{"text": "c"}\r\n')
    assert [value["text"] for _, value in rows] == ["a", "b", "c"]
    assert found(issues) == [("crlf_line_endings", 1)]


def test_crlf_in_the_validation_report(validate_data) -> None:
    report = validate_data(b'{"text": "a"}\r\n{"text": "b"}\r\n')
    assert report.valid
    assert report.issue_counts == {"crlf_line_endings": 1}


# --- JSON arrays ---------------------------------------------------------------------------
PRETTY = """[
  {
    "instruction": "one",
    "output": "1"
  },
  {"instruction": "two",
   "output": "2"}, {"instruction": "three", "output": "3"},

  {
    "instruction": "four\\nlines",
    "output": "4"
  }
]
"""


def test_json_array_elements_carry_the_line_they_start_on() -> None:
    rows, issues = read(PRETTY.encode(), "data.json")
    assert [(line, value["instruction"]) for line, value in rows] == [
        (2, "one"),
        (6, "two"),
        (7, "three"),
        (9, "four\nlines"),
    ]
    assert issues.counts == {}


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 16, 64])
def test_json_array_lines_do_not_depend_on_chunk_size(monkeypatch, chunk: int) -> None:
    expected, _ = read(PRETTY.encode(), "data.json")
    monkeypatch.setattr(reader, "_ARRAY_CHUNK", chunk)
    assert read(PRETTY.encode(), "data.json")[0] == expected


@settings(max_examples=150, deadline=None)
@given(
    gaps=st.lists(
        st.sampled_from(["", " ", "\n", "\n\n  ", "\r\n", "\t\n"]), min_size=3, max_size=90
    ),
    chunk=st.integers(1, 40),
)
def test_json_array_rows_carry_their_true_line(gaps: list[str], chunk: int) -> None:
    """Whatever the white space and however the text arrives, each element's line is the one
    its first character is on in the file."""
    text, starts = "[" + gaps[0], []
    for i, gap in enumerate(gaps[1:-1]):
        starts.append(text.count("\n") + 1)
        text += json.dumps({"text": f"row\n{i}"}) + gap + ("," + gap if i < len(gaps) - 3 else "")
    text += "]" + gaps[-1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reader, "_ARRAY_CHUNK", chunk)
        rows, issues = read(text.encode(), "data.json")
    assert [line for line, _ in rows] == starts
    assert issues.counts == {}


@pytest.mark.parametrize("chunk", [1, 5, 64, 1 << 20])
@pytest.mark.parametrize("newlines", ["", "\n"])
def test_json_array_errors_have_their_column_whatever_the_chunks(
    monkeypatch, chunk: int, newlines: str
) -> None:
    """A one-line array of megabytes (json.dump's default) arrives in many chunks: columns
    once counted from the start of the chunk, not of the line."""
    elements = ",".join(json.dumps({"text": f"row {i}"}) for i in range(40))
    head = f"{newlines}[{elements}, "
    monkeypatch.setattr(reader, "_ARRAY_CHUNK", chunk)
    _, issues = read(f'{head}{{"text": }}]'.encode(), "data.json")
    (issue,) = issues.examples
    line_start = head.rfind("\n") + 1
    assert (issue.code, issue.line) == ("json_syntax", 1 + head.count("\n"))
    assert issue.column == len(head) - line_start + len('{"text": ') + 1
    _, issues = read(head.encode() + b'{"text": "caf\xe9"}]', "data.json")
    (issue,) = issues.examples
    assert (issue.code, issue.column) == ("invalid_utf8", len(head) - line_start + 14)


def test_json_array_trailing_comma_is_a_syntax_error() -> None:
    rows, issues = read(b'[\n  {"text": "a"},\n  {"text": "b"},\n]\n', "data.json")
    assert [line for line, _ in rows] == [2, 3]
    assert found(issues) == [("json_syntax", 4)]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b'[{"text": "a"}, {"text": "b"}', 1),  # unclosed
        (b'[\n{"text": "a"}\n{"text": "b"}]', 3),  # missing comma
        (b'[\n{"text": "a"},\n{"text": }\n]', 3),  # bad element
    ],
)
def test_json_array_syntax_errors_are_located(data: bytes, line: int) -> None:
    _, issues = read(data, "data.json")
    assert found(issues) == [("json_syntax", line)]


def test_empty_json_array_has_no_rows_and_no_issues() -> None:
    rows, issues = read(b"[ \n ]", "data.json")
    assert rows == []
    assert issues.counts == {}


def test_invalid_utf8_in_json_array_is_reported() -> None:
    _, issues = read(b'[{"text": "caf\xe9"}]', "data.json")
    assert "invalid_utf8" in issues.counts


def test_text_after_a_json_array_is_a_syntax_error() -> None:
    _, issues = read(b'[{"text": "a"}] {"text": "b"}', "data.json")
    assert "json_syntax" in issues.counts


def test_invalid_utf8_late_in_a_json_array_keeps_earlier_elements() -> None:
    good = "".join(f'  {{"text": "row {i}"}},\n' for i in range(2, 10)).encode()
    data = b"[\n" + good + b'  {"text": "caf\xe9"}\n]\n'
    rows, issues = read(data, "data.json")
    assert len(rows) == 8
    assert found(issues) == [("invalid_utf8", 10)]
    (issue,) = issues.examples
    assert (issue.byte_offset, issue.column) == (data.index(b"\xe9"), 16)


# --- CSV / TSV -----------------------------------------------------------------------------
def test_csv_header_row_names_the_fields() -> None:
    rows, issues = read(b'text,label\n"Great, really",pos\nMeh,neg\n', "data.csv")
    assert rows == [
        (2, {"text": "Great, really", "label": "pos"}),
        (3, {"text": "Meh", "label": "neg"}),
    ]
    assert issues.counts == {}


def test_sst2_style_sentence_header_maps_to_text() -> None:
    rows, _ = read(b"sentence\tlabel\nkids , spirit \t1\n", "train.tsv")
    assert rows == [(2, {"text": "kids , spirit ", "label": "1"})]


def test_header_words_in_any_case_get_the_formats_spelling() -> None:
    """A spreadsheet's 'Sentence,Label' is the same header; kept as written, the label was
    an unknown field and the data became plain text."""
    rows, _ = read(b"Sentence,Label\ngreat movie,positive\n", "data.csv")
    assert rows == [(2, {"text": "great movie", "label": "positive"})]
    rows, _ = read(b"QUESTION,Answer\n2+2?,4\n", "qa.csv")
    assert rows == [(2, {"question": "2+2?", "answer": "4"})]
    rows, _ = read(b"TextInput,Output\nhi,yo\n", "g.csv")
    assert rows == [(2, {"textInput": "hi", "output": "yo"})]


def test_agnews_style_headerless_tsv_with_commas_in_text() -> None:
    data = b"Stocks up, bonds down, oil flat\tBusiness\nOne, two, three goals\tSports\n"
    rows, issues = read(data, "train_pool.tsv")
    assert rows == [
        (1, {"text": "Stocks up, bonds down, oil flat", "label": "Business"}),
        (2, {"text": "One, two, three goals", "label": "Sports"}),
    ]
    assert issues.counts == {}


def test_delimiter_comes_from_the_extension_else_from_tabs() -> None:
    assert read(b"a\tb\n", "x.csv")[0] == []  # one column called "a\tb": no header, no rows
    assert read(b"text\tlabel\nx\ty\n", "x.txt")[0] == [(2, {"text": "x", "label": "y"})]
    assert read(b"text,label\nx,y\n", "x.txt")[0] == [(2, {"text": "x", "label": "y"})]


def test_csv_row_length() -> None:
    rows, issues = read(b"text,label\na,b\nc,d,e\nf\ng,h\n", "data.csv")
    assert [line for line, _ in rows] == [2, 5]
    assert found(issues) == [("csv_row_length", 3), ("csv_row_length", 4)]


def test_csv_blank_line_is_skipped() -> None:
    rows, issues = read(b"text,label\na,b\n\nc,d\n", "data.csv")
    assert [line for line, _ in rows] == [2, 4]
    assert found(issues) == [("blank_line", 3)]


def test_csv_without_a_recognisable_header() -> None:
    rows, issues = read(b"a,b,c\n1,2,3\n", "data.csv")
    assert rows == []
    assert found(issues) == [("csv_no_header", 1)]


def test_csv_crlf_rows() -> None:
    rows, issues = read(b"prompt,completion\r\nhi,there\r\n", "data.csv")
    assert rows == [(2, {"prompt": "hi", "completion": "there"})]
    assert issues.counts == {}


def test_column_map_with_positions_for_headerless_files() -> None:
    rows, _ = read(b"hello\tworld\n", "data.tsv", {"0": "prompt", "1": "completion"})
    assert rows == [(1, {"prompt": "hello", "completion": "world"})]


def test_column_map_renames_header_columns() -> None:
    rows, _ = read(b"body,stars\nnice,5\n", "data.csv", {"body": "text", "stars": "label"})
    assert rows == [(2, {"text": "nice", "label": "5"})]


def test_invalid_utf8_in_csv_is_reported() -> None:
    _, issues = read(b"text,label\na,b\nc\xe9,d\n", "data.csv")
    assert "invalid_utf8" in issues.counts


def test_invalid_utf8_in_csv_is_reported_at_its_line() -> None:
    rows, issues = read(b"text,label\na,b\nc\xe9,d\n", "data.csv")
    assert rows == [(2, {"text": "a", "label": "b"})]
    assert found(issues) == [("invalid_utf8", 3)]


def test_csv_lines_may_end_in_crlf_or_a_lone_cr() -> None:
    expected = [(2, {"text": "a", "label": "x"}), (3, {"text": "b", "label": "y"})]
    assert read(b"text,label\r\na,x\r\nb,y\r\n", "data.csv")[0] == expected
    assert read(b"text,label\ra,x\rb,y\r", "data.csv")[0] == expected
    # Excel for Mac: CR lines, and a quoted LF inside a cell of the first record
    rows, issues = read(b'text,label\r"a\nb",x\rc,y\r', "data.csv")
    assert rows == [(2, {"text": "a\nb", "label": "x"}), (4, {"text": "c", "label": "y"})]
    assert found(issues) == []


def test_the_first_record_is_read_as_any_other_blank_lines_and_all() -> None:
    """The header test once parsed the first physical line alone: a headerless file whose
    first text spans lines, or a blank first line, lost the whole file."""
    rows, issues = read(b'"great film,\nwould watch again",pos\nawful,neg\n', "d.csv")
    assert rows == [
        (1, {"text": "great film,\nwould watch again", "label": "pos"}),
        (3, {"text": "awful", "label": "neg"}),
    ]
    assert found(issues) == []
    rows, issues = read(b"\ntext,label\ngood,pos\n", "d.csv")
    assert rows == [(3, {"text": "good", "label": "pos"})]
    assert found(issues) == [("blank_line", 1)]


def test_a_lone_cr_inside_a_record_of_an_lf_file_is_the_datas_own() -> None:
    """Split there, 'bad' became a row of the wrong length and 'I hated it' an example
    with the wrong text, and every later line number was one off."""
    rows, issues = read(b'text,label\n"The movie was bad\rI hated it",neg\ngreat,pos\n', "d.csv")
    assert rows == [
        (2, {"text": "The movie was bad\rI hated it", "label": "neg"}),
        (3, {"text": "great", "label": "pos"}),
    ]
    assert found(issues) == []
    rows, _ = read(b'"a\rb",x\n"c",y\n', "d.csv")  # headerless, a quoted CR in line 1
    assert [line for line, _ in rows] == [1, 2]
    unquoted = b"text,label\nThe movie was bad\rI hated it,neg\ngreat,pos\n"
    rows, issues = read(unquoted, "d.csv")  # the csv module refuses a CR outside quotes
    assert rows == [(3, {"text": "great", "label": "pos"})]
    assert found(issues) == [("csv_row_length", 2)]


def test_an_unreadable_header_line_stops_the_file_there() -> None:
    rows, issues = read(b"t\xe9xt,label\na,b\n", "data.csv")
    assert rows == [] and found(issues) == [("invalid_utf8", 1)]


def test_multiline_csv_record_starts_where_it_starts() -> None:
    rows, _ = read(b'text,label\n"two\nlines",a\nnext,b\n', "data.csv")
    assert [line for line, _ in rows] == [2, 4]


# --- streams -------------------------------------------------------------------------------
def test_streams_without_peek_are_buffered() -> None:
    class NoPeek(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            return self.inner.readinto(buffer)

    issues = IssueLog()
    rows = list(RecordReader(NoPeek(b'{"text": "a"}\n{"text": "b"}\n'), "-", issues))
    assert [row.value["text"] for row in rows] == ["a", "b"]


def test_trickling_stream_reads_all_records() -> None:
    data = "".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(50)).encode()
    rows = list(RecordReader(io.BufferedReader(Trickle(data, 7)), "-", IssueLog()))
    assert [row.line for row in rows] == list(range(1, 51))


def test_trickling_stream_is_sniffed_from_its_first_content_byte() -> None:
    stream = io.BufferedReader(Trickle(b'\n[{"text": "a"}]\n', 1))
    issues = IssueLog()
    reader = RecordReader(stream, "-", issues)
    assert reader.container == "json_array"
    assert [(row.line, row.value) for row in reader] == [(2, {"text": "a"})]  # nothing lost
    assert not issues.counts


def test_validate_reads_stdin(monkeypatch, estimate) -> None:
    from droptune import pipeline
    from droptune.config import RunConfig

    data = b'{"text": "a"}\n{"text": "b"}\n'
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    report = pipeline.validate("-", RunConfig(min_examples=1), counter=estimate)
    assert report.valid
    assert report.format.name == "text"
    assert report.counts["valid"] == 2


def test_a_line_too_long_for_any_example_is_skipped_unread(monkeypatch):
    monkeypatch.setattr("droptune.reader.MAX_LINE_BYTES", 100)
    long = b'{"text": "' + b"x" * 5000 + b'"}\n'
    data = b'{"text": "a"}\n' + long + b'{"text": "b"}\n' + long[:-1]  # the last one unended
    issues = IssueLog()
    reader = RecordReader(io.BufferedReader(io.BytesIO(data), 64), "big.jsonl", issues)
    rows = list(reader)
    assert [(r.line, r.value["text"]) for r in rows] == [(1, "a"), (3, "b")]
    assert found(issues) == [
        ("record_too_large", 2),
        ("record_too_large", 4),
    ]
    assert reader.bytes_read == len(data)


@pytest.fixture
def small_records(monkeypatch):
    """Records of at most 100 bytes; the csv module's process-wide field limit, which the
    reader sets from it, is put back afterwards."""
    monkeypatch.setattr("droptune.reader.MAX_LINE_BYTES", 100)
    limit = csv.field_size_limit()
    yield
    csv.field_size_limit(limit)


def test_a_csv_line_too_long_for_any_example_is_skipped_unread(small_records):
    data = b"text,label\na,x\n" + b"y" * 5000 + b",x\nb,z\n" + b"y" * 500  # last unended
    issues = IssueLog()
    reader = RecordReader(io.BufferedReader(io.BytesIO(data), 64), "big.csv", issues)
    rows = [(row.line, row.value) for row in reader]
    assert rows == [(2, {"text": "a", "label": "x"}), (4, {"text": "b", "label": "z"})]
    assert found(issues) == [("record_too_large", 3), ("record_too_large", 5)]
    assert reader.bytes_read == len(data)


def test_a_quote_left_open_costs_one_record_not_the_file(small_records):
    """A stray quote makes the rest of the file one field; at the record limit that field is
    given up and the reader goes on at the next line."""
    rows_after = b"".join(b"row %d,x\n" % i for i in range(20))
    data = b'text,label\na,x\n"a quote left open,y\n' + rows_after
    rows, issues = read(data, "open.csv")
    assert found(issues) == [("record_too_large", 3)]
    assert "a quote left open?" in issues.examples[0].message
    assert rows[0] == (2, {"text": "a", "label": "x"})
    assert rows[-1] == (23, {"text": "row 19", "label": "x"})
    # Lost: the rows the open quote swallowed up to the limit (lines 3-14), no more.
    assert [line for line, _ in rows] == [2, *range(15, 24)]


def test_a_csv_field_longer_than_the_csv_modules_default_limit_is_read() -> None:
    long = "word " * 40_000  # 200,000 characters; the csv module stops at 131,072 by default
    rows, issues = read(f'text,label\n"{long}",x\nb,y\n'.encode(), "long.csv")
    assert [value["text"] for _, value in rows] == [long, "b"]
    assert found(issues) == []


def test_an_array_element_too_large_for_any_example_stops_the_read(monkeypatch):
    monkeypatch.setattr("droptune.reader.MAX_LINE_BYTES", 100)
    monkeypatch.setattr("droptune.reader._ARRAY_CHUNK", 64)  # the element arrives in pieces
    data = b'[{"text": "a"},\n{"text": "' + b"x" * 5000 + b'"}, {"text": "b"}]'
    rows, issues = read(data, "big.json")
    assert [value["text"] for _, value in rows] == ["a"]
    assert found(issues) == [("record_too_large", 2)]
