"""logfmt: the hand-written fast path of `logfmt_pairs` against the general regex form."""

from __future__ import annotations

import random

import pytest

from pipeline.processors.logstruct.parsers.logfmt import LOGFMT, logfmt_pairs, unquote

TRICKY_LOGFMT = [
    "", "a", "a=", "=a", "==", "a==b", "a=b=c", 'a="x y" b', 'a="unterminated', 'a="',
    'a=""', 'a="x"b=1', 'x"y" z=1', 'a=b"c d"', '"q"=1', 'k="a\\"b" c=d', 'k="a\\\\" z=1',
    'k="x\\', "a=1\tb=2\u2003c", 'a="1" ="2"', ' a="x"  b="y"  ', 'é="ü" ß', "a= b",
    'k= "v"', 'msg="line\nbreak" x=1',
]


@pytest.mark.parametrize("text", TRICKY_LOGFMT)
def test_logfmt_pairs_are_what_the_regex_finds(text: str) -> None:
    assert logfmt_pairs(text) == [(k, unquote(v) if eq else True)
                                  for k, eq, v in LOGFMT.findall(text)]


def test_logfmt_pairs_random_texts() -> None:
    r = random.Random(11)
    alphabet = ["a", "b", "=", '"', " ", "\t", "x=", 'k="', '" ', "\u2003", "\\", "\n", "é",
                "==", "\\\""]
    for _ in range(20_000):
        text = "".join(r.choice(alphabet) for _ in range(r.randint(0, 14)))
        assert logfmt_pairs(text) == [(k, unquote(v) if eq else True)
                                      for k, eq, v in LOGFMT.findall(text)], text
