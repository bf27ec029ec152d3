"""Masking secrets in URLs and free text: the one helper for errors, logs, attributes, labels.

`mask_url(url)` keeps a URL readable and removes what authenticates:

- userinfo: the password becomes `***` and the user name stays
  (`http://alice:***@host/`), as Go's `url.URL.Redacted()` and so the
  Collector do: the user name says *which* credential is in use (the first
  question when a backend answers 401) and is not a secret by itself. A user
  part without a password is masked whole (`http://***@host/`): that form
  usually carries a token (`https://<token>@github.com`);
- query parameters whose name looks secret (`SECRET_PARAMS`, or a name that
  contains `token`, `secret`, `passw`, `signature`, `credential`, `api_key`,
  `apikey`; case-insensitive, percent-decoded): the value becomes `***`
  (`?api_key=***&q=1`). Names and every other byte stay as written.

`mask_text(text)` applies `mask_url` to every `scheme://…` in a text (error
messages quote URLs), masks bare `name=value` pairs of the same secret names
(`api_key=…` in an error without its URL) and the credential of an
`Authorization` value (`Basic ***`, `Bearer ***`), which careless backends
echo in their error answers.

Both are linear in the input, never raise and leave text without secrets
unchanged, so they can wrap anything on the way to a sender, a log line, an
attribute or a label.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

# Query parameter names whose value is a credential (compared lower-case).
SECRET_PARAMS = frozenset({
    "api_key", "apikey", "api-key", "key", "token", "access_token", "refresh_token",
    "id_token", "password", "passwd", "pwd", "pass", "secret", "client_secret",
    "signature", "sig", "auth", "authorization", "credential", "credentials",
    "session", "sessionid", "private_token", "x-amz-signature", "x-amz-credential",
    "x-amz-security-token", "x-goog-signature", "x-goog-credential",
})
# A name containing one of these is secret too (e.g. `X-Api-Token`, `db_password`).
SECRET_PARTS = ("token", "secret", "passw", "signature", "credential", "api_key", "apikey")

# `scheme://` and what follows up to whitespace or a quote/bracket (linear: one class).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^\s\"'<>`]+")
_TRAILING = ".,:;!?)]}"
# An Authorization credential: the scheme stays, the token goes.
# A token has 6+ characters, one of them not a lower-case letter ("basic arithmetic" stays).
_AUTHZ = re.compile(r"\b((?i:Basic|Bearer|Digest|Token|ApiKey|Negotiate))( +)"
                    r"(?=[A-Za-z0-9+/=._~\-]{6})[a-z]*[A-Z0-9+/=._~\-][A-Za-z0-9+/=._~\-]*")
# A `name=value` pair outside a URL (after start, space, quote, `?`, `&`, `;`, `,` or `(`).
# The value ends before whitespace, a quote, a separator, or trailing `.:!?`.
_PAIR = re.compile(r"(?<![^\s\"'?&;,(\[{])([A-Za-z][A-Za-z0-9_.\-]{0,63})="
                   r"([^\s\"'&;,)\]}]*[^\s\"'&;,)\]}.:!?])")


def is_secret_name(name: str) -> bool:
    """True if a query parameter (or key=value) name looks like it holds a credential."""
    n = unquote(name).strip().lower()
    return n in SECRET_PARAMS or any(p in n for p in SECRET_PARTS)


def _mask_userinfo(netloc: str) -> str:
    userinfo, at, hostport = netloc.rpartition("@")
    if not at:
        return netloc
    user, colon, _password = userinfo.partition(":")
    if colon and user:
        return f"{user}:{MASK}@{hostport}"
    return f"{MASK}@{hostport}"


def _mask_query(query: str) -> str:
    parts = query.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, eq, value = part.partition("=")
        if eq and value and is_secret_name(name):
            parts[i] = f"{name}={MASK}"
            changed = True
    return "&".join(parts) if changed else query


def mask_url(url: object) -> str:
    """`url` (a str, yarl.URL …) with the password and secret query values masked."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    # The authority ends at the first '/', '?' or '#'.
    end = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if i != -1 and i < end:
            end = i
    netloc, tail = rest[:end], rest[end:]
    if sep:
        netloc = _mask_userinfo(netloc)
    frag_at = tail.find("#")
    fragment = tail[frag_at:] if frag_at != -1 else ""
    tail = tail[:frag_at] if frag_at != -1 else tail
    path, q, query = tail.partition("?")
    if q:
        query = _mask_query(query)
    return f"{scheme}{sep}{netloc}{path}{q}{query}{fragment}"


def _mask_url_match(m: re.Match[str]) -> str:
    # Punctuation that ends a sentence or a "<url>: error" prefix is not part of the URL.
    url = m.group(0)
    core = url.rstrip(_TRAILING)
    return mask_url(core) + url[len(core):]


def _mask_pair(m: re.Match[str]) -> str:
    return f"{m.group(1)}={MASK}" if is_secret_name(m.group(1)) else m.group(0)


def mask_text(text: object) -> str:
    """`text` with every URL in it masked (`mask_url`) and secret `name=value` pairs too."""
    s = str(text)
    if _AUTHZ.search(s):
        s = _AUTHZ.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", s)
    if "=" not in s and "@" not in s:
        return s  # nothing more to mask (the common case: no allocation)
    if "://" in s:
        s = _URL.sub(_mask_url_match, s)
    if "=" in s:
        s = _PAIR.sub(_mask_pair, s)
    return s


def has_userinfo(url: str) -> bool:
    """True if an absolute URL carries `user[:password]@` before its host."""
    _, sep, rest = url.partition("://")
    if not sep:
        return False
    end = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if i != -1 and i < end:
            end = i
    return "@" in rest[:end]


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """(the URL without userinfo, user, password), percent-decoded; (url, None, None)
    when there is none. What curl does with `http://user:pw@host`."""
    scheme, sep, rest = url.partition("://")
    if not sep or not has_userinfo(url):
        return url, None, None
    end = len(rest)
    for ch in "/?#":
        i = rest.find(ch)
        if i != -1 and i < end:
            end = i
    userinfo, _, hostport = rest[:end].rpartition("@")
    user, colon, password = userinfo.partition(":")
    return (f"{scheme}://{hostport}{rest[end:]}", unquote(user),
            unquote(password) if colon else None)
