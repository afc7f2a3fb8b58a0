"""Turn arbitrary objects into safe, bounded, single-line diagnostic messages.

Error messages built from exceptions, HTTP requests or configuration often
carry credentials (tokens, passwords, cookies, URL userinfo, private keys) and
may be huge or contain control characters that forge or split log lines.
``sanitize`` redacts secret values, flattens the text onto one line and bounds
its length, and it never raises, so it is safe to call on failure paths.
``secret_key`` tells structured walkers (``jsonable``) which mapping keys hold a
secret, by the same rules.

A list of shapes always misses some, so the rules are general: the whole value
of a secret-like key is redacted whatever it is (a string, a list, an object, a
folded header line); credential formats are recognised without a key (an
``Authorization`` scheme, PEM private keys, JWTs, GitHub tokens, AWS key ids);
and percent-encoded text is decoded before matching.
"""

from __future__ import annotations

import binascii
import re
from typing import Any, Optional
from urllib.parse import unquote, urlsplit

__all__ = ["sanitize", "secret_key", "shown_url", "REDACTED"]

REDACTED = "***"
_ELLIPSIS = "\u2026"
# Work on at most this many characters beyond ``limit`` so that a huge message
# cannot make a failure path slow; anything past it is cut off anyway.
_SCAN_MARGIN = 4096

# The secret words.  A word may sit inside a longer key (X-Api-Key,
# access_token, db_password, Set-Cookie, X-Amz-Signature) and may be followed
# by a short ``-``/``_`` suffix (token_id), but not by letters (tokenizer,
# author, authority, passphrases are fine).  ``tokens`` followed by a number is
# a count (max_tokens=512) and ``pwd`` followed by a path is a directory: see
# ``_is_exempt``.
_WORDS = (
    r"(?P<word>(?P<hdr>authorization|cookies?)|api[-_]?keys?|private[-_]?keys?"
    r"|tokens?|secrets?|passw(?:or)?ds?|passphrases?|pwd|credentials?|auth"
    r"|session[-_]?id|signature)"
)
_KEY = (
    r"(?=[acpst])"  # every word starts so: most positions fail on one char test
    r"(?P<key>" + _WORDS + r"(?:[-_][\w-]{0,64})?)"
    r"(?P<kq>\\?[\"'])?"  # closing quote of a JSON / dict key
)
_STRING = r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
_ATOM = _STRING + r"|[^\[\]{}\"']"


def _nested(levels: int) -> str:
    """A bracketed value holding atoms and bracketed values ``levels - 1`` deep."""
    pattern = r"[\[{](?:" + _ATOM + r")*[\]}]"
    for _ in range(levels - 1):
        pattern = r"[\[{](?:" + _ATOM + "|" + pattern + r")*[\]}]"
    return pattern


# A list or object value: balanced up to three levels deep (quoted strings may
# hold brackets); anything deeper or never closed is redacted to the end.
_CONTAINER = r"(?P<br>" + _nested(3) + r")|(?P<open>[\[{][\s\S]*)"
_QUOTED = (
    r"(?P<esc>\\\"(?:[^\"\\]|\\[^\"])*\\\")"  # \"...\" (JSON inside a string)
    r"|(?P<dq>\"(?:[^\"\\\r\n]|\\.)*\")"
    r"|(?P<sq>'(?:[^'\\\r\n]|\\.)*')"
)
_SCHEME = r"(?:(?:bearer|basic|digest|negotiate|ntlm|token)[ \t]+)?"

# key: value -- headers run to end of line and over folded continuation lines
# (Authorization: Digest a=1, b=2; Cookie: a=1; b=2), other keys to ``,``/``;``,
# JSON values to the delimiter.  A value may start on a folded next line.
_COLON_RE = re.compile(
    _KEY + r"(?P<sep>[ \t]*:[ \t]*(?:\r?\n[ \t]+)?)(?:" + _QUOTED + "|" + _CONTAINER
    + r"|(?P<bare>(?(kq)[^\s,}\]]+|(?(hdr)[^\r\n]+(?:\r?\n[ \t][^\r\n]*)*|[^\r\n,;]+))))",
    re.IGNORECASE,
)
# key=value -- value runs until whitespace, &, ``,`` or ``;`` (an auth scheme
# such as "Bearer " is swallowed together with the credential).
_EQUALS_RE = re.compile(
    _KEY + r"(?P<sep>[ \t]*=[ \t]*)(?:" + _QUOTED + "|" + _CONTAINER + r"|(?P<bare>"
    + _SCHEME + r"[^\s&,;]+))",
    re.IGNORECASE,
)
# Credentials recognised by their format, wherever they are.
_FORMAT_RE = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----"
    r"(?:[\s\S]*?-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|[\s\S]*)"
    r"|\b(?P<scheme>bearer|basic)[ \t]+(?P<cred>[\w.~+/-]+=*)"
    r"|\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"  # a JWT: base64url({"...) . payload . sig
    r"|\b(?:gh[pousr]|github_pat)_\w{20,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    re.IGNORECASE,
)
# scheme://user:pass@host -> scheme://***@host (greedy: passwords may hold @).
# Anchored on "://" alone, whatever precedes it ("conn_postgres://u:p@h"): a
# pattern that starts with the scheme rescans every letter run, quadratic in length.
_URL_CREDS_RE = re.compile(r"://[^\s/?#]+@")
# C0/C1 controls, line/paragraph separators, bidi and zero-width format chars.
_CONTROL_RE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]"
)
_PERCENT_RE = re.compile(r"%[0-9a-fA-F]{2}")
_COUNT_RE = re.compile(r"[0-9][0-9.,]*(?![\w.~+/=-])")
_KEY_NAME_RE = re.compile(_WORDS + r"(?:[-_][\w-]{0,64})?\Z", re.IGNORECASE)
# Every secret word holds one of these: text without any skips the key patterns,
# whose alternation is tried at every position (most messages hold no key at all).
_HINTS = ("auth", "cookie", "key", "token", "secret", "pass", "pwd", "credential",
          "session", "signature")
