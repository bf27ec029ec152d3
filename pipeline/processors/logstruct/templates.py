"""Online log-template mining for `logstruct` (Drain-style).

Every message is masked (IPs, numbers, UUIDs, … become `<*>`), split on
whitespace, and routed through a fixed-depth parse tree: first by token
count, then by its leading tokens. At the leaf the most similar template is
chosen; when it is similar enough (`similarity_threshold`) the positions that
differ become `<*>`, otherwise a new template is created.

Ids are stable: a template gets its id when it is created (a hash of the
masked token sequence that created it, plus a counter on the rare collision)
and keeps it while its text generalises. With `persist_path` the templates
and their ids are written to a file (atomically: temp file + rename) and read
back on start, so ids survive restarts. A missing or corrupt file means
starting empty, with a warning.

Memory is bounded: at most `max_templates` templates are held; the least
recently used one is evicted to make room. The exact-message cache is bounded
too (`cache_size`).

Hot path: one precompiled regex per run of masks with the same replacement
(one regex for the default set), `str.split`, dict lookups down a shallow tree,
and a cache of recent exact and masked messages that skips all of it for
repeated lines. The miner is not thread-safe; the pipeline calls it from one
event loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, field_validator, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.types import Duration

__all__ = [
    "BUILTIN_MASKS",
    "DEFAULT_MASKS",
    "MASK_GATE",
    "PARAM",
    "CustomMask",
    "TemplateMiner",
    "TemplateSettings",
]

log = logging.getLogger(__name__)

PARAM = "<*>"
_FORMAT_VERSION = 1
_CACHE_MAX_LEN = 2048

# Built-in masks match whole "words": they start only where a token starts
# (start of text, after whitespace or an opening/separating character such as
# `(`, `=`, `:`, `/`), never inside an identifier (`blk_123`, `ssh2`, `Log4j`
# are left to the miner, which generalises them when they vary). That shared
# left boundary, `MASK_GATE`, is written once in front of all built-ins, which
# also makes the combined regex cheap: most positions fail on one assertion.
MASK_GATE = r"(?<![^\s(\[{<\"'=,;:/@|#])"
_R = r"(?![\w\-]|\.\w)"   # not followed by a word char, a dash, or `.x`
_UNITS = (r"(?:[kKMGTP]i?[bB](?:ytes?)?|[bB](?:ytes?)?|ns|us|µs|ms|s|sec|secs|seconds?"
          r"|mins?|minutes?|h|hrs?|hours?|d|days?|%)")
# after a space only unambiguous units (`5 KB`, `3 ms`, `2 bytes`; not `1 b`, `2 d`)
_SPACED_UNITS = (r"(?:[kKMGTP]i?[bB](?:ytes?)?|B|bytes?|ns|us|µs|ms|secs?|seconds?"
                 r"|mins?|minutes?|hrs?|hours?|days?)")
_HEX = "[0-9a-fA-F]"

#: Built-in masks by name, in the order they are tried at one position (more
#: specific first). Each replaces what it matches with `<*>`; each is meant to
#: follow `MASK_GATE`. Possessive quantifiers and leading look-aheads make a
#: non-matching word fail after a character or two.
BUILTIN_MASKS: dict[str, str] = {
    # scheme://anything-up-to-whitespace
    "url": r"[a-zA-Z][a-zA-Z0-9+.\-]*+://[^\s\"'<>]++",
    "email": r"[\w.+\-]++@[A-Za-z0-9\-]++(?:\.[A-Za-z0-9\-]++)++",
    "uuid": rf"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}(?![\w\-])",
    # date/time stamps inside the message: ISO 8601, syslog/ctime style, hh:mm:ss
    "datetime": (
        r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?(?:Z|[+-]\d\d:?\d\d)?(?!\w)"
        r"|(?=[A-Z][a-z][a-z]\s)(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+)?"
        r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+\d\d?\s+"
        r"\d\d:\d\d:\d\d(?:\s+\d{4})?(?!\w)"
        r"|\d\d:\d\d:\d\d(?:[.,]\d+)?(?!\w)"
    ),
    # full or compressed IPv6, optional %zone
    "ipv6": (
        rf"(?=:|{_HEX}{{1,4}}:[0-9a-fA-F:])"
        rf"(?:(?:{_HEX}{{1,4}}:){{7}}{_HEX}{{1,4}}"
        rf"|(?:{_HEX}{{1,4}}:){{1,7}}:(?:{_HEX}{{1,4}}(?::{_HEX}{{1,4}}){{0,6}})?"
        rf"|::(?:{_HEX}{{1,4}}(?::{_HEX}{{1,4}}){{0,6}})?)(?:%\w+)?(?![\w:])"
    ),
    # dotted quad, optional :port
    "ipv4": r"(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\w.])",
    # 0x-prefixed, or a run of 8+ hex digits holding both digits and letters (ids,
    # hashes; an all-digit run is a number)
    "hex": (rf"0[xX]{_HEX}++(?!\w)"
            rf"|(?={_HEX}{{8}})(?=[a-fA-F]*+\d)(?=\d*+[a-fA-F]){_HEX}++(?![\w\-])"),
    # absolute Unix paths with at least two segments
    "path": r"/(?:[\w.\-@%+~]++/)++[\w.\-@%+~]*+",
    # a decimal number or version, alone or with a unit (`12`, `-3.5`, `1.2.3`, `10ms`, `4 KB`)
    "number": (r"[-+]?\d++(?:\.\d+)*+(?:" + _UNITS + r"|\s" + _SPACED_UNITS + r")?" + _R),
}

BuiltinMaskName = Literal["url", "email", "uuid", "datetime", "ipv6", "ipv4", "hex", "path",
                          "number"]

#: Masks applied when `masks` is not configured.
DEFAULT_MASKS: tuple[BuiltinMaskName, ...] = (
    "url", "email", "uuid", "datetime", "ipv6", "ipv4", "hex", "path", "number",
)


class CustomMask(ComponentConfig):
    """A user-defined mask: text matching `regex` is replaced by `replacement`."""

    name: str = Field(min_length=1)
    regex: str = Field(min_length=1)
    replacement: str = PARAM

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex: {exc}") from None
        return value


MaskEntry = Annotated[BuiltinMaskName | CustomMask, Field(union_mode="left_to_right")]


def _default_masks() -> list[BuiltinMaskName | CustomMask]:
    return list(DEFAULT_MASKS)


class TemplateSettings(ComponentConfig):
    """`logstruct.templates`: online template mining."""

    enabled: bool = False
    #: Applied in order before tokenising; a name selects a built-in mask,
    #: `{name, regex, replacement}` adds a custom one.
    masks: list[MaskEntry] = Field(default_factory=_default_masks)
    #: Most templates held; the least recently used is evicted beyond this.
    max_templates: int = Field(default=10_000, ge=1)
    #: Recent exact messages remembered to skip masking and matching.
    cache_size: int = Field(default=4096, ge=0)
    #: Where templates are saved (and loaded from on start); None = memory only.
    persist_path: str | None = None
    #: How often changed templates are saved (also on shutdown).
    persist_interval: Duration = 30.0
    #: Share of a template's tokens a message must match to join it.
    similarity_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    #: Parse-tree depth as in Drain: root, token count, `depth - 3` leading
    #: tokens (never the last one), then the leaf holding templates.
    depth: int = Field(default=4, ge=3, le=16)
    #: Most children of one tree node; beyond it tokens share the `<*>` branch.
    max_children: int = Field(default=100, ge=2)
    #: Merge runs of adjacent variables (`<*> (<*>)` → `<*>`) so a variable that
    #: spans several tokens does not split a template by length.
    merge_adjacent_variables: bool = True

    @model_validator(mode="after")
    def _unique_mask_names(self) -> TemplateSettings:
        seen: set[str] = set()
        for m in self.masks:
            name = m if isinstance(m, str) else m.name
            if name in seen:
                raise ValueError(f"mask {name!r} listed twice")
            seen.add(name)
        return self


def mask_regex(mask: str | CustomMask) -> tuple[str, str]:
    """(regex, replacement) of one mask, as applied on its own (built-ins with `MASK_GATE`)."""
    if isinstance(mask, str):
        return f"{MASK_GATE}(?:{BUILTIN_MASKS[mask]})", PARAM
    return mask.regex, mask.replacement


def compile_masks(masks: Iterable[str | CustomMask]) -> list[tuple[re.Pattern[str], str]]:
    """Ordered (regex, replacement) pairs: one alternation per run of equal replacements.

    Adjacent built-ins share one `MASK_GATE` in front of their alternation.
    """
    # runs of masks with the same replacement → one regex each
    groups: list[tuple[list[tuple[bool, str]], str]] = []
    for m in masks:
        if isinstance(m, str):
            builtin, pattern, replacement = True, BUILTIN_MASKS[m], PARAM
        else:
            builtin, pattern, replacement = False, m.regex, m.replacement
        if groups and groups[-1][1] == replacement:
            groups[-1][0].append((builtin, pattern))
        else:
            groups.append(([(builtin, pattern)], replacement))
    out = []
    for patterns, replacement in groups:
        parts: list[str] = []
        run: list[str] = []
        for builtin, pattern in patterns:
            if builtin:
                run.append(f"(?:{pattern})")
                continue
            if run:
                parts.append(f"{MASK_GATE}(?:{'|'.join(run)})")
                run = []
            parts.append(f"(?:{pattern})")
        if run:
            parts.append(f"{MASK_GATE}(?:{'|'.join(run)})")
        rx = re.compile("|".join(parts))
        # a plain string replacement (no group references) keeps `sub` on its fast path
        out.append((rx, replacement.replace("\\", "\\\\")))
    return out


class _Node:
    __slots__ = ("children", "clusters")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.clusters: list[_Cluster] = []


class _Cluster:
    __slots__ = ("alive", "id", "leaf", "params", "route", "size", "template", "tokens")

    def __init__(self, cid: str, tokens: list[str], size: int = 1) -> None:
        self.id = cid
        self.tokens = tokens
        self.template = " ".join(tokens)
        self.params = tokens.count(PARAM)
        self.size = size
        self.alive = True
        self.leaf: _Node | None = None
        self.route: tuple[str, ...] = ()


def _variable_like(token: str, _search: Callable[[str], re.Match[str] | None]
                   = re.compile(r"\d|<\*>").search) -> bool:
    """Digits or a masked part: the token likely varies, so it routes to `<*>` in the tree."""
    return _search(token) is not None


class TemplateMiner:
    """Drain-style online miner. `match(message)` → `(template_id, template)`."""

    def __init__(self, settings: TemplateSettings | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = s = settings or TemplateSettings()
        self._masks = compile_masks(s.masks)
        self._single_mask = self._masks[0] if len(self._masks) == 1 else None
        self._sim = s.similarity_threshold
        self._max_depth = s.depth - 3         # leading tokens used to route
        self._max_children = s.max_children
        self._max_templates = s.max_templates
        self._merge = s.merge_adjacent_variables
        self._cache_size = s.cache_size
        self._clock = clock
        self._root: dict[int, _Node] = {}
        self._lru: OrderedDict[str, _Cluster] = OrderedDict()
        # two generations of recent messages (raw and masked) → cluster
        self._cache: dict[str, _Cluster] = {}
        self._cache_old: dict[str, _Cluster] = {}
        self._dirty = False
        self._last_save = clock()
        self._calls = 0
        self.evicted = 0
        if s.persist_path:
            self.load()

    # -- public API ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._lru)

    def match(self, message: str) -> tuple[str, str]:
        """Assign `message` to a template, creating or generalising one as needed."""
        cache = self._cache
        c = cache.get(message)
        if c is None:
            c = self._cache_old.get(message)
            if c is not None and c.alive:
                self._remember(message, c)
        if c is not None and c.alive:
            self._lru.move_to_end(c.id)
            c.size += 1
            return c.id, c.template

        masked = self._mask(message)
        if masked is not message:
            c = cache.get(masked) or self._cache_old.get(masked)
            if c is not None and c.alive:
                self._lru.move_to_end(c.id)
                c.size += 1
                self._remember(message, c)
                self._remember(masked, c)
                return c.id, c.template

        if self._merge and PARAM in masked:
            tokens = _PARAM_RUN.sub(PARAM, masked).split()
        else:
            tokens = masked.split()
        c = self._add(tokens)
        self._remember(message, c)
        if masked is not message:
            self._remember(masked, c)
        self._calls += 1
        if self._dirty and self.settings.persist_path and not self._calls & 255:
            self.maybe_save()
        return c.id, c.template

    def templates(self) -> list[tuple[str, str, int]]:
        """(id, template, size) of every held template, least recently used first."""
        return [(c.id, c.template, c.size) for c in self._lru.values()]

    def maybe_save(self) -> bool:
        """Save if templates changed and `persist_interval` has passed since the last save."""
        if not (self._dirty and self.settings.persist_path):
            return False
        if self._clock() - self._last_save < self.settings.persist_interval:
            return False
        self.save()
        return True

    def save(self) -> None:
        """Write all templates to `persist_path` atomically (temp file, fsync, rename)."""
        path = self.settings.persist_path
        if not path:
            return
        doc = {
            "version": _FORMAT_VERSION,
            "templates": [{"id": c.id, "tokens": c.tokens, "size": c.size, "route": c.route}
                          for c in self._lru.values()],
        }
        data = orjson.dumps(doc)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".templates-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._dirty = False
        self._last_save = self._clock()

    def load(self) -> int:
        """Replace the templates with those saved at `persist_path`; returns how many.

        A missing file means no templates; an unreadable or corrupt one is
        logged as a warning and also means no templates, never an exception.
        """
        path = self.settings.persist_path
        self._reset()
        if not path:
            return 0
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("template store %s unreadable, starting empty: %s", path, exc)
            return 0
        try:
            entries = _parse_store(raw)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("template store %s is corrupt, starting empty: %s", path, exc)
            return 0
        for cid, tokens, size, route in entries[-self._max_templates:]:
            if cid in self._lru:
                continue
            self._insert(_Cluster(cid, tokens, size), route)
        self._dirty = False
        return len(self._lru)

    def close(self) -> None:
        """Save (when persisting). The miner stays usable."""
        if self.settings.persist_path and (self._dirty or not os.path.exists(
                self.settings.persist_path)):
            self.save()

    # -- internals ----------------------------------------------------------------

    def _reset(self) -> None:
        for c in self._lru.values():
            c.alive = False
        self._root = {}
        self._lru = OrderedDict()
        self._cache = {}
        self._cache_old = {}
        self._dirty = False

    def _remember(self, key: str, c: _Cluster) -> None:
        if len(key) > _CACHE_MAX_LEN:  # a few huge lines must not pin megabytes
            return
        cache = self._cache
        if len(cache) >= self._cache_size:
            if not self._cache_size:
                return
            self._cache_old = cache
            self._cache = cache = {}
        cache[key] = c

    def _mask(self, message: str) -> str:
        single = self._single_mask
        if single is not None:
            return single[0].sub(single[1], message)
        for rx, repl in self._masks:
            message = rx.sub(repl, message)
        return message

    def _find_leaf(self, tokens: list[str]) -> _Node | None:
        node = self._root.get(len(tokens))
        if node is None:
            return None
        for token in tokens[:min(self._max_depth, len(tokens) - 1)]:
            children = node.children
            child = children.get(token)
            if child is None:
                child = children.get(PARAM)
                if child is None:
                    return None
            node = child
        return node

    def _route(self, tokens: list[str]) -> tuple[str, ...]:
        """The tree keys a new template is filed under (digits and overflow → `<*>`)."""
        node: _Node | None = self._root.get(len(tokens))
        keys = []
        for token in tokens[:min(self._max_depth, len(tokens) - 1)]:
            key = token
            if node is None:
                if token != PARAM and _variable_like(token):
                    key = PARAM
            elif token not in node.children:
                children = node.children
                if (token != PARAM and _variable_like(token)) or \
                        len(children) >= self._max_children - (PARAM not in children):
                    key = PARAM
            keys.append(key)
            node = node.children.get(key) if node is not None else None
        return tuple(keys)

    def _best(self, leaf: _Node, tokens: list[str]) -> _Cluster | None:
        """The most similar template at a leaf, if similar enough (or covering the message).

        Similarity is the share of positions where the template has the
        message's token (a template `<*>` is not a match); ties go to the
        template with more variables. A template that covers the message
        (every constant token equal) always matches.
        """
        clusters = leaf.clusters
        n = len(tokens)
        if not n:
            return clusters[0] if clusters else None
        best: _Cluster | None = None
        best_same = -1
        best_params = -1
        for c in clusters:
            same = 0
            for a, b in zip(c.tokens, tokens):  # noqa: B905 - same length by construction
                if a == b and a != PARAM:
                    same += 1
            if same > best_same or (same == best_same and c.params > best_params):
                best, best_same, best_params = c, same, c.params
        if best is not None and (best_same >= self._sim * n or best_same + best_params >= n):
            return best
        return None

    def _add(self, tokens: list[str]) -> _Cluster:
        leaf = self._find_leaf(tokens)
        c = self._best(leaf, tokens) if leaf is not None else None
        if c is None:
            c = _Cluster(self._new_id(tokens), tokens)
            self._insert(c)
            self._dirty = True
            return c
        template = c.tokens
        changed = False
        for i, (a, b) in enumerate(zip(template, tokens, strict=True)):
            if a != b and a != PARAM:
                if not changed:
                    template = list(template)
                    changed = True
                template[i] = PARAM
        if changed:
            c.tokens = template
            c.template = " ".join(template)
            c.params = template.count(PARAM)
            self._dirty = True
        c.size += 1
        self._lru.move_to_end(c.id)
        return c

    def _new_id(self, tokens: list[str]) -> str:
        digest = hashlib.blake2b(" ".join(tokens).encode(), digest_size=8).hexdigest()
        cid, n = digest, 1
        while cid in self._lru:
            n += 1
            cid = f"{digest}-{n}"
        return cid

    def _insert(self, c: _Cluster, route: tuple[str, ...] | None = None) -> None:
        lru = self._lru
        while len(lru) >= self._max_templates:
            _, old = lru.popitem(last=False)
            self._unlink(old)
            old.alive = False
            self.evicted += 1
        lru[c.id] = c
        if route is None or len(route) != max(0, min(self._max_depth, len(c.tokens) - 1)):
            route = self._route(c.tokens)
        c.route = route
        node = self._root.get(len(c.tokens))
        if node is None:
            node = self._root[len(c.tokens)] = _Node()
        for key in route:
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = _Node()
            node = child
        node.clusters.append(c)
        c.leaf = node

    def _unlink(self, c: _Cluster) -> None:
        """Take a template out of the tree, dropping nodes left empty (bounded memory)."""
        leaf = c.leaf
        if leaf is None:
            return
        leaf.clusters.remove(c)
        c.leaf = None
        if leaf.clusters or leaf.children:
            return
        n = len(c.tokens)
        root = self._root.get(n)
        if root is None:
            return
        path: list[tuple[_Node, str]] = []
        node = root
        for key in c.route:
            path.append((node, key))
            node = node.children[key]
        for parent, key in reversed(path):
            child = parent.children[key]
            if child.clusters or child.children:
                return
            del parent.children[key]
        if not root.children and not root.clusters:
            del self._root[n]


# A token made only of variables and punctuation: `<*>`, `(<*>)`, `<*>:<*>,` …
_PARAM_TOKEN = r"[^\w\s]*<\*>[^\w\s]*"
# Two or more such tokens in a row: one variable that spans several tokens
# (`2034 bytes (1.98 KB)` → `<*> (<*>)` → `<*>`).
_PARAM_RUN = re.compile(rf"(?<!\S){_PARAM_TOKEN}(?:\s+{_PARAM_TOKEN})+(?!\S)")


def _parse_store(raw: bytes) -> list[tuple[str, list[str], int, tuple[str, ...] | None]]:
    doc: Any = orjson.loads(raw)
    if not isinstance(doc, dict) or doc.get("version") != _FORMAT_VERSION:
        raise ValueError(f"unsupported format (version {doc.get('version')!r})"
                         if isinstance(doc, dict) else "not a JSON object")
    out = []
    for e in doc["templates"]:
        cid, tokens, size, route = e["id"], e["tokens"], e.get("size", 1), e.get("route")
        if not (isinstance(cid, str) and isinstance(tokens, list)
                and all(isinstance(t, str) for t in tokens) and isinstance(size, int)
                and (route is None or (isinstance(route, list)
                                       and all(isinstance(t, str) for t in route)))):
            raise ValueError(f"malformed template entry {e!r}")
        out.append((cid, tokens, size, tuple(route) if route is not None else None))
    return out

