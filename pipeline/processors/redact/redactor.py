"""`Redactor`: the compiled patterns and the per-value scan (the hot path): masks
secrets in strings and OTLP values, gated by trigger words on each item's bytes."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any

from pipeline.processors.redact.config import RedactConfig
from pipeline.processors.redact.patterns import (
    BUILTIN_PATTERNS,
    KNOWN_KEY_WORDS,
    LOWERCASE_PATTERNS,
    SECRET_KEY_RE,
    luhn,
)

_DIGITS = bytes.maketrans(b"0123456789", b"0000000000")


def _minimal(words: set[str]) -> list[str]:
    """Drop words that contain another one (`password` when `pass` is there)."""
    return sorted(w for w in words if not any(o != w and o in w for o in words))


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
            if key.endswith("_key") and key not in KNOWN_KEY_WORDS:
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
