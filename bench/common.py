"""What the data-plane benchmarks share: synthetic chat JSONL, and peak-RSS reading.

The data is OpenAI-style chat (system/user/assistant, 1-3 exchanges, ~0.5-3 KB a line, a
share of the conversations with non-ASCII text): a pool of conversations, each written again
with a new id so every example is distinct. MB = 10^6 bytes.
"""

from __future__ import annotations

import json
import random
import resource
from pathlib import Path

MB = 1_000_000
ID_MARK = "@@ID@@"

# --- synthetic data -----------------------------------------------------------------------
# Words of the ASCII conversations; the others (`--non-ascii` of them) also draw on
# WIDE_VOCABULARY: accents, CJK, Cyrillic, typographic quotes and dashes, emoji, which cost
# JSON codecs more than ASCII does.
VOCABULARY = (
    "the a an of to in for on with by from as at is are was be can will should would data "
    "model training dataset example answer question user assistant system request response "
    "token tokens function value values file files line lines error errors check checks json "
    "schema format formats field fields record records message messages role content output "
    "input batch batches memory speed fast slow cloud bucket storage upload download report "
    "python code script library package install version update config configuration option "
    "options default defaults return returns list dict string number integer float boolean "
    "customer order invoice payment refund account password email address shipping delivery "
    "product price discount coupon subscription plan monthly annual support ticket issue bug "
    "feature release deploy server client request latency throughput cache index query table "
    "because however therefore although instead usually often sometimes always never please "
    "thanks sure here there this that these those it they we you your our my first second "
    "next then finally also only just more less most least each every any some all none"
)
WIDE_VOCABULARY = (
    "café naïve résumé Zürich São 東京 数据 модель données ✓ → ≥ 😀 🚀 it’s — “quoted”"
)
WORDS = VOCABULARY.split()
WIDE_WORDS = WORDS + WIDE_VOCABULARY.split()
SYSTEMS = [
    "You are a helpful assistant.",
    "You are a concise support agent for an online store. Answer in two or three sentences.",
    "You are an expert Python programmer. Explain your reasoning, then give the code.",
    "You answer questions about the user's documents. If unsure, say so.",
    "You are a careful assistant for a bank. Never reveal account numbers.",
]
CODE = (
    'def load(path):\n    """Read one record per line."""\n    with open(path) as f:\n'
    "        return [json.loads(line) for line in f if line.strip()]\n"
)


def _sentence(rng: random.Random, words: list[str], n: int) -> str:
    chosen = rng.choices(words, k=n)
    chosen[0] = chosen[0].capitalize()
    return " ".join(chosen) + rng.choice((".", ".", ".", "?", "!", ":"))


def _text(rng: random.Random, words: list[str], chars: int) -> str:
    """Prose with the odd list, quote, escaped path and code block (JSON escapes included)."""
    parts, size = [], 0
    while size < chars:
        roll = rng.random()
        if roll < 0.06:
            part = f"```python\n{CODE}```\n"
        elif roll < 0.14:
            part = "\n".join(f"- {_sentence(rng, words, rng.randint(3, 9))}" for _ in range(3))
            part += "\n"
        elif roll < 0.18:
            part = f'He said "{_sentence(rng, words, 5)}" \\ C:\\temp\\{rng.randint(1, 99)}.json\t'
        else:
            part = _sentence(rng, words, rng.randint(5, 22))
            part += " " if rng.random() < 0.8 else "\n\n"
        parts.append(part)
        size += len(part)
    return "".join(parts).strip()


def _record(rng: random.Random, non_ascii: float) -> dict:
    """One conversation of 1-3 exchanges, most with a system prompt, ~0.5-3 KB as JSON."""
    words = WIDE_WORDS if rng.random() < non_ascii else WORDS
    target = min(2600, max(400, int(rng.lognormvariate(7.0, 0.5))))  # characters of text
    turns = rng.choice((1, 1, 1, 2, 2, 3))
    messages = []
    if rng.random() < 0.8:
        messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
    share = max(40, (target - sum(len(m["content"]) for m in messages)) // turns - 60)
    for t in range(turns):
        user = _text(rng, words, max(20, share // 4))
        if t == 0:
            user = f"[#{ID_MARK}] {user}"
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": _text(rng, words, share * 3 // 4)})
    return {"messages": messages}


def make_data(
    path: Path, size_mb: float, seed: int, non_ascii: float = 0.2, pool: int = 3000
) -> int:
    """Write `size_mb` of chat JSONL; a pool of conversations, each reused with a new id."""
    rng = random.Random(seed)
    halves = []
    for _ in range(pool):
        line = json.dumps(_record(rng, non_ascii), ensure_ascii=False).encode()
        head, tail = line.split(ID_MARK.encode())
        halves.append((head, tail + b"\n"))
    order = list(range(pool))
    target, written, n = int(size_mb * MB), 0, 0
    with path.open("wb", buffering=8 << 20) as out:
        while written < target:
            rng.shuffle(order)
            chunk = []
            for i in order:
                head, tail = halves[i]
                line = b"%s%d%s" % (head, n, tail)  # the id keeps every example distinct
                chunk.append(line)
                written += len(line)
                n += 1
                if written >= target:
                    break
            out.write(b"".join(chunk))
    return n


def prefix_file(src: Path, dst: Path, size_mb: float) -> int:
    """Copy whole lines of `src` to `dst` until `size_mb` is reached; returns bytes written."""
    limit, written = int(size_mb * MB), 0
    with src.open("rb") as inp, dst.open("wb") as out:
        for line in inp:
            if written >= limit:
                break
            out.write(line)
            written += len(line)
    return written


# --- memory ---------------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / MB  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB  # Linux: KiB
