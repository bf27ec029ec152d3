"""The `redact` processor's built-in secret patterns, the attribute key names that
name a secret, and the card number check."""

from __future__ import annotations

import re

_KEYWORDS = (r"passw(?:or)?d|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key"
             r"|private[_-]?key|auth[_-]?key|credentials?|[a-z0-9]_key")
_VALUE = r"""(?:"(?:[^"\\\n]|\\.)+"|'[^'\n]+'|[^\s"',;&}\]\)<>{\[]+)"""

# name -> (regex, gate): the regex runs on a string only if one of the gate words
# occurs in its lower-cased text (or, for "digits", it has a run of 4+ digits).
# Patterns in LOWERCASE_PATTERNS are written in lower case and run on the
# lower-cased text: case-insensitive matching in `re` costs about 10x more.
BUILTIN_PATTERNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "authorization": (
        r"(?:proxy-)?authorization[\"']?\s*[:=][\s\[\"']*"
        r"(?:(?:bearer|basic|token|digest|negotiate|apikey)\s+)?(?P<secret>[^\s\"',;\]]+)",
        ("authorization",)),
    "key_value": (
        rf"(?P<key>{_KEYWORDS})[\"']?\s*[:=]\s*(?P<secret>{_VALUE})",
        ("passw", "passphrase", "pwd", "secret", "token", "key", "credential")),
    "bearer": (
        r"\b(?:Bearer|Basic)\s+(?P<secret>(?=[\w\-.~+/]*\d)[\w\-.~+/]{16,}=*)",
        ("bearer", "basic")),
    "url_credentials": (
        r"[A-Za-z][\w+.-]*://[^/\s:@]+:(?P<secret>[^/\s@]+)@", ("://",)),
    "jwt": (r"\beyJ[\w-]{5,}\.eyJ[\w-]{5,}\.[\w-]*", ("eyj",)),
    "aws_access_key": (r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
                       ("akia", "asia", "abia", "acca")),
    "vendor_token": (
        r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_\w{22,}|xox[abposr]-[\w-]{10,}"
        r"|[sr]k_(?:live|test)_[0-9a-zA-Z]{16,}|AIza[\w-]{35})",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "k_live_", "k_test_",
         "aiza")),
    "private_key": (
        r"-----BEGIN[A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END[A-Z ]*PRIVATE KEY-----|\Z)",
        ("private key",)),
    "card_number": (r"(?<![\w.])[2-6]\d{3}(?:[ -]?\d){9,15}(?!\w|\.\d)", ("digits",)),
}

LOWERCASE_PATTERNS = frozenset({"authorization", "key_value"})
KNOWN_KEY_WORDS = frozenset({"api_key", "access_key", "private_key", "auth_key"})

# Attribute keys naming a secret: the last dotted segment, optionally prefixed.
SECRET_KEY_RE = re.compile(
    r"(?:[\w-]*[_-])?(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey"
    r"|access[_-]?key|secret[_-]?key|private[_-]?key|authorization|cookie|set-cookie"
    r"|credentials?)")


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0