# Hex digits and dashes (our ids, UUIDs): nothing in them to redact or flatten.
_PLAIN_ID_RE = re.compile(r"[0-9A-Fa-f-]{1,128}")


def _is_exempt(word: str, value: str) -> bool:
    """Whether ``value`` of a key spelled ``word`` is plainly not a secret."""
    word = word.lower()
    if word == "tokens":
        return _COUNT_RE.match(value.lstrip("\"' \t")) is not None
    if word == "pwd":
        return value.lstrip("\"' \t")[:1] in ("/", "~")
    return False


def secret_key(key: str, value: Any = None) -> bool:
    """Whether a mapping entry ``key: value`` holds a secret (the key says so).

    ``value`` only matters for the two exemptions: a number under ``tokens``
    (max_tokens) and a path under ``pwd``.
    """
    try:
        match = _KEY_NAME_RE.search(key)
        if match is None:
            return False
        word = match.group("word").lower()
        if word == "tokens" and type(value) in (int, float):
            return False
        if word in ("tokens", "pwd") and type(value) is str:
            return not _is_exempt(word, value)
        return True
    except Exception:
        return True


def _replace_value(match: "re.Match[str]") -> str:
    kq = match.group("kq") or ""
    value = match.group(0)[match.end("sep") - match.start():]
    if _is_exempt(match.group("word"), value):
        return match.group(0)
    prefix = match.group("key") + kq + match.group("sep")
    if match.group("esc"):
        return prefix + '\\"' + REDACTED + '\\"'
    if match.group("dq"):
        return prefix + '"' + REDACTED + '"'
    if match.group("sq"):
        return prefix + "'" + REDACTED + "'"
    quote = kq[-1:]  # JSON-style bare, list or object value: quote it
    return prefix + quote + REDACTED + quote


def _replace_format(match: "re.Match[str]") -> str:
    scheme = match.group("scheme")
    if scheme is None:
        return REDACTED
    credential = match.group("cred")
    if scheme.lower() == "bearer":
        # "bearer token required", "bearer of": prose, not a credential.
        return match.group(0) if credential.isalpha() and credential.islower() else REDACTED
    return REDACTED if _is_basic_credential(credential) else match.group(0)


def _is_basic_credential(text: str) -> bool:
    """Whether ``text`` is base64 of ``user:password`` (so "Basic setup" is not)."""
    try:
        decoded = binascii.a2b_base64(text + "=" * (-len(text) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    return ":" in decoded and decoded.isprintable()


def _unquote(message: str) -> str:
    # Twice, for doubly encoded query strings (client_secret%253D...).
    for _ in range(2):
        if _PERCENT_RE.search(message) is None:
            break
        message = unquote(message, errors="replace")
    return message


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
    Cookie, private_key, credentials; URL userinfo; bare credentials such as
    ``Bearer ...`` or a PEM private key) become ``***``; percent-encoded text is
    decoded first; control characters become single spaces; text longer than
    ``limit`` is cut and ends with an ellipsis.
    """
    try:
        try:
            limit = max(0, int(limit))
        except Exception:
            limit = 512
        message = _to_str(text)
        if len(message) > limit + _SCAN_MARGIN:
            message = message[: limit + _SCAN_MARGIN]
        if "%" in message:
            message = _unquote(message)
        message = _FORMAT_RE.sub(_replace_format, message)
        message = _URL_CREDS_RE.sub("://" + REDACTED + "@", message)
        lowered = message.lower()
        if any(hint in lowered for hint in _HINTS):
            message = _COLON_RE.sub(_replace_value, message)
            message = _EQUALS_RE.sub(_replace_value, message)
        message = _CONTROL_RE.sub(" ", message)
        if len(message) > limit:
            message = message[:limit] + _ELLIPSIS
        return message
    except Exception:
        return "<unprintable>"


def shown_id(value: Optional[object]) -> Optional[str]:
    """A correlation id as it may be shown: redacted, one line, at most 129 chars."""
    if value is None:
        return None
    if type(value) is str and _PLAIN_ID_RE.fullmatch(value) is not None:
        return value
    return sanitize(value, 128)


def shown_url(url: object, limit: int = 256) -> str:
    """``url`` as it may be shown (a repr, a status, an error message): its
    userinfo (``user:password@``) and the value of every query parameter become
    ``***``, its fragment is left out, and the rest goes through ``sanitize``
    (credential formats in the path, control characters, the length bound).
    A query parameter's name is kept (``?token=***&room=***``): which value was
    sent is what a reader needs, and any value may be a credential; a parameter
    without ``=`` is all value (``?***``). Never raises."""
    try:
        text = _to_str(url)
        try:
            parts = urlsplit(text)
        except ValueError:  # an unclosed IPv6 bracket: keep what precedes the host
            scheme, _, _ = text.partition("://")
            return sanitize(scheme + "://" + REDACTED, limit)
        host = parts.netloc.rpartition("@")
        netloc = REDACTED + "@" + host[2] if host[1] else parts.netloc
        shown = (parts.scheme + "://" if parts.scheme else "") + netloc + parts.path
        if parts.query:
            # A pair without "=" is all value: nothing of it is kept.
            shown += "?" + "&".join(pair.partition("=")[0] + "=" + REDACTED if "=" in pair
                                    else REDACTED for pair in parts.query.split("&"))
        return sanitize(shown, limit)
    except Exception:
        return "<unprintable url>"
