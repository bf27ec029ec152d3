"""Exposition text -> OTLP, exact values: counters, gauges, histograms, summaries,
start times and resets, _created, exemplars, staleness, limits, bad input."""

from __future__ import annotations

import gc
import time
from typing import Any

import pytest

from pipeline.receivers.prometheus.target import (
    CHUNK_LINES,
    CHUNK_NEW_SERIES,
    ParseError,
    SampleLimitExceeded,
)
from tests.promscrape import by_name, one, scrape, state

T1 = 1_700_000_000_000_000_000
T2 = T1 + 15_000_000_000
T3 = T2 + 15_000_000_000

TEXT = """\
# HELP http_requests_total Requests served.
# TYPE http_requests_total counter
http_requests_total{method="GET",code="200"} 1027
http_requests_total{method="POST",code="500"} 3
# HELP db_pool_checked_out Connections in use.
# TYPE db_pool_checked_out gauge
db_pool_checked_out{pool="main"} 9
# TYPE request_duration_seconds histogram
request_duration_seconds_bucket{route="/api",le="0.1"} 2
request_duration_seconds_bucket{route="/api",le="0.5"} 5
request_duration_seconds_bucket{route="/api",le="+Inf"} 6
request_duration_seconds_sum{route="/api"} 3.5
request_duration_seconds_count{route="/api"} 6
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.2
rpc_seconds{quantile="0.99"} 1.5
rpc_seconds_sum 40
rpc_seconds_count 100
untyped_thing 7
"""


def test_text_format_conversion() -> None:
    st = state(labels={"job": "app", "instance": "h:1", "env": "prod"})
    res, pts = scrape(st, TEXT, T1)
    assert (res.samples, res.samples_post, res.added) == (13, 13, 6)
    get = one(pts, "http_requests_total", method="GET")
    assert (get.kind, get.monotonic, get.value) == ("sum", True, 1027.0)
    assert get.attrs == {"method": "GET", "code": "200", "env": "prod"}  # no job/instance
    assert get.description == "Requests served."
    assert (get.start, get.time) == (T1, T1)  # first sight: start = point time
    pool = one(pts, "db_pool_checked_out")
    assert (pool.kind, pool.value, pool.attrs) == ("gauge", 9.0, {"pool": "main", "env": "prod"})
    h = one(pts, "request_duration_seconds")
    assert h.kind == "histogram"
    assert (h.count, h.sum, h.bounds, h.buckets) == (6, 3.5, [0.1, 0.5], [2, 3, 1])
    assert h.attrs == {"route": "/api", "env": "prod"}
    s = one(pts, "rpc_seconds")
    assert (s.kind, s.count, s.sum, s.quantiles) == ("summary", 100, 40.0,
                                                      [(0.5, 0.2), (0.99, 1.5)])
    assert one(pts, "untyped_thing").kind == "gauge"
    assert len(pts) == 6


def test_start_time_kept_then_reset_detected() -> None:
    st = state()
    scrape(st, TEXT, T1)
    _, pts = scrape(st, TEXT.replace("} 1027", "} 1100").replace("} 6\n", "} 7\n"), T2)
    get = one(pts, "http_requests_total", method="GET")
    assert (get.start, get.time, get.value) == (T1, T2, 1100.0)
    # counter reset (value went down): a new start time, the point's own time
    _, pts = scrape(st, TEXT.replace("} 1027", "} 5"), T3)
    get = one(pts, "http_requests_total", method="GET")
    assert (get.start, get.time, get.value) == (T3, T3, 5.0)
    post = one(pts, "http_requests_total", method="POST")
    assert post.start == T1  # the other series did not reset
    # histogram reset: count went from 7 to 6
    assert one(pts, "request_duration_seconds").start == T3


def test_staleness_for_series_that_disappear_and_failed_scrapes() -> None:
    st = state()
    scrape(st, TEXT, T1)
    body = "\n".join(line for line in TEXT.splitlines() if "POST" not in line
                     and not line.startswith("rpc_seconds")) + "\n"
    res, pts = scrape(st, body, T2)
    stale = [p for p in pts if p.stale]
    assert sorted(p.name for p in stale) == ["http_requests_total", "rpc_seconds"]
    post = one(stale, "http_requests_total")
    assert post.attrs["method"] == "POST"
    assert post.time == T2
    assert post.start == T1
    assert res.points == len(pts)
    # the target is down: every series still live is marked stale, once
    res = st.fail(T3)
    from pipeline.receivers.prometheus.otlpmetrics import resource_metrics
    from tests.promscrape import points

    pts = points(resource_metrics([], res.payload))
    assert all(p.stale for p in pts)
    assert sorted(p.name for p in pts) == ["db_pool_checked_out", "http_requests_total",
                                           "request_duration_seconds", "untyped_thing"]
    assert st.fail(T3).points == 0


