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

Work and memory are bounded whatever a message holds. Every regex here runs in
time linear in the message (possessive quantifiers and atomic groups where a
plain quantifier could backtrack; custom masks are the user's to keep linear).
A message of more than `max_tokens` words keeps its first `max_tokens - 1` and
one `<*>` for the rest, so a template has at most `max_tokens` tokens. At most
`max_templates` templates are held, and at most `max_template_bytes` of them (an
estimate of what they occupy: text, token list and tree); past either bound the
least recently used template is evicted to make room. That byte bound also bounds
the work of matching one message (at most every held token is compared once).
The exact-message cache is bounded too: two generations of at most `cache_size`
messages of at most 2,048 characters, each generation at most 1/8 of
`max_template_bytes`; an evicted template lets go of its text and tokens at once,
though the cache may still name it.

Masks are in `masks.py`, the tree's nodes, templates and token rules in
`templatetree.py`, the store's file format in `templatestore.py`. Hot path: one
precompiled regex per run of masks with the same replacement (one regex for the
default set), `str.split`, dict lookups down a shallow tree, and a cache of recent
exact and masked messages that skips all of it for repeated lines. The miner is not
thread-safe; the pipeline calls it from one event loop.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from operator import eq

import orjson
from pydantic import Field, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.types import ByteSize, Duration
from pipeline.processors.logstruct.masks import PARAM, MaskEntry, compile_masks, default_masks
from pipeline.processors.logstruct.templatestore import FORMAT_VERSION, parse_store, write_store
from pipeline.processors.logstruct.templatetree import (
    KEYED,
    PARAM_RUN,
    WORD,
    Cluster,
    Node,
    apart,
    clip_words,
    covers,
    variable_like,
)

__all__ = ["TemplateMiner", "TemplateSettings"]

log = logging.getLogger(__name__)

_NO_TOKEN = " <*>"  # equals no token: tokens come from str.split, without whitespace
_CACHE_MAX_LEN = 2048
_CACHE_ENTRY_COST = 100  # a str object and a dict slot, besides the characters


class TemplateSettings(ComponentConfig):
    """`logstruct.templates`: online template mining."""

    enabled: bool = False
    #: Applied in order before tokenising; a name selects a built-in mask,
    #: `{name, regex, replacement}` adds a custom one.
    masks: list[MaskEntry] = Field(default_factory=default_masks)
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
    #: Most words of a message mined: a longer one keeps its first `max_tokens - 1`
    #: and one `<*>` for the rest (bounds the work and memory one message costs).
    max_tokens: int = Field(default=256, ge=2)
    #: Most bytes the held templates may occupy (an estimate: text, tokens, tree);
    #: the least recently used are evicted beyond it, as beyond `max_templates`.
    max_template_bytes: ByteSize = Field(default=16 * 1024 * 1024, ge=4096)
    #: Merge runs of adjacent variables (`<*> (<*>)` → `<*>`) so a variable that
    #: spans several tokens does not split a template by length.
    merge_adjacent_variables: bool = True
    #: A message that differs from its closest template in this many words (tokens of
    #: letters, such as `modify` / `view`) is another event, not the same one with
    #: variables: it starts a template of its own. 0 turns the rule off.
    distinct_words: int = Field(default=2, ge=0)
    #: A word that stayed the same in this many messages of a template is part of the
    #: event (`HTTPS` in 900 lines, then `SOCKS5`): a message with another word there
    #: starts a template of its own. 0 turns the rule off.
    constant_after: int = Field(default=50, ge=0)

    @model_validator(mode="after")
    def _unique_mask_names(self) -> TemplateSettings:
        seen: set[str] = set()
        for m in self.masks:
            name = m if isinstance(m, str) else m.name
            if name in seen:
                raise ValueError(f"mask {name!r} listed twice")
            seen.add(name)
        return self


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
        self._max_bytes = s.max_template_bytes
        self._max_tokens = s.max_tokens
        # shorter messages cannot have more than `max_tokens` words
        self._clip_at = 2 * s.max_tokens - 1
        self._bytes = 0
        self._merge = s.merge_adjacent_variables
        self._distinct_words = s.distinct_words
        self._constant_after = s.constant_after
        self._cache_size = s.cache_size
        # each of the cache's two generations holds at most 1/8 of `max_template_bytes`
        self._cache_max_bytes = s.max_template_bytes // 8
        self._cache_bytes = 0
        self._clock = clock
        self._root: dict[int, Node] = {}
        self._lru: OrderedDict[str, Cluster] = OrderedDict()
        # two generations of recent messages (raw and masked) → cluster
        self._cache: dict[str, Cluster] = {}
        self._cache_old: dict[str, Cluster] = {}
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

        masked = self._mask(message if len(message) < self._clip_at else
                            clip_words(message, self._max_tokens))
        if masked is not message:
            c = cache.get(masked) or self._cache_old.get(masked)
            if c is not None and c.alive:
                self._lru.move_to_end(c.id)
                c.size += 1
                self._remember(message, c)
                self._remember(masked, c)
                return c.id, c.template

        text = PARAM_RUN.sub(PARAM, masked) if self._merge and PARAM in masked else masked
        cap = self._max_tokens
        tokens = text.split(None, cap)
        if len(tokens) > cap:  # a custom mask's replacement may add words
            tokens[cap - 1:] = [PARAM]
        c = self._add(tokens)
        self._remember(message, c)
        if masked is not message:
            self._remember(masked, c)
        self._calls += 1
        if self._dirty and self.settings.persist_path and not self._calls & 255:
            self.maybe_save()
        return c.id, c.template

    @property
    def held_bytes(self) -> int:
        """What the held templates occupy, as charged against `max_template_bytes`."""
        return self._bytes

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
            "version": FORMAT_VERSION,
            "templates": [{"id": c.id, "tokens": c.tokens, "size": c.size, "route": c.route}
                          for c in self._lru.values()],
        }
        write_store(path, orjson.dumps(doc))
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
            entries = parse_store(raw)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("template store %s is corrupt, starting empty: %s", path, exc)
            return 0
        for cid, tokens, size, route in entries[-self._max_templates:]:
            if cid in self._lru:
                continue
            self._insert(Cluster(cid, tokens, size), route)
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
        self._cache_bytes = 0
        self._dirty = False
        self._bytes = 0

    def _remember(self, key: str, c: Cluster) -> None:
        n = len(key)
        if n > _CACHE_MAX_LEN:  # a few huge lines must not pin megabytes
            return
        cache = self._cache
        if len(cache) >= self._cache_size or self._cache_bytes >= self._cache_max_bytes:
            if not self._cache_size:
                return
            self._cache_old = cache
            self._cache = cache = {}
            self._cache_bytes = 0
        cache[key] = c
        self._cache_bytes += (n if key.isascii() else 4 * n) + _CACHE_ENTRY_COST

    def _mask(self, message: str) -> str:
        single = self._single_mask
        if single is not None:
            return single[0].sub(single[1], message)
        for rx, repl in self._masks:
            message = rx.sub(repl, message)
        return message

    def _find_leaf(self, tokens: list[str]) -> Node | None:
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
        node: Node | None = self._root.get(len(tokens))
        keys = []
        for token in tokens[:min(self._max_depth, len(tokens) - 1)]:
            key = token
            if node is None:
                if token != PARAM and variable_like(token):
                    key = PARAM
            elif token not in node.children:
                children = node.children
                if (token != PARAM and variable_like(token)) or \
                        len(children) >= self._max_children - (PARAM not in children):
                    key = PARAM
            keys.append(key)
            node = node.children.get(key) if node is not None else None
        return tuple(keys)

    def _best(self, leaf: Node, tokens: list[str]) -> Cluster | None:
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
        best: Cluster | None = None
        best_same = -1
        best_params = -1
        # a `<*>` of the message must not count as equal to one of the template: compare
        # against a token that equals nothing (split never yields one with a space)
        probe = [_NO_TOKEN if t == PARAM else t for t in tokens] if PARAM in tokens \
            else tokens
        for c in clusters:
            same = sum(map(eq, c.tokens, probe))  # same length by construction
            params = c.params
            if c.keyed:
                ct = c.tokens
                params += sum(1 for i, key in c.keyed
                              if ct[i] != tokens[i] and len(tokens[i]) > len(key)
                              and tokens[i].startswith(key))
            if same > best_same or (same == best_same and params > best_params):
                best, best_same, best_params = c, same, params
        if best is None or (best_same < self._sim * n and best_same + best_params < n):
            return None
        if best_same + best_params < n and self._another_event(best, tokens):
            return None
        return best

    def _another_event(self, c: Cluster, tokens: list[str]) -> bool:
        """Whether the constants where `tokens` differs from template `c` say it is
        another event: a token apart in form (`apart`), `distinct_words` words, or a
        word against one that stayed the same in `constant_after` messages."""
        words = 0
        keyed = c.keyed
        for i, (a, b) in enumerate(zip(c.tokens, tokens, strict=True)):
            if a in (b, PARAM) or (keyed and covers(b, keyed, i)):
                continue
            if apart(a, b):
                return True
            if WORD.fullmatch(a) and WORD.fullmatch(b):
                words += 1
        if not words:
            return False
        need = self._distinct_words
        return bool((need and words >= need)
                    or (self._constant_after and c.size >= self._constant_after))

    def _add(self, tokens: list[str]) -> Cluster:
        leaf = self._find_leaf(tokens)
        c = self._best(leaf, tokens) if leaf is not None else None
        if c is None:
            c = Cluster(self._new_id(tokens), tokens)
            self._insert(c)
            self._dirty = True
            return c
        template = c.tokens
        keyed = c.keyed
        changed = False
        for i, (a, b) in enumerate(zip(template, tokens, strict=True)):
            if a != b and a != PARAM and not (keyed and covers(b, keyed, i)):
                if not changed:
                    template = list(template)
                    changed = True
                ka, kb = KEYED.fullmatch(a), KEYED.fullmatch(b)
                template[i] = (ka.group(1) + PARAM if ka and kb and ka.group(1) == kb.group(1)
                               else PARAM)
        c.size += 1
        self._lru.move_to_end(c.id)
        if changed:
            old = c.cost
            c.set_tokens(template)
            self._bytes += c.cost - old
            self._dirty = True
            while self._bytes > self._max_bytes and len(self._lru) > 1:
                self._evict()  # `<*>` is longer than a one- or two-letter word
        return c

    def _new_id(self, tokens: list[str]) -> str:
        digest = hashlib.blake2b(" ".join(tokens).encode(), digest_size=8).hexdigest()
        cid, n = digest, 1
        while cid in self._lru:
            n += 1
            cid = f"{digest}-{n}"
        return cid

    def _insert(self, c: Cluster, route: tuple[str, ...] | None = None) -> None:
        lru = self._lru
        while lru and (len(lru) >= self._max_templates
                       or self._bytes + c.cost > self._max_bytes):
            self._evict()
        lru[c.id] = c
        self._bytes += c.cost
        if route is None or len(route) != max(0, min(self._max_depth, len(c.tokens) - 1)):
            route = self._route(c.tokens)
        c.route = route
        node = self._root.get(len(c.tokens))
        if node is None:
            node = self._root[len(c.tokens)] = Node()
        for key in route:
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = Node()
            node = child
        node.clusters.append(c)
        c.leaf = node

    def _evict(self) -> None:
        """Drop the least recently used template. The cache may still point at it (it
        checks `alive`): what it held goes now, not when the cache lets go of it."""
        _, old = self._lru.popitem(last=False)
        self._unlink(old)
        old.alive = False
        old.tokens = []
        old.template = ""
        old.route = ()
        self._bytes -= old.cost
        self.evicted += 1

    def _unlink(self, c: Cluster) -> None:
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
        path: list[tuple[Node, str]] = []
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


