"""Template miner: masking, Drain-style generalisation, stable ids, LRU bound, persistence."""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.processors.logstruct.templates import (
    BUILTIN_MASKS,
    DEFAULT_MASKS,
    PARAM,
    CustomMask,
    TemplateMiner,
    TemplateSettings,
    compile_masks,
    mask_regex,
)


def miner(**kw: object) -> TemplateMiner:
    return TemplateMiner(TemplateSettings(enabled=True, **kw))


def masked(text: str, *masks: str) -> str:
    m = miner(masks=list(masks) if masks else list(DEFAULT_MASKS))
    return m._mask(text)


LINES = [
    "Received block blk_-1608999687919862906 of size 91178 from /10.250.10.6",
    "Received block blk_7503483334202473044 of size 233217 from /10.250.14.224",
    "PacketResponder 1 for block blk_38865049064139660 terminating",
    "PacketResponder 0 for block blk_-6952295868487656571 terminating",
    "Verification succeeded for blk_-4980916519894289629",
    "user alice logged in from web",
    "user bob logged in from web",
    "user carol logged in from vpn",
    "Received block blk_1 of size 3 from /10.0.0.1",
]


# -- settings --------------------------------------------------------------------

def test_settings_defaults_and_validation() -> None:
    s = TemplateSettings()
    assert s.enabled is False
    assert s.masks == list(DEFAULT_MASKS)
    assert s.max_templates > 0
    assert s.persist_path is None
    assert 0 < s.similarity_threshold <= 1
    assert s.depth >= 3
    s = TemplateSettings.model_validate({
        "enabled": True, "persist_interval": "1m30s", "masks": [
            "ipv4", {"name": "ticket", "regex": r"TCK-\d+", "replacement": "<ticket>"}]})
    assert s.persist_interval == 90.0
    assert s.masks[0] == "ipv4"
    assert isinstance(s.masks[1], CustomMask)
    with pytest.raises(ValidationError, match="extra"):
        TemplateSettings.model_validate({"enabled": True, "bogus": 1})
    with pytest.raises(ValidationError):
        TemplateSettings.model_validate({"masks": ["no_such_mask"]})
    with pytest.raises(ValidationError, match="invalid regex"):
        TemplateSettings.model_validate({"masks": [{"name": "bad", "regex": "("}]})
    with pytest.raises(ValidationError, match="listed twice"):
        TemplateSettings.model_validate({"masks": ["ipv4", "ipv4"]})
    with pytest.raises(ValidationError):
        TemplateSettings.model_validate({"max_templates": 0})
    # the JSON schema is printable (otelpipe schema)
    assert "max_templates" in json.dumps(TemplateSettings.model_json_schema())


# -- masks -------------------------------------------------------------------------

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

    from pipeline.processors.logstruct.templates import BuiltinMaskName
    assert set(get_args(BuiltinMaskName)) == set(BUILTIN_MASKS)
    for name in BUILTIN_MASKS:
        re.compile(mask_regex(name)[0])


# -- mining ------------------------------------------------------------------------

def test_generalises_differing_tokens_to_param() -> None:
    m = miner()
    t1 = m.match("user alice logged in from web")
    assert t1[1] == "user alice logged in from web"
    t2 = m.match("user bob logged in from web")
    assert t2 == (t1[0], "user <*> logged in from web")
    t3 = m.match("user carol logged in from vpn")
    assert t3 == (t1[0], "user <*> logged in from <*>")
    # a different shape is a different template
    t4 = m.match("disk full on web")
    assert t4[0] != t1[0]
    assert len(m) == 2


def test_id_stable_while_template_generalises() -> None:
    m = miner()
    first_id, _ = m.match("Starting job alpha on node north")
    seen = {m.match(f"Starting job {j} on node {n}")[0]
            for j, n in [("beta", "north"), ("gamma", "south"), ("delta", "east")]}
    assert seen == {first_id}
    assert m.match("Starting job alpha on node north") == (
        first_id, "Starting job <*> on node <*>")


def test_deterministic() -> None:
    rng = random.Random(7)
    lines = [rng.choice(LINES) for _ in range(500)]
    a, b = miner(), miner(cache_size=0)
    assert [a.match(x) for x in lines] == [b.match(x) for x in lines]
    # ids depend on content, not on process state: a fresh miner agrees
    assert miner().match(LINES[0]) == miner().match(LINES[0])


def test_variables_spanning_tokens_are_merged() -> None:
    m = miner()
    a = m.match("host:443 close, 2034 bytes (1.98 KB) sent, lifetime 00:39")
    b = m.match("host:80 close, 785 bytes sent, lifetime <1 sec")
    assert a[0] == b[0]
    assert m.match("the end")[1] == "the end"
    m = miner(merge_adjacent_variables=False)
    assert m.match("a 1 2 b")[1] == "a <*> <*> b"


def test_tokens_with_digits_do_not_split_the_tree() -> None:
    m = miner()
    a = m.match("attempt_01 transitioned from NEW to RUNNING")
    b = m.match("attempt_02 transitioned from NEW to RUNNING")
    assert a[0] == b[0]
    assert b[1] == "<*> transitioned from NEW to RUNNING"


def test_similarity_threshold() -> None:
    strict = miner(similarity_threshold=1.0)
    assert strict.match("a b c d")[0] != strict.match("a b c e")[0]
    loose = miner(similarity_threshold=0.5)
    assert loose.match("a b c d")[0] == loose.match("a b c e")[0]


def test_max_children_overflow_goes_to_param_branch() -> None:
    m = miner(max_children=3, depth=4)
    ids = {m.match(f"{w} is a word")[0] for w in ["alpha", "beta", "gamma", "delta", "eps"]}
    # the first two get their own branch, the rest share the <*> branch and merge
    assert len(ids) == 3
    assert len(m._root[4].children) == 3


