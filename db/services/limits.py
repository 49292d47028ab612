"""Length and character limits on names and comments, checked before anything is written.

The same rules on SQLite and PostgreSQL: a too-long name is a clear message here, not a driver
traceback (PostgreSQL's ``VARCHAR(200)``) on one database and a 5,000-character name on the other.
Messages quote at most ``QUOTE_MAX`` characters of the bad value.
"""

from __future__ import annotations

import re

from darl_core.errors import ConfigError

NAME_MAX = 100  # project and user names
COMMENT_MAX = 2_000  # a grader's or reviewer's comment
QUOTE_MAX = 200  # how much of a bad value an error message repeats

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1; names are one line with nothing invisible
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # free text may keep tab and newline


def quote(value: str) -> str:
    """``repr`` of ``value``, cut to about ``QUOTE_MAX`` characters with the length said."""
    if len(value) <= QUOTE_MAX:
        return repr(value)
    return f"{value[:QUOTE_MAX]!r}... ({len(value):,} characters)"


def check_name(value: str, what: str) -> str:
    """``value`` stripped, or a ``ConfigError`` naming ``what`` ("Project name", "User name")."""
    name = value.strip()
    if not name:
        raise ConfigError(f"{what} must not be empty.")
    if len(name) > NAME_MAX:
        raise ConfigError(f"{what} must have at most {NAME_MAX} characters, got {len(name):,}: {quote(name)}.")
    bad = _CONTROL.search(name)
    if bad:
        raise ConfigError(f"{what} must not contain control characters (found U+{ord(bad[0]):04X} at position "
                          f"{bad.start() + 1}): {quote(name)}. Use printable characters only.")
    return name


def check_comment(value: str | None) -> str | None:
    """The stripped comment (None when empty), or a ``ConfigError`` when it is too long or has control characters."""
    text = (value or "").strip()
    if not text:
        return None
    if len(text) > COMMENT_MAX:
        raise ConfigError(f"A comment may have at most {COMMENT_MAX:,} characters, got {len(text):,}: "
                          f"{quote(text)}. Shorten it.")
    bad = _CONTROL_IN_TEXT.search(text)
    if bad:
        raise ConfigError(f"A comment must not contain control characters (found U+{ord(bad[0]):04X}); "
                          f"remove it and save again.")
    return text
