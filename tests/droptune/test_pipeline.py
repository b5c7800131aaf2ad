"""prepare/convert end to end on local files: the run folder's data/ and validation/ outputs."""

from __future__ import annotations

import random
from pathlib import Path

import orjson

from droptune import pipeline
from droptune.config import RunConfig
from droptune.tokens import EstimateCounter


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return str(path)


def qa(i: int) -> dict:
    return {"question": f"What is {i} + {i}?", "answer": str(2 * i)}


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_prepare_writes_split_and_reports(tmp_path):
    source = write_jsonl(tmp_path / "qa.jsonl", [qa(i) for i in range(100)])
    run = tmp_path / "run"
    report = pipeline.prepare(source, RunConfig(), str(run), counter=EstimateCounter())
    assert report.valid
    splits = {
        name: read_jsonl(run / "data" / f"{name}.jsonl") for name in ("train", "validation", "test")
    }
    assert {k: len(v) for k, v in splits.items()} == {"train": 80, "validation": 10, "test": 10}
    assert report.counts["splits"] == {"train": 80, "validation": 10, "test": 10}
    assert splits["train"][0]["messages"][0]["role"] == "user"
    saved = orjson.loads((run / "validation" / "report.json").read_bytes())
    assert saved["valid"] is True and saved["format"]["name"] == "prompt_response"
    assert "Verdict: valid" in (run / "validation" / "report.md").read_text()
    assert not (run / "data" / "gemini").exists()  # custom backend: no Gemini files


def test_split_is_the_same_for_shuffled_input(tmp_path):
    rows = [qa(i) for i in range(200)]
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    outputs = []
    for name, data in (("a", rows), ("b", shuffled)):
        run = tmp_path / f"run-{name}"
        pipeline.prepare(write_jsonl(tmp_path / f"{name}.jsonl", data), RunConfig(), str(run),
                         counter=EstimateCounter())  # fmt: skip
        test = {orjson.dumps(r) for r in read_jsonl(run / "data" / "test.jsonl")}
        outputs.append(test)
    assert outputs[0] == outputs[1]


def test_prepare_gemini_backend_writes_gemini_files(tmp_path):
    source = write_jsonl(tmp_path / "qa.jsonl", [qa(i) for i in range(30)])
    run = tmp_path / "run"
    report = pipeline.prepare(source, RunConfig(backend="gemini"), str(run))
    assert report.valid
    assert report.tokens.method == "estimate"
    gemini_train = read_jsonl(run / "data" / "gemini" / "train.jsonl")
    assert len(gemini_train) == report.counts["splits"]["train"]
    assert gemini_train[0]["contents"][1]["role"] == "model"
    assert report.cost.usd is not None  # gemini-2.5-flash is in the price table


def test_invalid_data_writes_report_but_no_data(tmp_path):
    rows = [qa(i) for i in range(20)] + [{"question": "q", "answer": "  "}]
    run = tmp_path / "run"
    report = pipeline.prepare(write_jsonl(tmp_path / "bad.jsonl", rows), RunConfig(), str(run),
                              counter=EstimateCounter())  # fmt: skip
    assert not report.valid
    assert not (run / "data").exists()
    saved = orjson.loads((run / "validation" / "report.json").read_bytes())
    assert (
        saved["issues"][0] | {"code": "empty_text", "line": 21, "path": "$.answer"}
        == saved["issues"][0]
    )


def test_user_validation_file_replaces_validation_split(tmp_path):
    source = write_jsonl(tmp_path / "train.jsonl", [qa(i) for i in range(50)])
    val = write_jsonl(tmp_path / "val.jsonl", [qa(i) for i in range(1000, 1007)])
    run = tmp_path / "run"
    report = pipeline.prepare(
        source, RunConfig(validation_file=val), str(run), counter=EstimateCounter()
    )
    assert report.valid
    validation = read_jsonl(run / "data" / "validation.jsonl")
    assert len(validation) == 7 and "1000" in validation[0]["messages"][0]["content"]
    assert report.counts["splits"] == {"train": 45, "validation": 7, "test": 5}


