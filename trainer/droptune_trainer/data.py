"""From canonical records to training rows: the exact text the token counter counted, labels
on the assistant's turns only, and examples packed into rows without attention between them.

Labels: the conversation is rendered with the tokenizer's chat template (the core's
`render_example`, so counts and training agree). Each assistant turn spans from the end of
the prompt rendered up to it (`add_generation_prompt=True`) to the end of the conversation
rendered through it; tokens whose characters fall in a span are learned, the rest get -100.
Templates that do not render prefixes consistently fall back to learning every token, and
the count of such examples is reported.

Packing: examples are laid first-fit (longest first, deterministic) into rows of
`tokens_per_batch` tokens; `position_ids` restart at 0 for each example, and the training
loop hands the row's example boundaries to the attention (`droptune_trainer.attention`),
which attends example by example; a layer that does not take them gets the block-diagonal
causal mask transformers builds from the restarting positions. Either way no example sees
another. The first token of each example has no label, so no example learns to predict the
next one.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from droptune.checks import TOOL_PARTS, parts_used
from droptune.errors import ConfigError
from droptune.formats.base import without_weights
from droptune.runs import run_id_from
from droptune.tokens import render_example, unrendered
from droptune_trainer.errors import RunFolderError

IGNORE = -100


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]


@dataclass
class Row:
    """One micro-batch: examples side by side (packed) or one example per row (padded)."""

    examples: list[Example] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(len(e.input_ids) for e in self.examples)

    @property
    def label_tokens(self) -> int:
        return sum(sum(1 for x in e.labels[1:] if x != IGNORE) for e in self.examples)


@dataclass
class Tokenized:
    examples: list[Example]
    truncated: int = 0
    whole_sequence_loss: int = 0  # examples whose template defeated assistant-only labels


HINT = "pass a run folder written by droptune (run.json and data/), e.g. runs/<run_id>"


def read_run(run_dir: Path) -> dict[str, Any]:
    """`run.json` of a run folder, with a clear error when it is missing or malformed."""
    path = run_dir / "run.json"
    try:
        run = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunFolderError(f"{path}: no such file; {HINT}") from None
    except ValueError as exc:
        raise RunFolderError(f"{path}: not JSON ({exc})") from None
    if not isinstance(run, dict) or not isinstance(run.get("config"), dict):
        raise RunFolderError(f"{path}: has no `config` map; {HINT}")
    return run


def run_id_of(run_dir: Path) -> str:
    """The run's id (run.json), else the folder's name: every log line of the run has it."""
    try:
        record = read_run(run_dir)
    except RunFolderError:
        record = None
    return run_id_from(record, str(run_dir))


def read_split(run_dir: Path, name: str, required: bool = False) -> list[dict[str, Any]]:
    """The records of `data/<name>.jsonl`; [] when it is absent (unless `required`)."""
    path = run_dir / "data" / f"{name}.jsonl"
    if not path.is_file():
        if required:
            raise RunFolderError(f"{path}: no such file; {HINT}")
        return []
    records = []
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                raise RunFolderError(
                    f"{path}:{number}: not JSON ({exc}); re-run the validation to rewrite data/"
                ) from None
    return records


def _messages(record: dict[str, Any], upto: int) -> list[dict[str, Any]]:
    return without_weights(record["messages"][:upto])


def assistant_spans(
    tokenizer: Any, record: dict[str, Any], text: str
) -> list[tuple[int, int]] | None:
    """Character spans of the assistant turns in `text`, or None if the template's prefixes
    do not line up with the whole rendering."""
    spans, tools = [], record.get("tools")
    messages = record["messages"]
    for k, message in enumerate(messages):
        if message.get("role") != "assistant" or message.get("weight") == 0:
            continue
        prompt = tokenizer.apply_chat_template(
            _messages(record, k), tools=tools, add_generation_prompt=True, tokenize=False
        )
        through = tokenizer.apply_chat_template(
            _messages(record, k + 1), tools=tools, tokenize=False
        )
        if not (
            text.startswith(prompt) and text.startswith(through) and len(through) > len(prompt)
        ):
            return None
        spans.append((len(prompt), len(through)))
    return spans


def refuse_what_the_template_drops(
    tokenizer: Any, records: Sequence[dict[str, Any]], model: str
) -> None:
    """Tool calls or tools the chat template does not render would be learned as empty
    answers: stop before any GPU time (the upload refuses them too when it counted tokens
    with this tokenizer; with an estimate it could not know)."""
    gaps = unrendered(tokenizer) & TOOL_PARTS  # dropped reasoning: the answers stay
    if not gaps:
        return
    lost = [r for r in records if parts_used(r.get("messages"), r.get("tools")) & gaps]
    if lost:
        raise ConfigError(
            f"{len(lost)} example(s) have {' or '.join(sorted(gaps))}, which the chat template "
            f"of {model} does not render: they would be learned without them. Choose a base "
            "model whose template renders tools, or remove the tool turns."
        )


def tokenize(
    tokenizer: Any, records: Iterable[dict[str, Any]], max_length: int, assistant_only: bool
) -> Tokenized:
    out = Tokenized([])
    for record in records:
        text = render_example(tokenizer, record)
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
        labels = list(ids)
        if assistant_only and "messages" in record:
            spans = assistant_spans(tokenizer, record, text)
            if spans is None:
                out.whole_sequence_loss += 1
            else:
                labels = [
                    t if any(a <= start < b for a, b in spans) else IGNORE
                    for t, (start, _) in zip(ids, offsets, strict=True)
                ]
        if len(ids) > max_length:
            ids, labels = ids[:max_length], labels[:max_length]
            out.truncated += 1
        labels[0] = IGNORE  # never predicted from the previous example of a packed row
        if any(x != IGNORE for x in labels):
            out.examples.append(Example(ids, labels))
    return out


def pack(examples: Sequence[Example], tokens_per_row: int) -> list[Row]:
    """First-fit decreasing: few rows, little waste, the same rows for the same data."""
    rows: list[Row] = []
    space: list[int] = []
    for example in sorted(examples, key=lambda e: -len(e.input_ids)):
        n = len(example.input_ids)
        for i, free in enumerate(space):
            if n <= free:
                rows[i].examples.append(example)
                space[i] -= n
                break
        else:
            rows.append(Row([example]))
            space.append(tokens_per_row - n)
    return rows


def pad_rows(examples: Sequence[Example], tokens_per_row: int) -> list[Row]:
    """Without packing: examples of similar length batched up to the token budget (padded)."""
    rows: list[Row] = []
    current: list[Example] = []
    for example in sorted(examples, key=lambda e: len(e.input_ids)):
        longest = max([len(example.input_ids)] + [len(e.input_ids) for e in current])
        if current and longest * (len(current) + 1) > tokens_per_row:
            rows.append(Row(current))
            current = []
        current.append(example)
    if current:
        rows.append(Row(current))
    return rows


@lru_cache(maxsize=2)  # this epoch's and the next: asked for once per row, shuffled once
def epoch_order(rows: int, seed: int, epoch: int) -> list[int]:
    """The order of `rows` rows in an epoch: shuffled, the same for the same seed and epoch."""
    order = list(range(rows))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def to_device(tensor: Any, device: Any) -> Any:
    """A host tensor on `device`; to a GPU from pinned memory without waiting for the GPU to
    finish its queue, as a plain copy would."""
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def collate(row: Row, packed: bool, pad_id: int) -> dict[str, Any]:
    """Tensors for one row: packed (1 x tokens, position_ids per example) or padded."""
    import torch

    if packed:
        ids = [t for e in row.examples for t in e.input_ids]
        labels = [t for e in row.examples for t in e.labels]
        positions = [p for e in row.examples for p in range(len(e.input_ids))]
        return {
            "input_ids": torch.tensor([ids]),
            "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([positions]),
        }
    width = max(len(e.input_ids) for e in row.examples)
    ids = [e.input_ids + [pad_id] * (width - len(e.input_ids)) for e in row.examples]
    labels = [e.labels + [IGNORE] * (width - len(e.labels)) for e in row.examples]
    mask = [[1] * len(e.input_ids) + [0] * (width - len(e.input_ids)) for e in row.examples]
    return {
        "input_ids": torch.tensor(ids),
        "labels": torch.tensor(labels),
        "attention_mask": torch.tensor(mask),
    }
