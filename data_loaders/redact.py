"""The one redaction every writer of logs, errors, results and reports uses: DSNs and settings may hold passwords."""

from __future__ import annotations

import re

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*):\S*@")
_KEY_PASSWORD = re.compile(r"((?:password|token)\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)", re.IGNORECASE)


def redact(text: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db, and password=/token=
    parameters (URL query or libpq key=value, quoted or not). A password typed unencoded may hold
    '/', '@', ':', '%' or quotes, so it runs to the last '@' of the URL."""
    return _KEY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", text))
