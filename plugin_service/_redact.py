"""Turn arbitrary objects into safe, bounded, single-line diagnostic messages.

Error messages built from exceptions, HTTP requests or configuration often
carry credentials (tokens, passwords, cookies, URL userinfo) and may be huge
or contain control characters that forge or split log lines.  ``sanitize``
redacts secret values, flattens the text onto one line and bounds its length,
and it never raises, so it is safe to call on failure paths.
"""

from __future__ import annotations

import re

__all__ = ["sanitize"]

_REDACTED = "***"
_ELLIPSIS = "\u2026"
# Work on at most this many characters beyond ``limit`` so that a huge message
# cannot make a failure path slow; anything past it is cut off anyway.
_SCAN_MARGIN = 4096

# A secret-like key: the secret word may sit inside a longer key (X-Api-Key,
# access_token, db_password, Set-Cookie) and may be followed by a short
# ``-``/``_`` suffix (token_id), but not by letters (tokenizer, max_tokens).
_KEY = (
    r"(?P<key>(?:(?P<hdr>authorization|cookie)|api[-_]?key|token"
    r"|secrets?|passw(?:or)?ds?)(?:[-_][\w-]{0,64})?)"
    r"(?P<kq>\\?[\"'])?"  # closing quote of a JSON / dict key
)
_QUOTED = (
    r"(?P<esc>\\\"(?:[^\"\\]|\\[^\"])*\\\")"  # \"...\" (JSON inside a string)
    r"|(?P<dq>\"(?:[^\"\\\r\n]|\\.)*\")"
    r"|(?P<sq>'(?:[^'\\\r\n]|\\.)*')"
)
_SCHEME = r"(?:(?:bearer|basic|digest|negotiate|ntlm|token)[ \t]+)?"

# key: value -- headers run to end of line (Authorization: Digest a=1, b=2;
# Cookie: a=1; b=2), other keys to ``,``/``;``, JSON values to the delimiter.
_COLON_RE = re.compile(
    _KEY + r"(?P<sep>[ \t]*:[ \t]*)(?:" + _QUOTED + r"|(?P<bare>"
    r"(?(kq)[^\s,}\]]+|(?(hdr)[^\r\n]+|[^\r\n,;]+))))",
    re.IGNORECASE,
)
# key=value -- value runs until whitespace, &, ``,`` or ``;`` (an auth scheme
# such as "Bearer " is swallowed together with the credential).
_EQUALS_RE = re.compile(
    _KEY + r"(?P<sep>[ \t]*=[ \t]*)(?:" + _QUOTED + r"|(?P<bare>"
    + _SCHEME + r"[^\s&,;]+))",
    re.IGNORECASE,
)
# scheme://user:pass@host -> scheme://***@host (greedy: passwords may hold @).
# No word boundary before the scheme: "conn_postgres://u:p@h" must be caught too.
_URL_CREDS_RE = re.compile(r"([a-z][a-z0-9+.-]*://)[^\s/?#]+@", re.IGNORECASE)
# C0/C1 controls, line/paragraph separators, bidi and zero-width format chars.
_CONTROL_RE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]"
)


def _replace_value(match: re.Match[str]) -> str:
    prefix = match.group("key") + (match.group("kq") or "") + match.group("sep")
    if match.group("esc"):
        return prefix + '\\"' + _REDACTED + '\\"'
    if match.group("dq"):
        return prefix + '"' + _REDACTED + '"'
    if match.group("sq"):
        return prefix + "'" + _REDACTED + "'"
    quote = (match.group("kq") or "")[-1:]  # JSON-style bare value: quote it
    return prefix + quote + _REDACTED + quote


def _to_str(text: object) -> str:
    try:
        return str(text)
    except Exception:
        try:
            return "<unprintable %s>" % type(text).__name__
        except Exception:
            return "<unprintable>"


def sanitize(text: object, limit: int = 512) -> str:
    """Return ``text`` as a redacted, single-line string of at most limit+1 chars.

    Secret values (after keys such as token, password, api_key, Authorization,
    Cookie, and URL userinfo) become ``***``; control characters become single
    spaces; text longer than ``limit`` is cut and ends with an ellipsis.
    """
    try:
        try:
            limit = max(0, int(limit))
        except Exception:
            limit = 512
        message = _to_str(text)
        if len(message) > limit + _SCAN_MARGIN:
            message = message[: limit + _SCAN_MARGIN]
        message = _URL_CREDS_RE.sub(r"\1" + _REDACTED + "@", message)
        message = _COLON_RE.sub(_replace_value, message)
        message = _EQUALS_RE.sub(_replace_value, message)
        message = _CONTROL_RE.sub(" ", message)
        if len(message) > limit:
            message = message[:limit] + _ELLIPSIS
        return message
    except Exception:
        return "<unprintable>"
