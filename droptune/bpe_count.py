"""Exact token counts for byte-level BPE tokenizers, without building encodings.

A byte-level BPE tokenizer (GPT-2, SmolLM2, Llama 3, Qwen2, ...) cuts its input at added tokens
(`<|im_start|>`), splits each piece into words with one regular expression, and runs BPE on
each word alone. So a text's token count is its added tokens plus the sum of its words' counts,
and a word's count never changes: counted once by the tokenizer's own BPE model, it is looked
up after that. Words repeat so much in real text that this is several times faster than
`encode_batch_fast`, which builds an `Encoding` (ids, offsets, masks) for every text.

Finding the words is most of what is left, so ASCII pieces (most of English text) are split by
the pattern's ASCII form in Python's `re`, which does it faster than `regex` (the ablation in
`bench/validate_bench.py` measures the gain): each Unicode class becomes the ASCII characters
it holds, which are all an ASCII text can contain, so both find the same words in it
(`ascii_form`). Other pieces go through `regex`.

`WordCounter.for_tokenizer` returns None for pipelines it does not reproduce (normalizers other
than NFC, added tokens that strip spaces, other pre-tokenizers), and checks itself against the
Rust encoder on a probe text before it is used; callers then encode as before. Python's
`regex` module is used because it reads the `\\p{L}`-style classes and possessive quantifiers
these tokenizers' patterns are written in.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import regex

# The pattern the ByteLevel pre-tokenizer applies when `use_regex` is true (GPT-2's).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
MAX_WORDS = 100_000  # cached word counts; the cache starts again past this, so memory stays flat
PROBE = (
    "Hello world! It's 2026: we'll test  spaces,\ttabs\r\nand\n\n\nnewlines. "
    "Ünïcödé — “quotes” 日本語のテキスト 🤖🚀 ١٢٣ 12345678 x\x85y\xa0z\u2028w\u3000v\u200bu "
    "don't DON'T I'M   trailing   "
)
ASCII_PROBE = "Hi!  It's 42:07\twe'LL  do\r\n\n x\x0b\x0cy\x1c\x1f_a ~`^[]{}\\ DON'T   end  "
# How the classes byte-level BPE patterns use read on ASCII text, inside and outside [...].
ASCII_CLASSES = {r"\p{L}": "A-Za-z", r"\p{N}": "0-9"}
SAME_ON_ASCII = set("sSdDwWbBrntfv")  # escapes Python's re (ASCII mode) reads as `regex` does
# What ascii_form leaves to `regex`: verbose mode and comments (a "[" there is no set), and set
# operations (`regex` version 1; `re` warns of them).
_NOT_TRANSLATED = re.compile(r"\(\?[a-zA-Z-]*x|\(\?#|--|&&|~~|\|\|")
_COUNT = re.compile(r"\{\d*(?:,\d*)?\}")


def _byte_chars() -> str:
    """GPT-2's byte-to-character table: the alphabet byte-level BPE vocabularies are written in."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return "".join(chars[b] for b in range(256))


_TO_BYTE_CHARS = {i: c for i, c in enumerate(_byte_chars())}  # for str.translate on latin-1