OM = """\
# HELP cache_hits Cache hits.
# TYPE cache_hits counter
cache_hits_total{cache="redis"} 90.0 # {trace_id="0123456789abcdef0123456789abcdef",\
span_id="0123456789abcdef",user="u1"} 1.0 1700000000.5
cache_hits_created{cache="redis"} 1.6999e+09
# TYPE latency_seconds histogram
# UNIT latency_seconds seconds
latency_seconds_bucket{le="0.1"} 1 # {trace_id="00000000000000000000000000000001"} 0.05
latency_seconds_bucket{le="+Inf"} 3
latency_seconds_count 3
latency_seconds_sum 2.5
latency_seconds_created 1.6998e+09
# EOF
"""


def test_openmetrics_created_and_exemplars() -> None:
    st = state()
    _, pts = scrape(st, OM, T1, om=True)
    hits = one(pts, "cache_hits_total")
    assert hits.kind == "sum"
    assert hits.value == 90.0
    assert hits.start == int(1.6999e9 * 1e9)  # from _created
    assert hits.description == "Cache hits."
    (ex,) = hits.exemplars
    assert ex.trace_id.hex() == "0123456789abcdef0123456789abcdef"
    assert ex.span_id.hex() == "0123456789abcdef"
    assert ex.as_double == 1.0
    assert ex.time_unix_nano == 1_700_000_000_500_000_000
    assert [(kv.key, kv.value.string_value) for kv in ex.filtered_attributes] == [("user", "u1")]
    lat = one(pts, "latency_seconds")
    assert lat.unit == "seconds"
    assert lat.start == int(1.6998e9 * 1e9)
    assert (lat.count, lat.buckets, lat.bounds) == (3, [1, 2], [0.1])
    assert lat.exemplars[0].trace_id[-1] == 1
    assert not by_name(pts, "cache_hits_created")


def test_honor_timestamps() -> None:
    body = "a 1 1700000000123\n"
    _, pts = scrape(state(), body, T1)
    assert pts[0].time == 1_700_000_000_123_000_000
    _, pts = scrape(state(honor_timestamps=False), body, T1)
    assert pts[0].time == T1


def test_label_conflicts_honor_labels() -> None:
    body = 'm{env="scraped",job="other"} 1\n'
    labels = {"job": "app", "instance": "h:1", "env": "target"}
    _, pts = scrape(state(labels=labels), body, T1)
    assert pts[0].attrs == {"exported_env": "scraped", "exported_job": "other", "env": "target"}
    _, pts = scrape(state(labels=labels, honor_labels=True), body, T1)
    assert pts[0].attrs == {"env": "scraped", "job": "other"}


def test_metric_relabel_configs_exact_series() -> None:
    rules: list[dict[str, Any]] = [
        {"source_labels": ["__name__"], "regex": "rpc_.*|untyped_thing", "action": "drop"},
        {"source_labels": ["code"], "regex": "(5)..", "target_label": "class",
         "replacement": "${1}xx"},
        {"regex": "(method)", "replacement": "http_$1", "action": "labelmap"},
        {"regex": "method|le_unused", "action": "labeldrop"},
        {"source_labels": ["__name__"], "regex": "db_.*", "target_label": "__name__",
         "replacement": "app_$0"},
    ]
    res, pts = scrape(state(rules=rules), TEXT, T1)
    assert res.samples == 13
    assert res.samples_post == 8
    got = sorted((p.name, tuple(sorted(p.attrs.items()))) for p in pts)
    assert got == [
        ("app_db_pool_checked_out", (("pool", "main"),)),
        ("http_requests_total", (("class", "5xx"), ("code", "500"), ("http_method", "POST"))),
        ("http_requests_total", (("code", "200"), ("http_method", "GET"))),
        ("request_duration_seconds", (("route", "/api"),)),
    ]


def test_keep_and_hashmod() -> None:
    rules: list[dict[str, Any]] = [
        {"source_labels": ["method"], "target_label": "shard", "modulus": 1000,
              "action": "hashmod"},
             {"source_labels": ["__name__"], "regex": "http_.*", "action": "keep"}]
    _, pts = scrape(state(rules=rules), TEXT, T1)
    # Prometheus' own relabel_test.go: md5-based hashmod of "baz" mod 1000 is 976
    assert {p.attrs["method"]: p.attrs["shard"] for p in pts} == {
        "GET": str(_hashmod("GET")), "POST": str(_hashmod("POST"))}
    st = state(rules=[{"source_labels": ["v"], "target_label": "d", "modulus": 1000,
                       "action": "hashmod"}])
    _, pts = scrape(st, 'm{v="baz"} 1\n', T1)
    assert pts[0].attrs["d"] == "976"


