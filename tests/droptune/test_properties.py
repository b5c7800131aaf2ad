"""Property-based tests: no input makes droptune raise, and valid chat survives conversion."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from droptune import pipeline, reader
from droptune.config import RunConfig
from droptune.formats import BY_NAME, classify
from droptune.formats.gemini import contents_to_chat
from droptune.issues import IssueLog
from droptune.report import Report
from droptune.tokens import EstimateCounter

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Keys the formats look at, so that generated records reach deep into the predicates.
KEYS = st.sampled_from(
    [
        "messages",
        "role",
        "content",
        "contents",
        "parts",
        "text",
        "label",
        "conversations",
        "from",
        "value",
        "instruction",
        "input",
        "output",
        "prompt",
        "completion",
        "question",
        "answer",
        "session_id",
        "systemInstruction",
        "chosen",
        "tools",
        "tool_calls",
        "type",
        "function",
        "name",
        "history",
        "system",
    ]
) | st.text(max_size=6)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["user", "assistant", "model", "system", "tool", "human", "gpt", "text"])
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=10,
)
OBJECTS = st.dictionaries(KEYS, JSON, max_size=4)


def validate_bytes(data: bytes, name: str, **config) -> Report:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, name)
        Path(path).write_bytes(data)
        return pipeline.validate(
            path, RunConfig(min_examples=1, **config), counter=EstimateCounter()
        )


@SETTINGS
@given(JSON)
def test_classify_never_raises(value) -> None:
    assert classify(value) in {None, "preference", *BY_NAME}


@SETTINGS
@given(st.lists(OBJECTS, min_size=1, max_size=3), st.sampled_from(["custom", "gemini"]))
def test_validate_never_raises_on_json_objects(records, backend) -> None:
    data = b"".join(orjson.dumps(r) + b"\n" for r in records)
    report = validate_bytes(data, "data.jsonl", backend=backend)
    assert isinstance(report, Report)
    assert report.counts["records"] + report.issue_counts.get("json_syntax", 0) >= 1
    orjson.dumps(report.to_dict())


@SETTINGS
@given(st.lists(OBJECTS, min_size=1, max_size=3))
def test_validate_never_raises_on_json_arrays(records) -> None:
    report = validate_bytes(json.dumps(records, indent=1).encode(), "data.json")
    assert report.format.container == "json_array"
    assert report.counts["records"] == len(records)


@SETTINGS
@given(
    st.lists(st.binary(max_size=40), max_size=5),
    st.sampled_from(["d.jsonl", "d.json", "d.csv", "d.tsv"]),
)
def test_validate_never_raises_on_arbitrary_bytes(lines, name) -> None:
    assert isinstance(validate_bytes(b"\n".join(lines), name), Report)


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(
    str.strip
)


@st.composite
def conversations(draw) -> list[dict]:
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(TEXT)})
    for _ in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(TEXT)})
        messages.append({"role": "assistant", "content": draw(TEXT)})
    return messages


@SETTINGS
@given(st.lists(conversations(), min_size=1, max_size=4, unique_by=lambda c: json.dumps(c)))
def test_valid_chat_validates_and_survives_gemini_round_trip(convs) -> None:
    data = b"".join(orjson.dumps({"messages": c}) + b"\n" for c in convs)
    with tempfile.TemporaryDirectory() as folder:
        source, target = os.path.join(folder, "chat.jsonl"), os.path.join(folder, "gemini.jsonl")
        Path(source).write_bytes(data)
        config = RunConfig(min_examples=1, backend="gemini")
        counter = EstimateCounter()
        report = pipeline.validate(source, config, counter=counter)
        templated = [c for c in convs if any("{{" in m["content"] for m in c)]
        assert report.valid, [i.message for i in report.issues]
        assert set(report.issue_counts) <= ({"template_placeholder"} if templated else set())
        pipeline.convert(source, config, "gemini", target, counter=counter)
        written = [orjson.loads(line) for line in Path(target).read_bytes().splitlines()]
    assert [contents_to_chat(record).messages for record in written] == convs


@settings(SETTINGS, max_examples=100)
@given(st.lists(OBJECTS, max_size=5), st.integers(0, 3), st.integers(1, 64))
def test_json_array_rows_do_not_depend_on_layout_or_chunk_size(records, indent, chunk) -> None:
    data = json.dumps(records, indent=indent or None).encode()
    expected_lines = _element_lines(records, indent)
    # monkeypatch is function-scoped, so hypothesis examples patch the chunk size by hand.
    original, reader._ARRAY_CHUNK = reader._ARRAY_CHUNK, chunk
    try:
        rows = list(reader.RecordReader(io.BytesIO(data), "d.json", IssueLog()))
    finally:
        reader._ARRAY_CHUNK = original
    assert [row.value for row in rows] == records
    assert [row.line for row in rows] == expected_lines


def _element_lines(records: list, indent: int) -> list[int]:
    """The line each element starts on when json.dumps lays the array out."""
    if not indent:
        return [1] * len(records)
    lines, line = [], 2
    for record in records:
        lines.append(line)
        line += json.dumps(record, indent=indent).count("\n") + 1
    return lines


def nested(depth: int, kind: str, leaf: object) -> object:
    """`leaf` inside `depth` lists (kind "[") or objects (kind "{")."""
    for _ in range(depth):
        leaf = [leaf] if kind == "[" else {"content": leaf}
    return leaf


def nested_text(depth: int, kind: str) -> str:
    """The JSON text of a value `depth` levels deep, built as text: Python's own json would
    itself run out of recursion writing the deepest ones."""
    if kind == "[":
        return "[" * depth + "1" + "]" * depth
    return '{"content":' * depth + "1" + "}" * depth


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([1, 10, 63, 64, 65, 200, 900, 1023, 1024, 1025, 5000, 20000]),
    st.sampled_from(["[", "{"]),
    st.sampled_from(["messages", "extra", "tools"]),
    st.sampled_from(["data.jsonl", "data.json"]),
)
def test_no_nesting_depth_crashes_validation_and_the_other_records_go_on(
    depth, kind, key, name
) -> None:
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    deep = '{"' + key + '": ' + nested_text(depth, kind) + "}"
    if name.endswith(".jsonl"):
        data = orjson.dumps(good) + b"\n" + deep.encode() + b"\n" + orjson.dumps(good) + b"\n"
    else:
        data = ("[" + orjson.dumps(good).decode() + ",\n" + deep + ",\n"
                + orjson.dumps(good).decode() + "]").encode()  # fmt: skip
    report = validate_bytes(data, name)
    orjson.dumps(report.to_dict())
    shallow = depth + 1 <= reader.MAX_DEPTH  # the record's own object is one level more
    assert (report.issue_counts.get("too_deep", 0) == 0) is shallow
    if name.endswith(".jsonl") or depth < 1000:
        # a JSONL line is skipped alone; an array element only when Python's json can read it
        assert report.counts["records"] >= 2
        assert report.counts["valid"] >= 1
    too_deep = [i for i in report.issues if i.code == "too_deep"]
    assert all(i.line == 2 for i in too_deep)


def test_the_depth_limit_counts_levels_exactly() -> None:
    assert not reader.too_deep(nested(reader.MAX_DEPTH, "[", 1), "[" * 64 + "]" * 64)
    deeper = nested(reader.MAX_DEPTH + 1, "{", 1)
    assert reader.too_deep(deeper, nested_text(reader.MAX_DEPTH + 1, "{"))
