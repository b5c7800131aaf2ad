"""Keys nothing reads: one warning per key, at its first line and path, counted by record."""

from __future__ import annotations

from droptune.formats import BY_NAME
from droptune.unread import UnreadKeys


def test_each_key_is_warned_once_where_first_seen_with_a_did_you_mean() -> None:
    unread = UnreadKeys()
    unread.fields(2, ["mesages"])
    unread.fields(5, ["mesages"])
    unread.in_messages(3, [("wieght", "$.messages[1].wieght"), ("wieght", "$.messages[3].wieght")])
    issues = list(unread.issues(BY_NAME["chat"], records=6, file="d.jsonl"))
    assert [(i.code, i.line, i.path, i.severity) for i in issues] == [
        ("unknown_field", 2, "$.mesages", "warning"),
        ("unknown_field", 3, "$.messages[1].wieght", "warning"),
    ]
    assert issues[0].message.endswith("2 of 6 records have it; did you mean 'messages'?")
    assert issues[1].message.endswith("1 of 6 records have it; did you mean 'weight'?")
