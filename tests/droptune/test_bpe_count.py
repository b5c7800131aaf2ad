"""Word-by-word BPE counts equal the Rust encoder's, for every pipeline the counter accepts."""

from __future__ import annotations

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from droptune import bpe_count
from droptune.bpe_count import WordCounter

# Llama 3's word pattern: a Split step before a ByteLevel step that no longer splits.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|eot|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 12:30 and we'll meet at 1234 Main St.",
    "Données, naïveté, Ünïcödé — “quotes” and 'single' quotes; 日本語のテキスト、中文文本。",
    "def f(x):\n    return x ** 2  # comment\n\n\tTabs\r\nCRLF   spaces   end",
    "Emoji 🤖🚀✨ numbers 3.14159 1,000,000 ١٢٣ and URLs https://example.com/a?b=c",
] * 20
# Text drawn to hit the word pattern's edges: runs of mixed spaces, contractions, digits,
# combining marks, separators Python and Oniguruma might class differently, added tokens.
EDGES = ["’", "\u0301", "\x85", "\xa0", "\u2028", "\u3000", "\x1c", "\u200b", "日", "🤖", "٣"]
ALPHABET = st.sampled_from([*"aZé 1'\n\r\t.,!-_", *EDGES, "'s", "'LL", " x", "  "])
TEXTS = st.lists(st.one_of(ALPHABET, st.sampled_from(SPECIALS)), max_size=40).map("".join)
# ASCII text goes through the pattern's ASCII form: every character class's edges.
ASCII_TEXTS = st.lists(
    st.one_of(st.characters(max_codepoint=127), st.sampled_from(["'s", "'LL", "  ", " x", "\r\n"])),
    max_size=60,
).map("".join)


def byte_level_bpe(pre_tokenizer, normalizer=None) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    return tokenizer


GPT2_STYLE = byte_level_bpe(pre_tokenizers.ByteLevel(add_prefix_space=False))
LLAMA3_STYLE = byte_level_bpe(
    pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    ),
    normalizers.NFC(),
)


def encoded_lengths(tokenizer: Tokenizer, texts: list[str]) -> list[int]:
    return [len(e.ids) for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


@pytest.mark.parametrize("tokenizer", [GPT2_STYLE, LLAMA3_STYLE], ids=["gpt2", "llama3+nfc"])
@settings(max_examples=300, deadline=None)
@given(texts=st.lists(TEXTS, min_size=1, max_size=4))
def test_counts_equal_the_encoder_on_any_text(tokenizer: Tokenizer, texts: list[str]) -> None:
    counter = WordCounter.for_tokenizer(tokenizer)
    assert counter is not None
    assert counter.count(texts) == encoded_lengths(tokenizer, texts)


@pytest.mark.parametrize("tokenizer", [GPT2_STYLE, LLAMA3_STYLE], ids=["gpt2", "llama3+nfc"])
@settings(max_examples=300, deadline=None)
@given(texts=st.lists(ASCII_TEXTS, min_size=1, max_size=4))
def test_ascii_counts_equal_the_encoder(tokenizer: Tokenizer, texts: list[str]) -> None:
    counter = WordCounter.for_tokenizer(tokenizer)
    assert counter._ascii_findall != counter._findall  # the ASCII form is the one in use
    assert counter.count(texts) == encoded_lengths(tokenizer, texts)


@pytest.mark.parametrize(
    "pattern", [bpe_count.GPT2_PATTERN, LLAMA3_PATTERN], ids=["gpt2", "llama3"]
)
@settings(max_examples=300, deadline=None)
@given(text=ASCII_TEXTS)
def test_the_ascii_form_finds_the_same_words_in_ascii_text(pattern: str, text: str) -> None:
    assert bpe_count.ascii_form(pattern).findall(text) == regex.findall(pattern, text)


@pytest.mark.parametrize(
    "pattern",
    [
        r"\p{Lu}+", r"\x41+", r"[]a]+", r"[^]a]+", r"[a[b]]", r"(?V1)a|b", r"\X",
        "(?i)\u212a|\u017f",  # Kelvin sign and long s: case-insensitive, they match k and s
        r"(?:ab){e<=1}",  # regex's fuzzy matching
        r"(?x) a # [ \p{L}+",  # a comment in verbose mode
        r"(?#[)\p{L}+",  # a comment
        r"[!-\p{N}]+",  # a range ending in a class
        r"[\p{L}&&a]+",  # a set operation
        r"(?u)\w+",  # re.ASCII refuses the flag
    ],
    ids=[
        "other-class", "hex-escape", "bracket-member", "negated-bracket", "nested", "v1", "x",
        "case-folding", "fuzzy", "verbose", "comment", "range-to-class", "set-operation", "unicode",
    ],
)  # fmt: skip
def test_patterns_re_might_read_differently_have_no_ascii_form(pattern: str) -> None:
    regex.compile(pattern)  # each is a pattern `regex` reads
    assert bpe_count.ascii_form(pattern) is None


def test_counts_stay_exact_where_a_pattern_has_no_ascii_form(monkeypatch) -> None:
    monkeypatch.setattr(bpe_count, "ascii_form", lambda pattern: None)
    counter = WordCounter.for_tokenizer(GPT2_STYLE)
    assert counter._ascii_findall == counter._findall
    assert counter.count(CORPUS[:4]) == encoded_lengths(GPT2_STYLE, CORPUS[:4])


@pytest.mark.slow
def test_counts_equal_smollm2s_encoder_on_rendered_chats(real_counter) -> None:
    tokenizer = real_counter.tokenizer
    chats = [
        [{"role": "user", "content": text}, {"role": "assistant", "content": text[::-1]}]
        for text in [*CORPUS[:4], "", "  leading and trailing  ", "a\n\n\n b"]
    ]
    texts = tokenizer.apply_chat_template(chats, tokenize=False)
    counter = WordCounter.for_tokenizer(tokenizer.backend_tokenizer)
    assert counter is not None
    assert counter.count(texts) == encoded_lengths(tokenizer.backend_tokenizer, texts)


def test_a_full_word_cache_starts_again_and_stays_exact(monkeypatch) -> None:
    monkeypatch.setattr(bpe_count, "MAX_WORDS", 5)
    counter = WordCounter.for_tokenizer(GPT2_STYLE)
    assert counter.count(CORPUS[:4]) == encoded_lengths(GPT2_STYLE, CORPUS[:4])
    assert len(counter._words) <= 5


@pytest.mark.parametrize(
    "change",
    [
        lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.Whitespace()),
        lambda t: setattr(t, "pre_tokenizer", pre_tokenizers.ByteLevel(add_prefix_space=True)),
        lambda t: setattr(t, "normalizer", normalizers.Lowercase()),
        lambda t: t.add_special_tokens([_stripping("<mask>")]),
    ],
    ids=["whitespace", "prefix-space", "lowercase", "lstrip-token"],
)
def test_pipelines_it_cannot_reproduce_get_no_counter(change) -> None:
    tokenizer = Tokenizer.from_str(GPT2_STYLE.to_str())
    change(tokenizer)
    assert WordCounter.for_tokenizer(tokenizer) is None


def test_a_counter_that_fails_its_probe_is_not_used(monkeypatch) -> None:
    monkeypatch.setattr(bpe_count, "GPT2_PATTERN", r"\S+|\s+")  # words split differently
    assert WordCounter.for_tokenizer(GPT2_STYLE) is None


def _stripping(content: str):
    from tokenizers import AddedToken

    return AddedToken(content, lstrip=True, special=True)