def test_empty_and_whitespace_messages() -> None:
    m = miner()
    assert m.match("") == m.match("   ")
    assert m.match("")[1] == ""


def test_cache_does_not_change_results_and_is_bounded() -> None:
    m = miner(cache_size=8)
    for i in range(100):
        m.match(f"request {i} served in {i % 7} ms")
    assert len(m._cache) <= 8
    assert len(m._cache_old) <= 8
    assert len(m) == 1
    # huge lines are matched but not cached
    big = "payload " + "x" * 100_000
    assert m.match(big) == m.match(big)
    assert big not in m._cache
    assert big not in m._cache_old


# -- bounded memory --------------------------------------------------------------------

def test_lru_eviction_respects_max_templates() -> None:
    m = miner(max_templates=3)
    ids = [m.match(f"event{c} happened here now")[0] for c in "abcd"]
    assert len(m) == 3
    assert ids[0] not in {t[0] for t in m.templates()}
    # using a template keeps it: touch b, add e → c (least recently used) goes
    m.match("eventb happened here now")
    m.match("evente happened here now")
    held = {t[1] for t in m.templates()}
    assert held == {"eventb happened here now", "eventd happened here now",
                    "evente happened here now"}
    assert m.evicted == 2


def test_memory_bounded_under_template_churn() -> None:
    m = miner(max_templates=50, cache_size=100)
    words = [f"w{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676 % 26)}"
             for i in range(5000)]
    for i, w in enumerate(words):
        n = 2 + i % 6
        m.match(" ".join([w, *(["x"] * n), w]))

    def count(node: Any) -> int:
        return 1 + sum(count(c) for c in node.children.values())
    nodes = sum(count(n) for n in m._root.values())
    clusters = sum(1 for _ in m.templates())
    assert len(m) == clusters == 50
    # tree nodes are pruned with their templates: a few per template, not per message
    assert nodes <= 50 * (m.settings.depth - 1) + 10
    assert len(m._cache) + len(m._cache_old) <= 200
    # an evicted template's cache entry is not served
    assert all(c.alive for c in m._cache.values() if c.id in m._lru)


def test_evicted_template_comes_back_with_same_id() -> None:
    m = miner(max_templates=1)
    a = m.match("alpha beta gamma")
    m.match("one two three four")
    assert m.match("alpha beta gamma") == a


# -- persistence ---------------------------------------------------------------------

def test_persistence_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state" / "templates.json"
    m = miner(persist_path=str(path))
    before = {line: m.match(line) for line in LINES}
    m.close()
    assert path.exists()
    assert not [p for p in path.parent.iterdir() if p.name != path.name]  # no temp files left

    again = miner(persist_path=str(path))
    assert len(again) == len(m)
    assert sorted(again.templates()) == sorted(m.templates())
    for line, expected in before.items():
        assert again.match(line)[0] == expected[0]
    # a new variant still generalises the persisted template, keeping its id
    tid, _ = again.match("user dave logged in from lan")
    assert tid == before["user alice logged in from web"][0]
    # load() replaces state with the file's (idempotent)
    assert again.load() == len(m)


def test_persisted_order_keeps_lru(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    m = miner(persist_path=str(path), max_templates=3)
    for c in "abc":
        m.match(f"event{c} happened")
    m.match("eventa happened")
    m.save()
    again = miner(persist_path=str(path), max_templates=3)
    again.match("eventd happened")  # evicts the least recently used: b
    assert {t[1] for t in again.templates()} == {"eventa happened", "eventc happened",
                                                 "eventd happened"}
    smaller = miner(persist_path=str(path), max_templates=2)
    assert len(smaller) == 2


@pytest.mark.parametrize("content", [
    b"", b"{not json", b"[]", b'{"version": 99, "templates": []}',
    b'{"version": 1, "templates": [{"id": 1, "tokens": "x"}]}',
    b'{"version": 1}', b"\xff\xfe\x00garbage",
])
def test_corrupt_store_starts_empty_with_warning(tmp_path: Path, content: bytes,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING):
        m = miner(persist_path=str(path))
    assert len(m) == 0
    assert any("corrupt" in r.message or "unreadable" in r.message for r in caplog.records)
    assert m.match("still works 1")[1] == "still works <*>"
    m.close()
    assert len(miner(persist_path=str(path))) == 1


def test_missing_store_is_silent(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        m = miner(persist_path=str(tmp_path / "none" / "t.json"))
    assert len(m) == 0
    assert not caplog.records


def test_unreadable_store_path_is_a_warning(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        m = miner(persist_path=str(tmp_path))  # a directory
    assert len(m) == 0
    assert caplog.records


def test_periodic_save_uses_interval(tmp_path: Path) -> None:
    now = [1000.0]
    path = tmp_path / "t.json"
    m = TemplateMiner(TemplateSettings(persist_path=str(path), persist_interval="10s"),
                      clock=lambda: now[0])
    m.match("hello world")
    assert not m.maybe_save()
    assert not path.exists()
    now[0] += 11
    assert m.maybe_save()
    assert path.exists()
    assert not m.maybe_save()  # nothing changed
    m.match("hello there")  # generalises: dirty again
    now[0] += 11
    assert m.maybe_save()
    assert json.loads(path.read_text())["templates"][0]["tokens"] == ["hello", "<*>"]


def test_save_failure_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.json"
    m = miner(persist_path=str(path))
    m.match("first template")
    m.save()
    good = path.read_bytes()
    m.match("second different one here")

    def boom(*a: object, **k: object) -> None:
        raise OSError("disk full")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        m.save()
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_close_without_persistence_is_a_noop() -> None:
    m = miner()
    m.match("x y z")
    m.close()
    m.save()
    assert m.load() == 0
