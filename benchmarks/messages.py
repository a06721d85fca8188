"""How an error message quotes what it was given: cut short, so that a 10 MB value in a
file or a record makes a one-line error, not 10 MB of one."""

from __future__ import annotations

import reprlib
from typing import Any

# Characters of a value an error message shows: enough to recognise it.
QUOTE_LIMIT = 60


def shortened(text: str, limit: int = QUOTE_LIMIT) -> str:
    """`text` itself, or its first characters and how many more there were.

    Args:
        text: what to show.
        limit: the characters kept.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def quoted(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """`value` as Python writes it (strings in quotes), `shortened` to `limit` characters.

    Args:
        value: what was given.
        limit: the characters kept.
    """
    # reprlib stops at a depth and a length on its own, so quoting a huge or deeply nested
    # value costs what is shown, not the value's size (repr would also overflow the stack).
    short = reprlib.Repr()
    short.maxlevel = 3
    short.maxstring = short.maxother = short.maxlong = limit
    return shortened(short.repr(value), limit)