def test_classification_split_is_stratified(tmp_path):
    rows = [
        {"text": f"sample {i}", "label": "rare" if i % 10 == 0 else "common"} for i in range(200)
    ]
    run = tmp_path / "run"
    report = pipeline.prepare(write_jsonl(tmp_path / "c.jsonl", rows), RunConfig(), str(run),
                              counter=EstimateCounter())  # fmt: skip
    test = read_jsonl(run / "data" / "test.jsonl")
    assert sorted(r["label"] for r in test).count("rare") == 2  # 10% of the 20 rare examples
    assert report.counts["labels"] == {"common": 180, "rare": 20}


def test_convert_to_gemini_and_chat(tmp_path):
    source = write_jsonl(tmp_path / "qa.jsonl", [qa(i) for i in range(12)])
    out = tmp_path / "out.jsonl"
    report = pipeline.convert(source, RunConfig(backend="gemini"), "gemini", str(out))
    assert report.valid and len(read_jsonl(out)) == 12
    assert read_jsonl(out)[0] == {
        "contents": [
            {"role": "user", "parts": [{"text": "What is 0 + 0?"}]},
            {"role": "model", "parts": [{"text": "0"}]},
        ]
    }
    chat = tmp_path / "chat.jsonl"
    pipeline.convert(str(out), RunConfig(), "chat", str(chat), counter=EstimateCounter())
    assert read_jsonl(chat)[0]["messages"][1] == {"role": "assistant", "content": "0"}


def test_system_instruction_opens_every_conversation_without_one(tmp_path):
    rows = [{"text": f"ticket {i}", "label": "billing" if i % 2 else "bug"} for i in range(20)]
    rows[0]["system"] = "Its own system turn."
    source = tmp_path / "tickets.csv"
    source.write_text(
        "text,label,system\n"
        + "".join(f"{r['text']},{r['label']},{r.get('system', '')}\n" for r in rows)
    )
    config = RunConfig(system_instruction="Label the ticket: billing or bug.", test_fraction=0)
    run = tmp_path / "run"
    assert pipeline.prepare(str(source), config, str(run), counter=EstimateCounter()).valid
    firsts = [r["messages"][0] for r in read_jsonl(run / "data" / "train.jsonl")]
    firsts += [r["messages"][0] for r in read_jsonl(run / "data" / "validation.jsonl")]
    assert sorted(m["content"] for m in firsts if m["role"] == "system") == [
        "Its own system turn.",
        *["Label the ticket: billing or bug."] * 19,
    ]
    gemini = RunConfig(**{**config.to_dict(), "backend": "gemini"})
    assert pipeline.prepare(str(source), gemini, str(tmp_path / "g")).valid
    record = read_jsonl(tmp_path / "g" / "data" / "gemini" / "train.jsonl")[0]
    assert record["systemInstruction"]["parts"][0]["text"] in {
        "Its own system turn.",
        "Label the ticket: billing or bug.",
    }


def test_a_dataset_larger_than_the_ledgers_memory_prepares_the_same(tmp_path, monkeypatch):
    # Labelled rows with copies: stratified split, duplicate warnings and token statistics
    # all read the ledger; spilling it every 7 examples must change none of the outputs.
    rows = [{"text": f"sample {i % 170}", "label": f"l{i % 170 % 3}"} for i in range(200)]
    source = write_jsonl(tmp_path / "c.jsonl", rows)
    outputs = []
    for chunk in (None, 7):
        if chunk:
            monkeypatch.setattr("droptune.ledger.CHUNK", chunk)
        run = tmp_path / f"run-{chunk}"
        report = pipeline.prepare(source, RunConfig(), str(run), counter=EstimateCounter())
        saved = orjson.loads((run / "validation" / "report.json").read_bytes())
        saved.pop("seconds"), saved.pop("outputs")  # the time taken, and the run folder
        data = {p.name: p.read_bytes() for p in (run / "data").iterdir()}
        outputs.append((saved, data))
    assert report.issue_counts["duplicate_example"] == 30
    assert outputs[0] == outputs[1]


