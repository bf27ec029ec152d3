"""`redact` processor: masks secrets in log bodies, attributes and resources.

```yaml
processors:
  redact:
    mask: "****"                 # what a secret becomes
    hash: sha256                 # instead: a stable digest, so values stay joinable
    hash_key: ${env:REDACT_KEY}  # HMAC key for `hash` (recommended: passwords are guessable)
    blocked_keys: [user.ssn]     # attribute keys whose whole value is always masked
    allowed_keys: [http.route]   # attribute keys never touched
    allow_values: ['4111 ?1111 ?1111 ?1111']  # a secret fully matching one is kept
    patterns:                    # more secrets; a group named `secret` masks only that part
      - {name: ssn, regex: '\\b\\d{3}-\\d{2}-\\d{4}\\b', keywords: ['-']}
    disable_patterns: [card_number]   # built-in patterns to switch off
    summary: true                # redaction.masked.count / .keys on items that were changed
```

What is masked (built-in `patterns`, each can be disabled by name):

- `authorization`: the credential after `Authorization:` / `authorization=` (any
  scheme: `Bearer …`, `Basic …`), the scheme is kept;
- `key_value`: the value of `password=…`, `"password": "…"`, `pwd`, `passwd`,
  `passphrase`, `secret`, `token`, `api_key` / `apikey` / `api-key`,
  `access_key`, `private_key`, `credentials` pairs (`=` or `:`, quoted or not,
  case-insensitive; the keyword may end a longer key: `DB_PASSWORD=`,
  `GITHUB_TOKEN=`, `client_secret=`) and of any upper-case `*_KEY=` pair
  (`SECRET_KEY=`, `AWS_ACCESS_KEY=`); `password reset requested` has no value and
  stays;
- `bearer`: `Bearer <token>` / `Basic <b64>` outside a header (tokens of 16+
  characters with a digit);
- `url_credentials`: the password in `scheme://user:password@host`;
- `jwt`: JSON Web Tokens (`eyJ….eyJ….…`);
- `aws_access_key`: `AKIA…`/`ASIA…` key ids; `vendor_token`: GitHub (`ghp_…`,
  `github_pat_…`), Slack (`xox?-…`), Stripe (`sk_live_…`), Google (`AIza…`);
- `private_key`: PEM `-----BEGIN … PRIVATE KEY-----` blocks;
- `card_number`: 13–19 digits (spaces or dashes allowed) starting with 2–6 and
  passing the Luhn check, so ordinary ids and timestamps stay (about one
  random 16-digit number in twenty would still be masked: the check is a
  checksum, not proof).

Attribute keys that name a secret (last dotted segment `password`, `passwd`,
`pwd`, `secret`, `token`, `api_key`, `apikey`, `access_key`, `private_key`,
`authorization`, `cookie`, `set-cookie`, `credentials`, optionally prefixed
as in `db.password`, `csrf_token`, `x-api-key`, `http.request.header.authorization`)
have their whole value masked, like `blocked_keys`; `secret_keys: false` turns
that off. `gen_ai.usage.input_tokens` or `token_type` are not secret names.

Where: log bodies (strings, and the values inside map/array bodies),
log record, span, span event and link, and data point attributes, span status
messages, resource attributes. Span names and metric names are not scanned.

Cost: a batch is first checked as the serialized bytes it arrived in (one
`bytes.lower()` and a few substring searches): a batch without any trigger
word (`password`, `token`, `key`, `bearer`, `eyj`, 4-digit runs …) passes
untouched, without being decoded or re-encoded. Otherwise each string is
gated the same way and only strings with a trigger run the combined regex;
see docs/processors.md for measured costs.

Size: at the ~600-line guideline. `Redactor` (compiled patterns and the
per-value scan: the hot path) is most of it; the config and the processor are
thin wrappers around it and stay next to it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from pipeline.component import (
    Component,
    ComponentConfig,
    Consumer,
    Factory,
    Kind,
    ProcessorCreateSettings,
    Signal,
)
from pipeline.config.types import Regex
from pipeline.pdata.batch import Batch
from pipeline.processors._otlp import data_points, find, resources

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
_KNOWN_KEY_WORDS = frozenset({"api_key", "access_key", "private_key", "auth_key"})

# Attribute keys naming a secret: the last dotted segment, optionally prefixed.
SECRET_KEY_RE = re.compile(
    r"(?:[\w-]*[_-])?(?:password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey"
    r"|access[_-]?key|secret[_-]?key|private[_-]?key|authorization|cookie|set-cookie"
    r"|credentials?)")

_DIGITS = bytes.maketrans(b"0123456789", b"0000000000")


def _minimal(words: set[str]) -> list[str]:
    """Drop words that contain another one (`password` when `pass` is there)."""
    return sorted(w for w in words if not any(o != w and o in w for o in words))


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


class PatternConfig(ComponentConfig):
    name: str = Field(min_length=1)
    regex: Regex = Field(description="a group named `secret` masks only that part of a match")
    keywords: list[str] = Field(
        default_factory=list,
        description="lower-case words one of which every match contains; the regex then "
                    "runs only on strings holding one (faster). Empty: runs on every string")

    @field_validator("regex")
    @classmethod
    def _no_backreferences(cls, v: str) -> str:
        if re.search(r"\\[1-9]|\(\?P=", v):
            raise ValueError("backreferences are not supported (patterns are combined)")
        return v


class RedactConfig(ComponentConfig):
    mask: str = Field("****", min_length=1, description="replacement of a masked secret")
    hash: Literal["sha256"] | None = Field(
        None, description="replace secrets by `sha256:<hex>` of their value instead of `mask`")
    hash_key: SecretStr | None = Field(
        None, description="HMAC-SHA256 key for `hash` (without it a guessable secret can be "
                          "found from its digest)")
    patterns: list[PatternConfig] = Field(default_factory=list,
                                          description="additional secret patterns")
    disable_patterns: list[str] = Field(default_factory=list,
                                        description="built-in patterns to switch off")
    blocked_keys: list[str] = Field(
        default_factory=list, description="attribute keys whose values are always masked")
    secret_keys: bool = Field(
        True, description="mask the whole value of attributes whose key names a secret")
    allowed_keys: list[str] = Field(
        default_factory=list, description="attribute keys never masked nor scanned")
    allow_values: list[Regex] = Field(
        default_factory=list, description="regexes: a found secret fully matching one is kept")
    summary: bool = Field(
        False, description="add redaction.masked.count and redaction.masked.keys to items "
                           "where something was masked")

    @field_validator("disable_patterns")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in BUILTIN_PATTERNS:
                raise ValueError(f"unknown built-in pattern {name!r}; known: "
                                 f"{', '.join(BUILTIN_PATTERNS)}")
        return v

    @model_validator(mode="after")
    def _names(self) -> RedactConfig:
        names = [p.name for p in self.patterns]
        for n in names:
            if names.count(n) > 1 or n in BUILTIN_PATTERNS:
                raise ValueError(f"pattern name {n!r} is used twice (or is a built-in name)")
        if self.hash_key is not None and self.hash is None:
            raise ValueError("hash_key needs hash: sha256")
        return self


class Redactor:
    """Masks secrets in strings and OTLP values; counts what it masked."""

    def __init__(self, config: RedactConfig):
        self.config = config
        pats: list[tuple[str, str, tuple[str, ...] | None]] = [
            (name, regex, gate) for name, (regex, gate) in BUILTIN_PATTERNS.items()
            if name not in config.disable_patterns]
        pats += [(p.name, p.regex, tuple(k.lower() for k in p.keywords) or None)
                 for p in config.patterns]
        # (name, regex, gate words or None = always, runs on the lower-cased text,
        #  regex for that text when lower-casing changed its length).
        self.patterns: list[tuple[str, re.Pattern[str], tuple[str, ...] | None, bool,
                                  re.Pattern[str] | None]] = []
        words: set[str] = set()
        self.always = False  # some user pattern has no keywords: scan every string
        self.digits = False
        for name, regex, gate in pats:
            lower = name in LOWERCASE_PATTERNS and name in BUILTIN_PATTERNS
            fallback = re.compile(regex, re.IGNORECASE) if lower else None
            self.patterns.append((name, re.compile(regex), gate, lower, fallback))
            if gate is None:
                self.always = True
            else:
                for w in gate:
                    if w == "digits":
                        self.digits = True
                    else:
                        words.add(w)
        self.has_patterns = bool(self.patterns)
        self.active = self.patterns  # the patterns redact_str tries (see `activate`)
        self._active_cache: dict[frozenset[bytes], list[Any]] = {}
        # Words whose presence in an item's bytes means it must be scanned: the gate
        # words, blocked keys, and the parts of secret key names.
        key_words = {"pass", "pwd", "secret", "token", "key", "authorization", "cookie",
                     "credential"} if config.secret_keys else set()
        all_words = _minimal(words | key_words | {k.lower() for k in config.blocked_keys})
        self.all_words_bytes = tuple(w.encode() for w in all_words)
        self._secret_words_re = re.compile(b"|".join(
            re.escape(w) for w in self.all_words_bytes)) if self.all_words_bytes else None
        self.blocked = frozenset(k.lower() for k in config.blocked_keys)
        self.allowed = frozenset(config.allowed_keys)
        self.allow = [re.compile(r) for r in config.allow_values]
        self.mask = config.mask
        key = config.hash_key.get_secret_value().encode() if config.hash_key else None
        self._hash: Callable[[str], str] | None = None
        if config.hash == "sha256":
            if key is not None:
                self._hash = lambda s: "sha256:" + hmac.new(
                    key, s.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
            else:
                self._hash = lambda s: "sha256:" + hashlib.sha256(
                    s.encode("utf-8", "surrogatepass")).hexdigest()
        self._key_cache: dict[str, int] = {}  # key -> 0 scan, 1 mask whole value, 2 skip
        self.count = 0  # secrets masked by the last redact_* calls (reset by the caller)

    # Keys --------------------------------------------------------------------------

    def key_action(self, key: str) -> int:
        """0: scan the value, 1: mask the whole value, 2: leave alone."""
        action = self._key_cache.get(key)
        if action is None:
            if key in self.allowed:
                action = 2
            elif key.lower() in self.blocked or (
                    self.config.secret_keys
                    and SECRET_KEY_RE.fullmatch(key.rsplit(".", 1)[-1].lower())):
                action = 1
            else:
                action = 0
            if len(self._key_cache) > 10_000:
                self._key_cache.clear()
            self._key_cache[key] = action
        return action

    # Strings -----------------------------------------------------------------------

    def replacement(self, secret: str) -> str:
        return self._hash(secret) if self._hash is not None else self.mask

    def _digits_gate(self, s: str) -> bool:
        t = s.encode("utf-8", "surrogatepass").translate(_DIGITS)
        return b"0000" in t and t.count(b"0") >= 13

    def redact_str(self, s: str) -> str | None:
        """The string with its secrets masked, or None if it holds none."""
        if len(s) < 5 or not self.has_patterns:
            return None
        low = s.lower()
        digits: bool | None = None
        spans: list[tuple[int, int, int, int, str]] = []
        for name, regex, gate, lower, fallback in self.active:
            if gate is not None:
                for w in gate:
                    if w == "digits":
                        if digits is None:
                            digits = len(s) >= 13 and self._digits_gate(s)
                        if digits:
                            break
                    elif w in low:
                        break
                else:
                    continue
            if lower:
                if len(low) == len(s):
                    matches = regex.finditer(low)
                else:  # lower-casing changed lengths (rare characters): match the original
                    assert fallback is not None
                    matches = fallback.finditer(s)
            else:
                matches = regex.finditer(s)
            for m in matches:
                found = self._secret_span(name, m, s)
                if found is not None:
                    spans.append((*found, m.start(), m.end(), name))
        if not spans:
            return None
        return self._mask(s, spans)

    def _mask(self, s: str, spans: list[tuple[int, int, int, int, str]]) -> str | None:
        """`s` with the secret spans replaced (overlapping matches masked once)."""
        spans.sort()
        out: list[str] = []
        pos = 0
        count = 0
        last_end = -1
        for start, end, m_start, m_end, _name in spans:
            if m_start < last_end or start < pos:
                continue  # overlaps a match already masked
            out.append(s[pos:start])
            out.append(self.replacement(s[start:end]))
            pos = end
            last_end = m_end
            count += 1
        if not count:
            return None
        out.append(s[pos:])
        self.count += count
        return "".join(out)

    def _secret_span(self, name: str, m: re.Match[str], s: str) -> tuple[int, int] | None:
        """(start, end) in `s` of the secret a match found, or None to keep it."""
        if name == "card_number":
            digits = m.group(0).replace(" ", "").replace("-", "")
            if not 13 <= len(digits) <= 19 or not luhn(digits):
                return None
        elif name == "key_value":
            key = m.group("key")
            if key.endswith("_key") and key not in _KNOWN_KEY_WORDS:
                # `*_KEY=`: only the upper-case (environment variable) spelling.
                k0, k1 = m.span("key")
                if not s[k0:k1].isupper():
                    return None
        if "secret" in m.re.groupindex:
            start, end = m.span("secret")
        else:
            start, end = m.span()
        if end - start >= 2 and s[start] in "\"'" and s[end - 1] == s[start]:
            start += 1
            end -= 1
        secret = s[start:end]
        if not secret or secret == self.mask or (self._hash is not None
                                                and secret.startswith("sha256:")):
            return None
        for a in self.allow:
            if a.fullmatch(secret):
                return None
        return start, end

    # OTLP values -------------------------------------------------------------------

    def redact_value(self, value: Any) -> bool:
        """Mask secrets inside an AnyValue in place; True if it changed."""
        kind = value.WhichOneof("value")
        if kind == "string_value":
            new = self.redact_str(value.string_value)
            if new is None:
                return False
            value.string_value = new
            return True
        if kind == "kvlist_value":
            return self.redact_attributes(value.kvlist_value.values) is not None
        if kind == "array_value":
            changed = False
            for v in value.array_value.values:
                changed |= self.redact_value(v)
            return changed
        return False

    def mask_value(self, value: Any) -> bool:
        """Replace a whole AnyValue by the mask (or its hash); True if it changed."""
        kind = value.WhichOneof("value")
        if kind is None:
            return False
        if kind == "string_value":
            text = value.string_value
            if not text or text == self.mask:
                return False
        else:
            from pipeline.processors._otlp import value_text

            text = value_text(value)
        value.string_value = self.replacement(text)
        self.count += 1
        return True

    def redact_attributes(self, attributes: Any) -> list[str] | None:
        """Mask secrets in a repeated KeyValue in place: the keys changed, or None."""
        changed: list[str] | None = None
        key_action = self.key_action
        for kv in attributes:
            action = key_action(kv.key)
            if action == 2:
                continue
            value = kv.value
            if action == 1:
                hit = self.mask_value(value)
            else:
                kind = value.WhichOneof("value")
                if kind == "string_value":
                    new = self.redact_str(value.string_value)
                    hit = new is not None
                    if hit:
                        value.string_value = new
                elif kind == "kvlist_value" or kind == "array_value":
                    hit = self.redact_value(value)
                else:
                    continue
            if hit:
                if changed is None:
                    changed = []
                changed.append(kv.key)
        return changed

    # Batch prefilter ---------------------------------------------------------------

    def activate(self, raw: bytes | None) -> bool:
        """Restrict `redact_str` to the patterns whose trigger words occur in `raw` (the
        serialized item about to be scanned); False if none does and no key needs
        masking (then the item can be skipped). None: every pattern."""
        if raw is None or self.always or self._secret_words_re is None:
            self.active = self.patterns
            return True
        low = raw.lower()
        fired = set(self._secret_words_re.findall(low))
        if self.digits and b"0000" in raw.translate(_DIGITS):
            fired.add(b"digits")
        if not fired:
            return False
        key = frozenset(fired)
        active = self._active_cache.get(key)
        if active is None:
            # Each pattern with the gate words of it that fired (fewer checks per string).
            texts = [w.decode() for w in fired]
            active = []
            for name, regex, gate, lower, fallback in self.patterns:
                if gate is None:
                    active.append((name, regex, gate, lower, fallback))
                    continue
                sub = tuple(g for g in gate if any(t in g or g in t for t in texts))
                if sub:
                    active.append((name, regex, sub, lower, fallback))
            if len(self._active_cache) > 1000:
                self._active_cache.clear()
            self._active_cache[key] = active
        self.active = active
        return True

    def batch_may_hold_secrets(self, raw: bytes) -> bool:
        """False only if no string in these serialized bytes can hold a secret.

        Protobuf keeps strings verbatim, so a trigger word inside any string is
        also in the bytes (field framing can only add false alarms).
        """
        if self.always:
            return True
        low = raw.lower()
        if self._secret_words_re is not None:
            # One C-level scan for all trigger words (bytes: no per-word call overhead).
            if self._secret_words_re.search(low) is not None:
                return True
        else:
            for w in self.all_words_bytes:
                if w in low:
                    return True
        if self.digits:
            t = raw.translate(_DIGITS)
            if b"0000" in t:
                return True
        return False


SUMMARY_COUNT = "redaction.masked.count"
SUMMARY_KEYS = "redaction.masked.keys"


class RedactProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: RedactConfig):
        self.next = settings.next_consumer
        self.signal = settings.signal
        self.config = config
        self.redactor = Redactor(config)

    async def consume(self, batch: Batch) -> None:
        self.redact(batch)
        await self.next.consume(batch)

    def redact(self, batch: Batch) -> int:
        """Mask secrets in the batch in place; the number masked."""
        r = self.redactor
        if batch.has_raw and not r.batch_may_hold_secrets(batch.to_bytes()):
            return 0
        r.count = 0
        # Scanning writes in place. A batch that passed the byte check almost always
        # holds something to mask; one that did not is not decoded at all.
        request = batch.mutable()
        signal = self.signal
        summary = self.config.summary
        # Each item is gated on its own bytes first: serializing one item and one byte
        # scan cost less than gating each of its strings in Python.
        may = r.activate
        for res in resources(signal, request):
            if may(res.resource.SerializeToString()):
                r.redact_attributes(res.resource.attributes)
            if signal is Signal.LOGS:
                self._logs(res, summary)
            elif signal is Signal.TRACES:
                self._spans(res, summary)
            else:
                for sm in res.scope_metrics:
                    for m in sm.metrics:
                        for dp in data_points(m):
                            if may(dp.SerializeToString()):
                                r.redact_attributes(dp.attributes)
        r.activate(None)
        return r.count

    def _logs(self, res: Any, summary: bool) -> None:
        r = self.redactor
        may = r.activate
        for sl in res.scope_logs:
            for lr in sl.log_records:
                if not may(lr.SerializeToString()):
                    continue
                n = r.count
                keys = r.redact_attributes(lr.attributes)
                if lr.HasField("body") and r.redact_value(lr.body):
                    keys = [*(keys or ()), "(body)"]
                if summary and r.count > n:
                    _summarize(lr.attributes, r.count - n, keys)

    def _spans(self, res: Any, summary: bool) -> None:
        r = self.redactor
        may = r.activate
        for ss in res.scope_spans:
            for sp in ss.spans:
                if not may(sp.SerializeToString()):
                    continue
                n = r.count
                keys = r.redact_attributes(sp.attributes)
                for ev in sp.events:
                    r.redact_attributes(ev.attributes)
                for ln in sp.links:
                    r.redact_attributes(ln.attributes)
                msg = sp.status.message
                if msg:
                    new = r.redact_str(msg)
                    if new is not None:
                        sp.status.message = new
                if summary and r.count > n:
                    _summarize(sp.attributes, r.count - n, keys)


def _summarize(attributes: Any, count: int, keys: list[str] | None) -> None:
    kv = find(attributes, SUMMARY_COUNT)
    if kv is None:
        kv = attributes.add()
        kv.key = SUMMARY_COUNT
        kv.value.int_value = count
    else:
        kv.value.int_value = (kv.value.int_value or 0) + count
    if keys:
        kv = find(attributes, SUMMARY_KEYS)
        if kv is None:
            kv = attributes.add()
            kv.key = SUMMARY_KEYS
        kv.value.string_value = ",".join(sorted(set(keys)))


def _create(settings: ProcessorCreateSettings, config: RedactConfig) -> RedactProcessor:
    return RedactProcessor(settings, config)


factory = Factory(type="redact", kind=Kind.PROCESSOR, config_model=RedactConfig,
                  create=_create, signals=frozenset(Signal),
                  description="masks secrets (tokens, passwords, keys, card numbers) in "
                              "bodies and attributes")
