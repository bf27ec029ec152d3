"""The template miner's data and token rules (`templates.py` holds the miner).

`Node` is a node of the fixed-depth parse tree, `Cluster` one template (its tokens, its
id, what it costs against `max_template_bytes`, its keyed variables `key=<*>`). The token
rules say when two tokens differ in form rather than in value (`apart`), whether a
template's keyed variable covers a token (`covers`), what counts as a word (`WORD`) and as
a variable-like token (`variable_like`). `PARAM_RUN` finds runs of adjacent variables
(merged into one), `clip_words` caps a message's words. Every regex here runs in time
linear in the message.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pipeline.processors.logstruct.masks import PARAM

__all__ = ["KEYED", "PARAM_RUN", "WORD", "Cluster", "Node", "apart", "clip_words", "covers",
           "template_cost", "variable_like"]


class Node:
    __slots__ = ("children", "clusters")

    def __init__(self) -> None:
        self.children: dict[str, Node] = {}
        self.clusters: list[Cluster] = []


# What one template occupies, estimated (CPython 3.11, 64-bit): the cluster, its id,
# tree path and leaf entry; per token a str object and a list slot; the template text
# (counted twice: the joined template and the token strings hold the same characters).
_COST_BASE = 640
_COST_PER_TOKEN = 64


def template_cost(tokens: list[str], template: str) -> int:
    """Bytes a template is charged against `max_template_bytes`."""
    return _COST_BASE + _COST_PER_TOKEN * len(tokens) + 2 * len(template)


class Cluster:
    __slots__ = ("alive", "cost", "id", "keyed", "leaf", "params", "route", "size",
                 "template", "tokens")

    def __init__(self, cid: str, tokens: list[str], size: int = 1) -> None:
        self.id = cid
        self.size = size
        self.alive = True
        self.leaf: Node | None = None
        self.route: tuple[str, ...] = ()
        self.set_tokens(tokens)

    def set_tokens(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.template = " ".join(tokens)
        self.params = tokens.count(PARAM)
        self.cost = template_cost(tokens, self.template)
        #: (position, `key=`) of each keyed variable `key=<*>`: it covers `key=` + any value
        self.keyed = tuple((i, t[:-3]) for i, t in enumerate(tokens)
                           if t.endswith(_KEYED_PARAM) and _KEY.fullmatch(t[:-3]))


# `key=value` tokens: when the values of a template and a message differ, the key stays
# (`user=<*>`) and an empty value (`rhost=`) stays apart from a filled one.
_KEYED_PARAM = "=" + PARAM
_KEY = re.compile(r"[\w.\-]+=")
KEYED = re.compile(r"([\w.\-]+=)(.+)")
# A word: letters (a dash or underscore inside, up to two trailing digits such as
# `SOCKS5`, one trailing punctuation mark), optionally as a keyed value (`user=root`).
WORD = re.compile(r"(?:[\w.\-]+=)?[A-Za-z][A-Za-z_\-]*+\d{0,2}[:;,.]?")


def covers(token: str, keyed: tuple[tuple[int, str], ...], i: int) -> bool:
    """Whether the keyed variable at position `i` of a template covers `token`."""
    for pos, key in keyed:
        if pos == i:
            return len(token) > len(key) and token.startswith(key)
    return False


def apart(a: str, b: str) -> bool:
    """Tokens that differ in form, not in value: an empty keyed value against a filled
    one (`rhost=` / `rhost=<*>`), or letters added to the same token (`failure;` /
    `failures;`, `(uid=<*>)` / `LOGIN(uid=<*>)`)."""
    if a.endswith("=") != b.endswith("=") and a.partition("=")[0] == b.partition("=")[0] \
            and "=" in a and "=" in b:
        return True
    shorter = min(len(a), len(b))
    i = 0
    while i < shorter and a[i] == b[i]:
        i += 1
    j = 0
    while j < shorter - i and a[-1 - j] == b[-1 - j]:
        j += 1
    extra = a[i:len(a) - j] or b[i:len(b) - j]
    # exactly one side has extra characters (the other is a prefix+suffix of it)
    return bool((i or j) and extra.isalpha() and (len(a) == i + j or len(b) == i + j))


def variable_like(token: str, _search: Callable[[str], re.Match[str] | None]
                   = re.compile(r"\d|<\*>").search) -> bool:
    """Digits or a masked part: the token likely varies, so it routes to `<*>` in the tree."""
    return _search(token) is not None


# A token made only of variables and punctuation: `<*>`, `(<*>)`, `<*>:<*>,` … That is
# a whole token (`(?!\S)` after it) of non-word characters holding `<*>`: the look-ahead
# finds the `<*>` without consuming, then the token is taken possessively. (The plain
# form `[^\w\s]*<\*>[^\w\s]*` backtracks quadratically over a long token such as
# `<*>:<*>:<*>…`, since `<`, `*` and `>` are themselves non-word characters.)
_PARAM_TOKEN = r"(?=[^\w\s]*?<\*>)[^\w\s]++(?!\S)"
# Two or more such tokens in a row: one variable that spans several tokens
# (`2034 bytes (1.98 KB)` → `<*> (<*>)` → `<*>`). Atomic: once a run is found it is
# not re-tried shorter, so each token is looked at a bounded number of times.
PARAM_RUN = re.compile(rf"(?<!\S)(?>{_PARAM_TOKEN}(?:\s++{_PARAM_TOKEN})++)")


def clip_words(message: str, cap: int) -> str:
    """`message` with its words past the first `cap - 1` replaced by one `<*>` (the
    words joined by single spaces then); unchanged if it has at most `cap` words."""
    words = message.split(None, cap)
    if len(words) <= cap:
        return message
    words[cap - 1:] = [PARAM]
    return " ".join(words)
