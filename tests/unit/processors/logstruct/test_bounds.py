"""Bounded work per record (issue 11, DESIGN.md "Robustness rules"): whatever a line holds,
the processor is done with it within 100 ms, its work grows linearly with its length, the
template store stays within its bytes, and the records around a hostile one are intact."""

from __future__ import annotations

import asyncio
import gc
import random
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from pipeline.pdata.logrecords import LogGroup, encode_groups
from pipeline.processors.logstruct.processor import TOO_LONG, clip_words
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink
from tests.unit.processors.logstruct.bounds import (
    BOUND_S,
    CONFIGS,
    SHAPES,
    assert_linear,
)
from tests.unit.processors.logstruct.helpers import Mode, batch_of, make, records, run

ACCESS = ('10.0.0.1 - - [01/Mar/2024:12:00:00 +0000] "GET /a?b=1 HTTP/1.1" 200 5 "-" '
          '"curl/8"')
JSON = '{"level":"warn","msg":"disk 91% full","ts":"2024-03-01T12:00:00Z"}'
WINDOW = 16 * 1024


def _consume_s(mode: Mode, cfg: dict[str, Any], line: str, reps: int = 3,
               clock: Callable[[], float] = time.process_time,
               ) -> tuple[float, list[dict[str, Any]]]:
    """Seconds `consume` takes for a batch of one record holding `line` (best of `reps`,
    each with a fresh processor and batch), and the record it delivered."""
    async def once() -> tuple[float, list[dict[str, Any]]]:
        sink = Sink()
        proc = make(cfg, sink=sink)
        batch = batch_of(mode, [line])
        t0 = clock()
        await proc.consume(batch)
        took = clock() - t0
        (out,) = [records(b) for b in sink.batches]
        return took, out

    runs = [asyncio.run(once()) for _ in range(reps)]
    return min(t for t, _ in runs), runs[-1][1]


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
def test_hostile_40kb_line_within_bound_and_intact(cfg_name: str, shape: str, mode: Mode,
                                                   ) -> None:
    cfg = CONFIGS[cfg_name]
    line = SHAPES[shape](40_000)
    took, (rec,) = _consume_s(mode, cfg, line)
    assert took < BOUND_S, f"{cfg_name}/{shape}: {took * 1e3:.1f} ms"
    assert rec["body"] == line  # passed through, not parsed
    attrs = dict(rec["attributes"])
    if cfg.get("parsers") or cfg.get("auto"):
        assert attrs.pop("log.parse_skipped") == TOO_LONG
    if cfg.get("templates"):
        assert attrs.pop("log.template").endswith("<*>")
        attrs.pop("log.template_id")
    assert attrs == {}


@pytest.mark.parametrize("shape", ["a.", "1:", "a", "spaces", "words"])
@pytest.mark.parametrize("cfg_name", ["auto_templates", "grok_top", "regex", "json"])
def test_one_mib_line_within_bound(cfg_name: str, shape: str, mode: Mode) -> None:
    line = SHAPES[shape](1 << 20)
    took, (rec,) = _consume_s(mode, CONFIGS[cfg_name], line)
    assert took < BOUND_S, f"{cfg_name}/{shape}: {took * 1e3:.1f} ms"
    assert rec["body"] == line


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
def test_parsers_linear_without_the_window(cfg_name: str, shape: str) -> None:
    """The algorithmic bound under the window: with no window at all, every parser and the
    miner take time linear in the line (10 KB vs 40 KB), so the window only caps a
    constant factor."""
    cfg = {**CONFIGS[cfg_name], "max_parse_bytes": 0}

    def timed(n: int) -> float:
        return _consume_s("otlp", cfg, SHAPES[shape](n), 5, time.process_time)[0]

    assert_linear(timed, what=f"{cfg_name}/{shape}")


def test_the_issue_lines() -> None:
    """The two lines of issue 11, through the configs that froze: well within the bound
    even without the window (anchored grok; linear masking in the miner)."""
    for cfg in ({"parsers": [{"type": "grok", "pattern": "%{COMBINEDAPACHELOG}"}]},
                {"templates": {"enabled": True}, "auto": True}):
        for line in ("a." * 20000 + "!", "1:" * 20000):
            took, _ = _consume_s("otlp", {**cfg, "max_parse_bytes": 0}, line)
            assert took < BOUND_S


# -- the parse window -----------------------------------------------------------------

def test_window_edges_in_bytes(mode: Mode) -> None:
    cfg = {"parsers": [{"type": "regex", "pattern": r"(?P<message>x.*)"}],
               "max_parse_bytes": 100}
    at, over = "x" * 100, "x" * 101
    wide = "x" + "é" * 50  # 51 characters, 101 UTF-8 bytes
    got = run(mode, cfg, [at, over, wide, "x" + "é" * 49])
    assert got[0]["attributes"] == {}
    assert got[0]["body"] == at
    for rec, line in ((got[1], over), (got[2], wide)):
        assert rec["attributes"] == {"log.parse_skipped": "too_long"}
        assert rec["body"] == line
    assert got[3]["attributes"] == {}
    # 0 = no window
    (rec,) = run(mode, {**cfg, "max_parse_bytes": 0}, ["x" * 100_000])
    assert rec["attributes"] == {}


