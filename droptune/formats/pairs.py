"""Single-turn formats: alpaca, prompt/response pairs, and classification (text + label)."""

from __future__ import annotations

from droptune.formats.base import Example, Record

# Key pairs recognised as (user text, assistant text), in priority order.
PAIRS: tuple[tuple[str, str], ...] = (
    ("question", "answer"),
    ("prompt", "completion"),
    ("prompt", "response"),
    ("query", "response"),
    ("textInput", "output"),
    ("input", "output"),
)


def _with_system(record: Record, messages: list, origins: list[str]) -> Example:
    system = record.get("system")
    if system:
        messages.insert(0, {"role": "system", "content": system})
        origins.insert(0, "$.system")
    return Example(messages, origins)


def is_alpaca(record: Record) -> bool:
    return "instruction" in record and "output" in record


def alpaca_to_chat(record: Record) -> Example:
    """Instruction and input become the user turn; `history` pairs come first.

    >>> alpaca_to_chat({"instruction": "Add", "input": "1+1", "output": "2"}).messages[0]
    {'role': 'user', 'content': 'Add\\n\\n1+1'}
    """
    messages, origins = [], []
    for k, (user, assistant) in enumerate(record.get("history") or ()):
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        origins += [f"$.history[{k}][0]", f"$.history[{k}][1]"]
    prompt, extra = record["instruction"], record.get("input")
    if extra and extra.strip():
        prompt = f"{prompt}\n\n{extra}" if prompt.strip() else extra
    messages += [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": record["output"]},
    ]
    origins += ["$.instruction", "$.output"]
    return _with_system(record, messages, origins)


def pair_keys(record: Record) -> tuple[str, str] | None:
    for user, assistant in PAIRS:
        if user in record and assistant in record:
            return user, assistant
    return None


def is_prompt_response(record: Record) -> bool:
    return pair_keys(record) is not None


def prompt_response_to_chat(record: Record) -> Example:
    user, assistant = pair_keys(record)  # type: ignore[misc]  # matched by the predicate
    messages = [
        {"role": "user", "content": record[user]},
        {"role": "assistant", "content": record[assistant]},
    ]
    return _with_system(record, messages, [f"$.{user}", f"$.{assistant}"])


def is_classification(record: Record) -> bool:
    return "text" in record and "label" in record


def classification_to_chat(record: Record) -> Example:
    label = str(record["label"])
    prompt = record["text"]
    if record.get("instruction"):
        prompt = f"{record['instruction']}\n\n{prompt}"
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": label}]
    example = _with_system(record, messages, ["$.text", "$.label"])
    example.label = label
    return example