def test_the_report_records_the_system_prompt_every_example_shares(tmp_path):
    examples = Path(__file__).parents[2] / "droptune" / "examples"
    shared = orjson.loads((examples / "tickets.jsonl").read_bytes().splitlines()[0])["system"]
    tickets = pipeline.validate(str(examples / "tickets.jsonl"), RunConfig(), EstimateCounter())
    assert tickets.to_dict()["system_prompt"] == shared

    def chat(system: str | None, i: int) -> dict:
        turns = [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]
        return {"messages": ([{"role": "system", "content": system}] if system else []) + turns}

    for systems in (["A", "B"], ["A", None], [None, None]):
        rows = [chat(systems[i % 2], i) for i in range(20)]
        source = write_jsonl(tmp_path / "mixed.jsonl", rows)
        report = pipeline.validate(source, RunConfig(), counter=EstimateCounter())
        assert report.system_prompt is None, systems
    given = RunConfig(system_instruction="Be brief.")  # every example gets it
    source = write_jsonl(tmp_path / "qa.jsonl", [qa(i) for i in range(20)])
    assert pipeline.validate(source, given, counter=EstimateCounter()).system_prompt == "Be brief."


def news(i: int) -> dict:
    return {"text": f"story number {i}", "label": ["World", "Sports", "Business"][i % 3]}


def test_text_and_labels_without_an_instruction_get_one_naming_the_labels(tmp_path):
    """The model cannot guess the label set of text + label data: droptune names it, the same
    text in every split, the Gemini files and the report."""
    rows = [news(i) for i in range(60)]
    source = write_jsonl(tmp_path / "news.jsonl", rows)
    run = tmp_path / "run"
    config = RunConfig(backend="gemini")
    report = pipeline.prepare(source, config, str(run), counter=EstimateCounter())
    said = "Classify the text. Answer with exactly one of these labels and nothing else: "
    assert report.system_prompt == said + "World, Sports, Business."
    assert report.system_prompt_source == "droptune"
    for name in ("train", "validation", "test"):
        for record in read_jsonl(run / "data" / f"{name}.jsonl"):
            assert record["messages"][0] == {"role": "system", "content": report.system_prompt}
    gemini = read_jsonl(run / "data" / "gemini" / "train.jsonl")[0]
    assert gemini["systemInstruction"]["parts"][0]["text"] == report.system_prompt
    saved = orjson.loads((run / "validation" / "report.json").read_bytes())
    assert saved["system_prompt"] == report.system_prompt
    assert "written by droptune" in (run / "validation" / "report.md").read_text()
    # the token counts are those of the conversations as written, the turn included (the
    # turn's tokens are counted once: the estimate's rounding may differ by one an example)
    train = EstimateCounter().count(read_jsonl(run / "data" / "train.jsonl"))
    assert abs(report.tokens.train_total - sum(train)) <= len(train)
    written = [read_jsonl(run / "data" / f"{n}.jsonl") for n in ("train", "validation", "test")]
    every = EstimateCounter().count([r for split in written for r in split])
    assert abs(report.tokens.total - sum(every)) <= len(every)
    assert report.tokens.min >= min(every) - 1


def test_a_given_instruction_or_system_turn_is_kept(tmp_path):
    source = write_jsonl(tmp_path / "news.jsonl", [news(i) for i in range(60)])
    config = RunConfig(system_instruction="Label the news story.")
    report = pipeline.prepare(source, config, str(tmp_path / "a"), counter=EstimateCounter())
    assert report.system_prompt == "Label the news story."
    assert report.system_prompt_source == "data"
    chats = [
        {"messages": [{"role": "system", "content": "Be terse."}, *m]}
        for m in (
            [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]
            for i in range(30)
        )
    ]
    own = write_jsonl(tmp_path / "chat.jsonl", chats)
    report = pipeline.prepare(own, RunConfig(), str(tmp_path / "b"), counter=EstimateCounter())
    assert report.system_prompt == "Be terse." and report.system_prompt_source == "data"