def test_window_default_and_config() -> None:
    from pipeline.processors.logstruct.config import LogStructConfig

    assert LogStructConfig.model_validate({"auto": True}).max_parse_bytes == WINDOW
    cfg = LogStructConfig.model_validate({"auto": True, "max_parse_bytes": "64KiB"})
    assert cfg.max_parse_bytes == 65536
    with pytest.raises(ValueError, match="max_parse_bytes"):
        LogStructConfig.model_validate({"auto": True, "max_parse_bytes": -1})


def test_too_long_counted_and_neighbours_intact(mode: Mode) -> None:
    tel = Telemetry()
    cfg = {"auto": True}
    hostile = "a." * 20000 + "!"
    alone = run(mode, cfg, [ACCESS, JSON])
    b = batch_of(mode, [ACCESS, hostile, JSON])
    make(cfg, telemetry=tel).process(b)
    got = records(b)
    assert [got[0], got[2]] == alone
    assert got[1] == {"time_unix_nano": 0, "severity_number": 0, "severity_text": "",
                      "body": hostile, "attributes": {"log.parse_skipped": "too_long"}}
    value = tel.registry.get_sample_value(
        "otelpipe_processor_logstruct_parse_errors_total",
        {"processor": "logstruct", "pipeline": "logs", "reason": "too_long"})
    assert value == 1.0


def test_source_attribute_over_the_window(mode: Mode) -> None:
    cfg = {"parsers": [{"type": "json", "source": 'attributes["raw"]'}],
           "max_parse_bytes": 1000}
    big = '{"msg": "' + "y" * 2000 + '"}'
    got = run(mode, cfg, ["a", "b"], attributes=[{"raw": JSON}, {"raw": big}])
    assert got[0]["severity_text"] == "warn"
    assert got[1]["attributes"] == {"raw": big, "log.parse_skipped": "too_long"}
    assert got[1]["body"] == "b"


def test_lines_path_skips_too_long_lines_like_built_records() -> None:
    """Groups that still hold lines (what filelog emits) get the same result as records."""
    lines = [ACCESS, "a." * 20000 + "!", JSON, "é" * 9000]
    for cfg in ({"parsers": [{"type": "access_log"}]}, {"auto": True},
                {"auto": True, "templates": {"enabled": True}}):
        raw = [x.encode() for x in lines]
        lazy = LogGroup.from_lines(raw, {}, 7)
        built = LogGroup.from_lines(raw, {}, 7)
        built.records  # noqa: B018 - builds the records: the general path
        make(cfg).process_records([lazy])
        make(cfg).process_records([built])
        assert encode_groups([lazy]) == encode_groups([built])
        recs = lazy.records
        assert recs[1].attributes["log.parse_skipped"] == "too_long"
        assert recs[3].attributes["log.parse_skipped"] == "too_long"  # 18,000 bytes
        assert recs[1].body == lines[1]


def test_template_of_a_too_long_line_comes_from_its_head(mode: Mode) -> None:
    cfg = {"auto": True, "templates": {"enabled": True}, "max_parse_bytes": 1000}
    head = " ".join(["request", "from", "host"] * 100)
    a, b = head + " tail one " + "z" * 5000, head + " other tail " + "q" * 5000
    got = run(mode, cfg, [a, b])
    assert got[0]["attributes"]["log.template_id"] == got[1]["attributes"]["log.template_id"]
    template = got[0]["attributes"]["log.template"]
    assert template.endswith(" <*>")
    assert len(template) <= 1000 + 4
    assert [r["body"] for r in got] == [a, b]


@pytest.mark.parametrize(("text", "limit", "expected"), [
    ("abc def ghi", 5, "abc <*>"),       # `def` cut: dropped
    ("abc def ghi", 7, "abc def <*>"),   # the window ends right after `def`
    ("abc def ghi", 8, "abc def <*>"),
    ("abcdefghijk", 5, "<*>"),           # one word longer than the window
    ("ab\tcd  ef", 3, "ab <*>"),
])
def test_clip_words(text: str, limit: int, expected: str) -> None:
    assert clip_words(text, limit) == expected


# -- memory -----------------------------------------------------------------------------

def _wide_lines(n: int, tokens: int = 20_000) -> Any:
    """`n` lines of `tokens` words each; the first few hundred words differ per line (a
    new template each), the rest are shared."""
    tail = " ".join(f"tok{i}" for i in range(tokens - 300))
    r = random.Random(3)
    for i in range(n):
        yield " ".join(f"{r.choice('abcdefgh')}{i}x{j}" for j in range(300)) + " " + tail


def _growth(feed: Any, lines: Any) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        feed(lines)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_memory_of_lines_of_20k_tokens_is_bounded() -> None:
    """Issue 11: +160 MB per 100 such lines (`max_templates` bounded the count, not the
    bytes). Now the store holds at most `max_template_bytes`: 300 lines (enough to fill
    and evict from a 512 KiB store) stay under it plus the miner's cache (at most a
    quarter more)."""
    limit = 512 * 1024
    proc = make({"auto": True, "templates": {"enabled": True, "max_template_bytes": limit}})

    def feed(lines: Any) -> None:
        for i, line in enumerate(lines):
            b = batch_of("otlp", [line])
            t0 = time.process_time()
            proc.process(b)
            took = time.process_time() - t0
            assert took < 2 * BOUND_S, f"line {i}: {took * 1e3:.1f} ms (tracemalloc on)"

    grown = _growth(feed, _wide_lines(300))
    miner = proc.miner
    assert miner is not None
    assert miner.held_bytes <= limit
    assert miner.evicted > 0
    assert grown < limit * 5 // 4 + 256 * 1024, f"grew {grown / 2**20:.1f} MiB"
