"""Token counts per example: the base model's real tokenizer where possible, else an estimate.

For the custom backend the example is rendered with the tokenizer's own chat template
(`render_example`, the very function the trainer uses) and counted with the tokenizer's own
BPE, word by word (`droptune.bpe_count`), or encoded by the Rust tokenizer where that would not
be exact. Gemini's tokenizer does not run offline, so Gemini counts are a labelled estimate.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from droptune.bpe_count import WordCounter
from droptune.chat_render import SegmentRenderer
from droptune.errors import TokenizerError
from droptune.formats.base import Record, without_weights
from droptune.models import CACHE_DIR, ModelFiles, locate


class TokenCounter(Protocol):
    method: str  # "exact" or "estimate"
    description: str
    unrendered: frozenset[str]  # parts of a conversation its texts leave out (`unrendered`)

    def count(self, records: Sequence[Record]) -> list[int]: ...


@dataclass
class EstimateCounter:
    """Characters / 4, plus a few tokens per message for role markers: a rough, labelled guess."""

    chars_per_token: float = 4.0
    per_message: int = 4
    method: str = "estimate"
    description: str = "estimate: 4 characters per token + 4 per message (no tokenizer)"
    unrendered: frozenset[str] = frozenset()  # no template: nothing known to be left out

    def count(self, records: Sequence[Record]) -> list[int]:
        counts = []
        for record in records:
            if "text" in record:
                counts.append(math.ceil(len(record["text"]) / self.chars_per_token))
                continue
            chars = sum(len(m["content"]) for m in record["messages"])
            overhead = self.per_message * len(record["messages"])
            counts.append(math.ceil(chars / self.chars_per_token) + overhead)
        return counts


def render_example(tokenizer: Any, record: Record) -> str:
    """The exact text the trainer tokenizes for one canonical record."""
    if "text" in record:
        return record["text"] + (tokenizer.eos_token or "")
    return tokenizer.apply_chat_template(
        without_weights(record["messages"]), tools=record.get("tools"), tokenize=False
    )


def render_examples(
    tokenizer: Any, records: Sequence[Record], segments: SegmentRenderer | None = None
) -> list[str]:
    """`render_example` for many records at once, with exactly the same texts.

    Conversations without tools are joined by `segments` where it can (the template's text
    without Jinja: `droptune.chat_render`); the rest go to `apply_chat_template` as one batch:
    transformers renders each conversation of a batch as it renders one alone, and pays its
    per-call set-up once.
    """
    texts: list[str] = [""] * len(records)
    batch, where = [], []
    for i, record in enumerate(records):
        if "text" in record or record.get("tools") is not None:
            texts[i] = render_example(tokenizer, record)
            continue
        messages = without_weights(record["messages"])
        joined = segments.render(messages) if segments is not None else None
        if joined is not None:
            texts[i] = joined
        else:
            batch.append(messages)
            where.append(i)
    if batch:
        rendered = tokenizer.apply_chat_template(batch, tools=None, tokenize=False)
        for i, text in zip(where, rendered, strict=True):
            texts[i] = text
    return texts


_PROBE = "droptune_probe"
_PROBE_TOOL = {"type": "function", "function": {"name": _PROBE, "description": "a probe",
               "parameters": {"type": "object", "properties": {}}}}  # fmt: skip
# Some templates (Mistral's) refuse a call without a 9-character id.
_PROBE_CALL = {"id": "probe0001", "type": "function", "function": {"name": _PROBE, "arguments": {}}}


def unrendered(tokenizer: Any) -> frozenset[str]:
    """The parts of a conversation the tokenizer's chat template leaves out of its text, of
    `tool_calls`, `tools` and `reasoning_content`: each is rendered once in a small probe
    conversation and looked for. Many small models' templates render the content alone, so
    an assistant turn that is a tool call becomes an empty answer."""
    user = {"role": "user", "content": "q"}
    probes = {
        "tool_calls": ([user, {"role": "assistant", "content": "", "tool_calls": [_PROBE_CALL]}], None),
        "tools": ([user, {"role": "assistant", "content": "a"}], [_PROBE_TOOL]),
        "reasoning_content": ([user, {"role": "assistant", "content": "a", "reasoning_content": _PROBE}], None),
    }  # fmt: skip
    missing = set()
    for part, (messages, tools) in probes.items():
        try:
            text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
        except Exception:  # the probe's fault as likely as the template's: not known dropped
            continue
        if _PROBE not in text:
            missing.add(part)
    return frozenset(missing)


class ChatTemplateCounter:
    """Exact counts: chat template rendered as the trainer renders it (joined text where
    `droptune.chat_render` proves that the same, else Jinja), then the tokenizer's own BPE
    word by word (`droptune.bpe_count`) where that reproduces it, else its encoder.
    `word_counts` and `joined` off are the plain paths, for benchmarks and checks."""

    method = "exact"

    def __init__(
        self, tokenizer: Any, files: ModelFiles, word_counts: bool = True, joined: bool = True
    ) -> None:
        self.tokenizer, self.files = tokenizer, files
        self.description = f"exact: tokenizer and chat template of {files.description}"
        words = WordCounter.for_tokenizer(tokenizer.backend_tokenizer) if word_counts else None
        self._count_texts = words.count if words is not None else self._encode_texts
        self._segments = SegmentRenderer.probe(tokenizer) if joined else None
        self.unrendered = unrendered(tokenizer)  # what the trainer's texts would leave out

    def count(self, records: Sequence[Record]) -> list[int]:
        return self._count_texts(self.render(records))

    def render(self, records: Sequence[Record]) -> list[str]:
        """The texts the trainer tokenizes, joined where the template allows."""
        return render_examples(self.tokenizer, records, self._segments)

    def _encode_texts(self, texts: list[str]) -> list[int]:
        encode = self.tokenizer.backend_tokenizer.encode_batch_fast
        return [len(e.ids) for e in encode(texts, add_special_tokens=False)]


def load_tokenizer(model: str) -> tuple[Any, ModelFiles]:
    """A `transformers` fast tokenizer for `model`; GGUF conversions are cached on disk."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise TokenizerError("install droptune[tokens] for exact token counts") from None
    files = locate(model)
    cached = None
    if files.gguf_file:
        gguf = f"{files.location}/{files.gguf_file}"
        key = hashlib.sha256(gguf.encode()).hexdigest()[:16]
        cached = CACHE_DIR / "tokenizers" / key
        if (cached / "tokenizer.json").exists():
            return AutoTokenizer.from_pretrained(str(cached)), files
    try:
        tokenizer = _from_pretrained(AutoTokenizer, files)
    except Exception as exc:  # transformers raises many kinds; all mean "not loadable here"
        raise TokenizerError(f"cannot load the tokenizer of {model}: {exc}") from None
    if not getattr(tokenizer, "is_fast", False) or not tokenizer.chat_template:
        raise TokenizerError(f"{model} has no fast tokenizer with a chat template")
    if cached is not None:
        tokenizer.save_pretrained(str(cached))
    return tokenizer, files


def _from_pretrained(auto: Any, files: ModelFiles) -> Any:
    if files.gguf_file:
        return auto.from_pretrained(files.location, gguf_file=files.gguf_file)
    try:
        return auto.from_pretrained(files.location, local_files_only=True)
    except OSError:
        return auto.from_pretrained(files.location)


@lru_cache(maxsize=4)  # a warm function instance loads each tokenizer once
def counter_for(backend: str, base_model: str) -> TokenCounter:
    """The best counter available for a backend; raises TokenizerError when the exact one fails."""
    if backend == "gemini":
        return EstimateCounter(
            description="estimate: Gemini's tokenizer does not run offline; 4 characters per token"
        )
    tokenizer, files = load_tokenizer(base_model)
    return ChatTemplateCounter(tokenizer, files)