class _WordCounts(dict):
    """word -> its token count, filled on first sight by the tokenizer's own BPE model."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self._tokenize = model.tokenize

    def __missing__(self, word: str) -> int:
        if len(self) >= MAX_WORDS:
            self.clear()
        mapped = word.encode().decode("latin-1").translate(_TO_BYTE_CHARS)
        count = self[word] = len(self._tokenize(mapped))
        return count


class WordCounter:
    """Counts tokens of many texts as `len(tokenizer.encode(text, add_special_tokens=False))`."""

    def __init__(
        self,
        model: Any,
        pattern: str,
        added_tokens: list[str],
        normalize: Callable[[str], str] | None,
    ) -> None:
        self._words = _WordCounts(model)
        self._findall = regex.compile(pattern).findall
        ascii_pattern = ascii_form(pattern)
        self._ascii_findall = ascii_pattern.findall if ascii_pattern else self._findall
        self._normalize = normalize
        by_length = sorted(added_tokens, key=len, reverse=True)  # longest match wins, as in Rust
        literals = "|".join(re.escape(t) for t in by_length)  # plain text: re reads it as regex
        self._split = re.compile(literals).split if by_length else None

    @classmethod
    def for_tokenizer(cls, backend: Any) -> WordCounter | None:
        """A counter for a `tokenizers.Tokenizer` (a fast tokenizer's `backend_tokenizer`), or
        None where it would not be exact."""
        spec = json.loads(backend.to_str())
        pattern = _pattern(spec.get("pre_tokenizer"))
        normalize = _normalizer(spec.get("normalizer"))
        added = spec.get("added_tokens") or []
        if (
            pattern is None
            or normalize is False
            or spec["model"].get("type") != "BPE"
            or spec["model"].get("dropout")
            or any(t["lstrip"] or t["rstrip"] or t["single_word"] for t in added)
            or (normalize is not None and any(t["normalized"] for t in added))
        ):
            return None
        counter = cls(backend.model, pattern, [t["content"] for t in added], normalize)
        probe = [PROBE, PROBE.join(t["content"] for t in added[:8]) + PROBE, ASCII_PROBE]
        # one text at a time: a batch would start the Rust thread pool, which a later fork
        # (droptune.counting) warns about
        expected = [len(backend.encode(text, add_special_tokens=False).ids) for text in probe]
        return counter if counter.count(probe) == expected else None

    def count(self, texts: list[str]) -> list[int]:
        return [self.count_one(text) for text in texts]

    def count_one(self, text: str) -> int:
        if self._split is None:
            return self._count_piece(text)
        pieces = self._split(text)
        total = len(pieces) - 1  # one token per added token between the pieces
        for piece in pieces:
            if piece:
                total += self._count_piece(piece)
        return total

    def _count_piece(self, piece: str) -> int:
        if piece.isascii():  # a flag CPython keeps; NFC leaves ASCII as it is
            words = self._ascii_findall(piece)
        else:
            if self._normalize is not None:
                piece = self._normalize(piece)
            words = self._findall(piece)
        return sum(map(self._words.__getitem__, words))


def ascii_form(pattern: str) -> re.Pattern[str] | None:
    r"""`pattern` for ASCII-only text, compiled by Python's `re`: `\p{L}` and `\p{N}` become
    the ASCII letters and digits. None where the pattern holds anything `re` might read
    differently (other classes and escapes, non-ASCII characters, which case-insensitive
    matching may fold to ASCII ones, nested sets, set operations, ranges that end in a class,
    comments, verbose mode, braces that are not a count, syntax `re` lacks); `regex` then
    splits every piece.

    >>> ascii_form(r" ?\p{L}+|[^\s\p{L}]+").pattern
    ' ?[A-Za-z]+|[^\\sA-Za-z]+'
    >>> ascii_form(r"\p{Lu}+") is None
    True
    """
    if not pattern.isascii() or _NOT_TRANSLATED.search(pattern):
        return None
    out, i, in_class = [], 0, False
    while i < len(pattern):
        name = next((n for n in ASCII_CLASSES if pattern.startswith(n, i)), None)
        if name is not None:
            if in_class and out[-1] == "-":  # `regex` reads [!-\p{N}] as "!", "-" and digits
                return None
            members = ASCII_CLASSES[name]
            out.append(members if in_class else f"[{members}]")
            i += len(name)
            continue
        token = pattern[i : i + 2] if pattern[i] == "\\" else pattern[i]
        if token[0] == "\\" and token[1:].isalnum() and token[1:] not in SAME_ON_ASCII:
            return None
        if token == "[":
            opening = pattern[i : i + 3].removeprefix("[").removeprefix("^")
            if in_class or opening[:1] in ("]", "["):  # a nested set, or ] as a member
                return None
            in_class = True
        elif token == "]":
            in_class = False
        elif token == "{" and not in_class:
            count = _COUNT.match(pattern, i)
            if count is None:  # `regex`'s fuzzy matching, {e<=1}, or a literal brace
                return None
            token = count.group()
        out.append(token)
        i += len(token)
    try:
        return re.compile("".join(out), re.ASCII)
    except (re.error, ValueError, OverflowError):  # e.g. (?u), which re.ASCII refuses
        return None


def _pattern(pre_tokenizer: dict[str, Any] | None) -> str | None:
    """The word-splitting pattern of the two pre-tokenizer shapes byte-level BPE models use."""
    if pre_tokenizer is None:
        return None
    if pre_tokenizer.get("type") == "ByteLevel":
        plain = not pre_tokenizer.get("add_prefix_space") and pre_tokenizer.get("use_regex", True)
        return GPT2_PATTERN if plain else None
    steps = pre_tokenizer.get("pretokenizers") or []
    if pre_tokenizer.get("type") != "Sequence" or len(steps) != 2:
        return None
    split, byte_level = steps
    if (
        split.get("type") == "Split"
        and split.get("behavior") == "Isolated"
        and not split.get("invert")
        and "Regex" in (split.get("pattern") or {})
        and byte_level.get("type") == "ByteLevel"
        and not byte_level.get("add_prefix_space")
        and not byte_level.get("use_regex", True)
    ):
        return split["pattern"]["Regex"]
    return None


def _normalizer(normalizer: dict[str, Any] | None) -> Callable[[str], str] | bool | None:
    """None for no normalizer, a function for NFC, False for anything else."""
    if normalizer is None:
        return None
    if normalizer.get("type") == "NFC":
        return lambda text: unicodedata.normalize("NFC", text)
    return False
