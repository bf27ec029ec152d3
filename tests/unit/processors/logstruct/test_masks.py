"""Masks of the template miner: what each built-in replaces, the combined alternation,
custom masks; the linear-time forms give the text the previous forms gave."""

from __future__ import annotations

import pytest

from pipeline.processors.logstruct.masks import (
    BUILTIN_MASKS,
    DEFAULT_MASKS,
    PARAM,
    compile_masks,
    mask_regex,
)
from pipeline.processors.logstruct.templates import TemplateMiner, TemplateSettings
from tests.unit.processors.logstruct.test_templates import LINES


def miner(**kw: object) -> TemplateMiner:
    return TemplateMiner(TemplateSettings(enabled=True, **kw))


def masked(text: str, *masks: str) -> str:
    m = miner(masks=list(masks) if masks else list(DEFAULT_MASKS))
    return m._mask(text)


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("ipv4", "from 10.250.10.6 ok", "from <*> ok"),
    ("ipv4", "to /10.251.43.21:50010 done", "to /<*> done"),
    ("ipv6", "peer fe80::1ff:fe23:4567:890a%eth0 up", "peer <*> up"),
    ("ipv6", "peer 2001:0db8:85a3:0000:0000:8a2e:0370:7334 up", "peer <*> up"),
    ("ipv6", "listen [::1]:8080", "listen [<*>]:8080"),
    ("uuid", "req 123e4567-e89b-12d3-a456-426614174000 ok", "req <*> ok"),
    ("hex", "addr 0x7fff5fbff8c8 and 0XDEAD", "addr <*> and <*>"),
    ("hex", "commit 9fceb02d0ae598e95dc970b74767f19372d61af8", "commit <*>"),
    ("hex", "word deadbeef stays, so does 12345678", "word deadbeef stays, so does 12345678"),
    ("number", "took 12 ms, 3.5s, size=4096 port:22 v1.2.3",
     "took <*>, <*>, size=<*> port:<*> v1.2.3"),
    ("number", "a 1 b and 2 d stay apart", "a <*> b and <*> d stay apart"),
    ("number", "version 1.2.3 and -7 and 50%", "version <*> and <*> and <*>"),
    ("number", "ids blk_123 ssh2 x86 10.0.0.1x stay", "ids blk_123 ssh2 x86 10.0.0.1x stay"),
    ("number", "sent 2034 bytes (1.98 KB)", "sent <*> (<*>)"),
    ("url", "GET https://example.com/a?b=1 done", "GET <*> done"),
    ("email", "mail to jane.doe+x@example.co.uk now", "mail to <*> now"),
    ("path", "open /etc/httpd/conf/workers2.properties ok", "open <*> ok"),
    ("datetime", "at Sun Jul 24 02:38:22 2005 end", "at <*> end"),
    ("datetime", "at 2024-05-01T12:30:00.123Z end", "at <*> end"),
    ("datetime", "lifetime 00:01:02 end", "lifetime <*> end"),
])
def test_builtin_masks(name: str, text: str, expected: str) -> None:
    assert masked(text, name) == expected


def test_masks_match_whole_words_only() -> None:
    # a digit inside an identifier is not a number; the miner generalises those
    assert (masked("jk2_init() Found child 6725 in slot 7")
            == "jk2_init() Found child <*> in slot <*>")
    assert masked("PS/2 mouse") == "PS/<*> mouse"
    assert masked("") == ""


def test_default_masks_combined_equal_one_by_one() -> None:
    """The combined alternation gives what applying each mask in order gives (on these lines)."""
    import re
    lines = [*LINES, "connection from 84.102.20.2 () at Sun Jul 24 02:38:22 2005",
             "Times: total = 39, boot = -103, init = 142, finish = 0",
             "r1---sn-i3beln7k.googlevideo.com:443 close, 733 bytes sent, lifetime 00:12"]
    combined = compile_masks(DEFAULT_MASKS)
    assert len(combined) == 1
    for line in lines:
        one_by_one = line
        for name in DEFAULT_MASKS:
            rx, repl = mask_regex(name)
            one_by_one = re.sub(rx, repl, one_by_one)
        assert combined[0][0].sub(combined[0][1], line) == one_by_one


def test_custom_masks_with_replacement_and_order() -> None:
    m = miner(masks=[{"name": "ticket", "regex": r"TCK-\d+", "replacement": "<ticket>"},
                     "number",
                     {"name": "user", "regex": r"(?<=user )\w+"}])
    tid, template = m.match("TCK-42 opened by user alice with 3 items")
    assert template == "<ticket> opened by user <*> with <*> items"
    assert m.match("TCK-7 opened by user bob with 12 items") == (tid, template)
    # a replacement with a backslash is taken literally
    m = miner(masks=[{"name": "w", "regex": "secret", "replacement": r"<\1>"}])
    assert m.match("the secret word")[1] == r"the <\1> word"


def test_no_masks() -> None:
    m = miner(masks=[])
    assert m.match("port 22 open")[1] == "port 22 open"
    assert m.match("port 23 open")[1] == f"port {PARAM} open"


def test_every_builtin_mask_compiles_alone() -> None:
    import re
    from typing import get_args

    from pipeline.processors.logstruct.masks import BuiltinMaskName
    assert set(get_args(BuiltinMaskName)) == set(BUILTIN_MASKS)
    for name in BUILTIN_MASKS:
        re.compile(mask_regex(name)[0])


def test_builtin_masks_made_possessive_give_the_same_text() -> None:
    """ipv6, number and datetime were made possessive/guarded for speed: the same text."""
    assert masked("from fe80::1%eth0 and 2001:db8::1:2:3 to ::1 ok") == \
        "from <*> and <*> to <*> ok"
    # (what the previous forms gave, compared on Loghub and 100k random lines too)
    assert masked("took 5 ms, 3.5KB, 12 bytes, 7 d, 1:2:3:4:5:6:7:8:9") == \
        "took <*>, <*>, <*>, <*> d, <*>:<*>"
    assert masked("1:2:3:4:5:6:7:8:9:1:2:3") == "<*>:<*>:<*>:<*>:<*>"
    assert masked("a 10.0.0.1:80 b ::ffff:1.2.3.4 c") == "a <*> b <*>.2.3.4 c"
    assert masked("at Mon  Jul  4   02:38:22   2005 end") == "at <*> end"
