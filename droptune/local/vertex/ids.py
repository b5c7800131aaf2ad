"""Resource ids as Vertex AI makes them: decimal numbers of up to 19 digits."""

from __future__ import annotations

import secrets


def new_id() -> str:
    """A fresh numeric id (never starting with 0, so it round-trips through int64).

    >>> len(new_id()) == 19 and new_id().isdigit()
    True
    """
    return str(secrets.randbelow(9 * 10**18) + 10**18)
