"""The catalogue of data issues: one stable code per kind of problem.

Codes never change meaning once released; tools and users match on them. Where Google's
Gemini tuning validator names the same problem, its name is reused (`missing_contents_list`,
`consecutive_turns`, ...). `docs/error-codes.md` is generated from this table
(`python -m droptune.issues > docs/error-codes.md`) and a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"  # the dataset cannot be used until this is fixed
    WARNING = "warning"  # usable, but probably not what the user meant


@dataclass(frozen=True)
class IssueKind:
    code: str
    severity: Severity
    summary: str
    hint: str


def _kinds(*rows: tuple[str, Severity, str, str]) -> dict[str, IssueKind]:
    return {code: IssueKind(code, sev, summary, hint) for code, sev, summary, hint in rows}


E, W = Severity.ERROR, Severity.WARNING

CATALOGUE: dict[str, IssueKind] = _kinds(
    # --- the file itself -------------------------------------------------------------------
    ("empty_file", E, "The file holds no examples.", "Upload a file with at least one example."),
    (
        "invalid_utf8",
        E,
        "Bytes that are not valid UTF-8.",
        "Re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`).",
    ),
    (
        "json_syntax",
        E,
        "A line (or the array) is not valid JSON.",
        "Fix the JSON at the given column; JSONL needs one complete object per line.",
    ),
    (
        "record_too_large",
        E,
        "A line or CSV field is longer than any training example can be (32 MiB); it is skipped.",
        "Check the line: a whole file on one line, an embedded file, or a CSV quote left open.",
    ),
    (
        "too_deep",
        E,
        "A record nests lists or objects more than 64 levels deep; it is skipped.",
        "No training format nests that deep: look for a value written as JSON inside JSON "
        "many times over, or a runaway generator.",
    ),
    (
        "not_an_object",
        E,
        "A record is not a JSON object.",
        'Each line (or array element) must be an object such as {"messages": [...]}.',
    ),
    (
        "bom",
        W,
        "The file starts with a UTF-8 byte-order mark.",
        "Save without BOM; it was ignored.",
    ),
    (
        "crlf_line_endings",
        W,
        "Lines end with CRLF (Windows line endings).",
        "Harmless here; convert with `dos2unix` for other tools.",
    ),
    ("blank_line", W, "A blank line between records.", "Remove blank lines; they were skipped."),
    (
        "csv_row_length",
        E,
        "A CSV/TSV row has a different number of fields than the header.",
        "Quote fields that contain the delimiter, or fix the row.",
    ),
    (
        "csv_no_header",
        E,
        "A CSV/TSV file without a recognisable header.",
        "Add a header row (e.g. `text,label` or `prompt,completion`) or set `column_map`.",
    ),
    (
        "source_unavailable",
        E,
        "The uploaded object is gone: deleted or replaced before it could be read.",
        "Upload the file again; a replaced object is validated as its own run.",
    ),
    (
        "invalid_config",
        E,
        "The run configuration is invalid: an unknown key, a wrong type or value.",
        "Fix the key in the place the message names (object metadata, sidecar or droptune.yaml).",
    ),
    # --- format detection --------------------------------------------------------------------
    (
        "unknown_format",
        E,
        "No supported dataset format matches the records.",
        "Use one of the formats in the README, or set `format:` and `column_map:` in droptune.yaml.",
    ),
    (
        "mixed_formats",
        E,
        "Records in one file follow different formats.",
        "Keep one format per file; convert the odd lines or split the file.",
    ),
    (
        "format_mismatch",
        E,
        "A record does not follow the format the file was detected as.",
        "Make this record follow the file's format, or remove it.",
    ),
    (
        "preference_data",
        E,
        "Preference data (chosen/rejected or KTO labels): not supported for supervised tuning.",
        "Keep only the preferred response as the assistant turn, or use a preference-tuning tool.",
    ),
    # --- records -----------------------------------------------------------------------------
    (
        "missing_field",
        E,
        "A required field is missing.",
        "Add the field named in the message.",
    ),
    (
        "invalid_type",
        E,
        "A field has the wrong JSON type.",
        "Give the field the type named in the message.",
    ),
    (
        "unknown_field",
        W,
        "A field the detected format does not read, at the top level or in a chat message "
        "(one warning per field name).",
        "It is ignored; remove it or check its spelling.",
    ),
    (
        "missing_messages",
        E,
        "`messages` is missing or not a non-empty list.",
        "Give each record a `messages` list of {role, content} objects.",
    ),
    (
        "invalid_message",
        E,
        "A message is not an object with `role` and `content`.",
        'Write each message as {"role": "user", "content": "..."}.',
    ),
    (
        "message_missing_key",
        E,
        "A message lacks `role` or `content`.",
        "Add the missing key; assistant messages with tool calls may omit content.",
    ),
    (
        "unrecognized_role",
        E,
        "A role droptune does not know.",
        "Use system, user, assistant or tool (Gemini format: user, model).",
    ),
    (
        "invalid_content",
        E,
        "Message content is neither a string nor a list of text parts.",
        'Make `content` a string, or a list of {"type": "text", "text": ...} parts.',
    ),
    (
        "non_text_content",
        E,
        "Content holds a part of a type droptune does not read (media are multimodal_unsupported).",
        'Use text parts (`{"type": "text", "text": ...}`); remove or rewrite the part.',
    ),
    (
        "empty_text",
        E,
        "Text that is empty or only whitespace.",
        "Write the missing text, or remove the example.",
    ),
    (
        "system_not_first",
        E,
        "A system message after the conversation has started.",
        "Put the system message first, once.",
    ),
    (
        "first_turn_not_user",
        E,
        "The first turn after the system message is not from the user.",
        "Start the conversation with a user turn.",
    ),
    (
        "consecutive_turns",
        E,
        "Two turns in a row from the same side.",
        "Alternate user and assistant turns; merge consecutive turns into one.",
    ),
    (
        "last_turn_not_assistant",
        E,
        "The conversation does not end with an assistant (model) turn.",
        "End every example with the response the model should learn.",
    ),
    (
        "weight_unsupported",
        W,
        "An assistant turn with `weight: 0` for the gemini backend, whose tuning learns every "
        "model turn: the turn is trained on like the others.",
        "Remove the turn (with the turns after it), or use the custom backend, which skips "
        "turns of weight 0.",
    ),
    (
        "reasoning_unsupported",
        W,
        "An assistant turn with `reasoning_content` for the gemini backend, whose tuning data "
        "holds text turns only: the answer is learned without its reasoning.",
        "Put the reasoning in the answer's text if it should be learned, or use the custom "
        "backend with a base model whose template renders reasoning (e.g. Qwen3).",
    ),
    (
        "template_drops_tools",
        E,
        "The base model's chat template renders no tool calls or tool definitions, so the "
        "trainer would learn this conversation without them (a call as an empty answer).",
        "Choose a base model whose chat template renders tools (Qwen2.5, Llama 3.1 and later), "
        "or remove the tool turns.",
    ),
    (
        "template_drops_reasoning",
        W,
        "The base model's chat template leaves `reasoning_content` out: the answers are "
        "learned without their reasoning.",
        "Choose a base model whose template renders reasoning (e.g. Qwen3), or put the "
        "reasoning in the answer's text if it should be learned.",
    ),
    (
        "incomplete_session",
        E,
        "A conversation-export session with a message that is not valid: the whole session is "
        "left out, as the conversation would say something else without that message.",
        "Fix the session's invalid message (reported at its own line).",
    ),
    (
        "tool_calls_unsupported",
        E,
        "Tool calls or tool messages, which this backend cannot tune on.",
        "Use the custom backend for tool-calling data, or remove tool turns.",
    ),
    (
        "multimodal_unsupported",
        E,
        "Images, audio, video or files (content parts or `images`/`videos`/`audios` lists).",
        "droptune's backends tune on text: remove the media, or describe it in text.",
    ),
    (
        "invalid_tool_arguments",
        E,
        "A tool call's function.arguments is not a JSON object encoded as a string.",
        'Write the arguments as one JSON object in a string, e.g. "{\\"city\\": \\"Paris\\"}": '
        "a model tuned on broken calls learns to make them.",
    ),
    (
        "undeclared_tool",
        W,
        "A tool call names a function that the example's `tools` does not declare.",
        "Declare the tool in `tools`, or fix the name in the call.",
    ),
    (
        "text_only_unsupported",
        E,
        "Plain text (completion) data, which this backend cannot tune on.",
        "Use the custom backend, or turn the data into prompt/response pairs.",
    ),
    (
        "template_placeholder",
        W,
        "Text contains a template placeholder such as {{name}}.",
        "Fill in placeholders before tuning, or the model learns them literally.",
    ),
    # Google's Gemini tuning validator names, for the `contents` format.
    (
        "missing_contents_list",
        E,
        "`contents` is missing or not a list.",
        "Give each record a `contents` list of {role, parts} objects.",
    ),
    (
        "invalid_content_item",
        E,
        "An item of `contents` is not an object.",
        'Write each item as {"role": "user", "parts": [{"text": "..."}]}.',
    ),
    (
        "content_item_missing_key",
        E,
        "An item of `contents` lacks `role` or `parts`.",
        "Add the missing key.",
    ),
    (
        "missing_or_invalid_parts",
        E,
        "`parts` is missing, empty or not a list.",
        "Give each content item a non-empty `parts` list.",
    ),
    (
        "invalid_part",
        E,
        "A part is not an object with a `text` field.",
        'Write each part as {"text": "..."}.',
    ),
    ("missing_text", E, "A part has no `text`.", "Add the text of the part."),
    # --- dataset-level -----------------------------------------------------------------------
    (
        "duplicate_example",
        W,
        "An example repeats an earlier one exactly.",
        "Remove duplicates: they weigh those examples twice.",
    ),
    (
        "too_few_examples",
        E,
        "Fewer valid examples than the minimum.",
        "Add examples (or lower `min_examples` if you know what you are doing).",
    ),
    (
        "too_many_examples",
        E,
        "More examples than the backend accepts.",
        "Sample the dataset down to the limit.",
    ),
    ("file_too_large", E, "The file is larger than the limit.", "Split or sample the file."),
    (
        "over_token_limit",
        E,
        "An example is longer than the backend's per-example token limit.",
        "Shorten or split the example.",
    ),
    (
        "over_max_length",
        W,
        "An example is longer than `max_length`; training truncates it.",
        "Raise `max_length` (more memory) or shorten the example.",
    ),
    (
        "label_imbalance",
        W,
        "One label is far more frequent than another.",
        "Balance the classes, or expect accuracy to favour the majority label.",
    ),
    (
        "tokenizer_unavailable",
        W,
        "The base model's tokenizer could not be loaded; token counts are estimates.",
        "Install `droptune[tokens]` and make the model reachable (hub, local path or gs://).",
    ),
)


@dataclass
class Issue:
    """One problem found in the data, located as precisely as the format allows."""

    code: str
    message: str
    line: int | None = None  # 1-based line of the file where the record starts
    path: str | None = None  # JSON path inside the record, e.g. $.messages[2].content
    file: str | None = None
    column: int | None = None
    byte_offset: int | None = None
    severity: Severity = field(init=False)
    hint: str = field(init=False)

    def __post_init__(self) -> None:
        kind = CATALOGUE[self.code]  # KeyError here is a programming error: unknown code
        self.severity = kind.severity
        self.hint = kind.hint

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class IssueLog:
    """Counts every issue and keeps the first `cap` examples of each code."""

    def __init__(self, cap: int = 20) -> None:
        self.cap = cap
        self.counts: dict[str, int] = {}
        self.examples: list[Issue] = []

    def add(self, issue: Issue) -> None:
        seen = self.counts.get(issue.code, 0)
        self.counts[issue.code] = seen + 1
        if seen < self.cap:
            self.examples.append(issue)

    def count(self, severity: Severity) -> int:
        return sum(n for code, n in self.counts.items() if CATALOGUE[code].severity == severity)

    @property
    def errors(self) -> int:
        return self.count(Severity.ERROR)

    @property
    def warnings(self) -> int:
        return self.count(Severity.WARNING)


def catalogue_markdown() -> str:
    """The code table for docs/error-codes.md."""
    lines = [
        "# Data issue codes",
        "",
        "Generated from `droptune/issues.py`; do not edit by hand.",
        "",
        "| code | severity | meaning | how to fix |",
        "|---|---|---|---|",
    ]
    for kind in CATALOGUE.values():
        row = (kind.code, kind.severity.value, kind.summary, kind.hint.replace("|", "\\|"))
        lines.append("| `{}` | {} | {} | {} |".format(*row))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(catalogue_markdown(), end="")