def _hashmod(v: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.md5(v.encode()).digest()[8:], "big") % 1000


def test_sample_limit() -> None:
    with pytest.raises(SampleLimitExceeded):
        scrape(state(sample_limit=5), TEXT, T1)
    # dropped samples do not count against the limit (post metric relabelling)
    st = state(sample_limit=5, rules=[{"source_labels": ["__name__"], "regex": "request_.*|rpc_.*",
                                       "action": "drop"}])
    res, _ = scrape(st, TEXT, T1)
    assert res.samples_post == 4


@pytest.mark.parametrize(("body", "message"), [
    ('m{a="b" 1\n', "line 1"),
    ("m{a=b} 1\n", "line 1"),
    ("m one\n", "invalid value"),
    ('m{a="x",a="y"} 1\n', "twice"),
    ("# TYPE m bogus\nm 1\n", "unknown metric type"),
    ("1m 2\n", "invalid metric name"),
    ("ok 1\nm 1 2 3\n", "line 2"),
])
def test_bad_input_is_a_precise_error(body: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        scrape(state(), body, T1)


def test_escapes_and_quoted_names() -> None:
    body = 'm{path="a\\"b\\\\c\\nd",x="}"} 1\n{"my.metric", "some.label"="v"} 2\n'
    _, pts = scrape(state(), body, T1)
    assert one(pts, "m").attrs == {"path": 'a"b\\c\nd', "x": "}"}
    assert one(pts, "my.metric").attrs == {"some.label": "v"}


def test_type_change_starts_over() -> None:
    st = state()
    scrape(st, "# TYPE m counter\nm 5\n", T1)
    _, pts = scrape(st, "# TYPE m gauge\nm 3\n", T2)
    assert [(p.kind, p.value) for p in pts] == [("gauge", 3.0)]


def test_series_state_bounded() -> None:
    st = state(max_series=50)
    for i in range(5):  # churning series: old ones are forgotten, not an error
        body = "".join(f'm{{i="{i}-{k}"}} 1\n' for k in range(40))
        scrape(st, body, T1 + i)
    assert len(st.series) <= 80
    with pytest.raises(SampleLimitExceeded):
        scrape(st, "".join(f'n{{i="{k}"}} 1\n' for k in range(60)), T3)


def big_body(n: int) -> str:
    lines = []
    for f in range(n // 100):
        lines.append(f"# TYPE fam_{f}_total counter")
        lines += [f'fam_{f}_total{{method="GET",path="/api/v{i}"}} {i}' for i in range(100)]
    return "\n".join(lines) + "\n"


def test_100k_series_chunks_stay_under_100ms_each() -> None:
    """The receiver calls `feed` (CHUNK_LINES lines, or CHUNK_NEW_SERIES new series) and
    `encode` (CHUNK_LINES series) and yields to the loop between calls: each call, also
    on the first scrape where every series is new, must cost well under 100 ms of CPU.
    (The garbage collector is off while measuring, as in `tests.support.cpu_bounded`;
    what the series cost it is bounded below, by the objects it has to traverse.)"""
    body = big_body(100_000)
    lines = body.split("\n")
    st = state()
    worst = 0.0
    gc.collect()
    tracked = len(gc.get_objects())
    gc.disable()
    try:
        for scrape_no in range(2):
            st.begin(False)
            i = calls = 0
            while i < len(lines):
                t0 = time.thread_time()
                i = st.feed(lines, i, len(lines), T1)
                worst = max(worst, time.thread_time() - t0)
                calls += 1
            assert calls >= (100_000 // CHUNK_NEW_SERIES if scrape_no == 0
                             else len(lines) // CHUNK_LINES)
            for i in range(0, st.touched, CHUNK_LINES):
                t0 = time.thread_time()
                st.encode(i, i + CHUNK_LINES)
                worst = max(worst, time.thread_time() - t0)
            t0 = time.thread_time()
            res = st.finish(T1 + scrape_no)
            worst = max(worst, time.thread_time() - t0)
            assert res.samples == res.points == 100_000
    finally:
        gc.enable()
    del lines, body
    gc.collect()
    assert worst < 0.1, f"a call held the loop for {worst * 1000:.0f} ms of CPU"
    # what the collector traverses stays near one object per counter/gauge series
    assert len(gc.get_objects()) - tracked < 1.5 * 100_000
