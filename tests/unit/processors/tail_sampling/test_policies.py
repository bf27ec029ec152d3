"""Known trace sets with the exact decision of each policy type and combination."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pipeline.component import Signal
from pipeline.processors.tail_sampling import factory
from pipeline.processors.tail_sampling.config import TailSamplingConfig
from pipeline.processors.tail_sampling.policies import (
    fnv1a64,
    probabilistic_threshold,
)
from pipeline.processors.tail_sampling.processor import TailSamplingProcessor
from pipeline.telemetry.metrics import Telemetry
from tests.support import Sink, processor_settings
from tests.unit.processors.tail_sampling.spans import S, batch, request, sampled, tid


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def make(sink: Sink, policies: list[dict[str, Any]], telemetry: Telemetry | None = None,
         clock: Clock | None = None, **cfg: Any) -> TailSamplingProcessor:
    settings = processor_settings("tail_sampling", telemetry, next_consumer=sink,
                                  signal=Signal.TRACES)
    config = TailSamplingConfig.model_validate({"policies": policies, **cfg})
    return TailSamplingProcessor(settings, config, clock=clock or Clock())


async def decide(policies: list[dict[str, Any]], spans: list[S], **cfg: Any) -> set[int]:
    sink = Sink()
    proc = make(sink, policies, **cfg)
    await proc.consume(batch(spans))
    await proc.decide_due(float("inf"))
    return sampled(sink.batches)


def p(name: str, type_: str, **section: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": type_}
    if section:
        out[type_] = section
    return out


def test_factory_builds_the_processor() -> None:
    cfg = TailSamplingConfig.model_validate({"policies": [p("a", "always_sample")]})
    proc = factory.create(processor_settings("tail_sampling", next_consumer=Sink(),
                                             signal=Signal.TRACES), cfg)
    assert isinstance(proc, TailSamplingProcessor)
    assert cfg.decision_wait == 30.0
    assert cfg.num_traces == 50_000
    assert cfg.decision_cache.sampled_cache_size == 0


async def test_always_sample_keeps_every_trace_whole() -> None:
    spans = [S(1), S(1, "b"), S(2), S(3), S(3, "c")]
    sink = Sink()
    proc = make(sink, [p("all", "always_sample")])
    await proc.consume(batch(spans))
    await proc.decide_due(float("inf"))
    assert sink.items == 5
    names = sorted(sp.name for b in sink.batches for rs in b.message.resource_spans
                   for ss in rs.scope_spans for sp in ss.spans)
    assert names == ["b", "c", "op", "op", "op"]
    rs = sink.batches[0].message.resource_spans[0]
    assert rs.resource.attributes[0].value.string_value == "api"
    assert rs.scope_spans[0].scope.name == "scope"


async def test_latency_uses_the_whole_trace_duration() -> None:
    # Trace 1: two 10 ms spans 490 ms apart = 500 ms; trace 2: 499 ms; trace 3: 2000 ms.
    spans = [S(1, ms=10), S(1, start_ms=490, ms=10), S(2, ms=499), S(3, ms=2000)]
    # More than threshold_ms (v0.161: strictly), whole milliseconds.
    assert await decide([p("slow", "latency", threshold_ms=500)], spans) == {3}
    assert await decide([p("slow", "latency", threshold_ms=499)], spans) == {1, 3}
    # With an upper bound: (threshold_ms, upper_threshold_ms].
    assert await decide([p("mid", "latency", threshold_ms=499, upper_threshold_ms=1000)],
                        spans) == {1}


async def test_status_code() -> None:
    spans = [S(1, status="ERROR"), S(1), S(2, status="OK"), S(3)]
    assert await decide([p("e", "status_code", status_codes=["ERROR"])], spans) == {1}
    assert await decide([p("u", "status_code", status_codes=["OK", "UNSET"])],
                        spans) == {1, 2, 3}


async def test_string_attribute_exact_regex_invert_and_resource() -> None:
    spans = [S(1, attrs={"http.route": "/api/pay"}), S(2, attrs={"http.route": "/health"}),
             S(3), S(4, resource={"http.route": "/api/x"}), S(5, attrs={"http.route": 7})]
    assert await decide([p("s", "string_attribute", key="http.route",
                           values=["/api/pay", "/health"])], spans) == {1, 2}
    assert await decide([p("s", "string_attribute", key="http.route", values=["^/api/"],
                           enabled_regex_matching=True)], spans) == {1, 4}
    # invert: every trace without a match (3 has no key; 5 is not a string) is sampled.
    assert await decide([p("s", "string_attribute", key="http.route", values=["^/api/"],
                           enabled_regex_matching=True, invert_match=True)],
                        spans) == {2, 3, 5}


async def test_numeric_attribute() -> None:
    spans = [S(1, attrs={"code": 500}), S(2, attrs={"code": 404}), S(3, attrs={"code": "503"}),
             S(4, resource={"code": 599})]
    assert await decide([p("n", "numeric_attribute", key="code", min_value=500,
                           max_value=599)], spans) == {1, 4}
    assert await decide([p("n", "numeric_attribute", key="code", min_value=500)],
                        spans) == {1, 4}
    assert await decide([p("n", "numeric_attribute", key="code", min_value=500,
                           invert_match=True)], spans) == {2, 3}
    # As Go's pdata reads it, a value of another type is 0.
    assert await decide([p("n", "numeric_attribute", key="code", max_value=0)], spans) == {3}


async def test_boolean_attribute() -> None:
    spans = [S(1, attrs={"vip": True}), S(2, attrs={"vip": False}), S(3)]
    assert await decide([p("b", "boolean_attribute", key="vip", value=True)], spans) == {1}
    assert await decide([p("b", "boolean_attribute", key="vip", value=False)], spans) == {2}


async def test_trace_state() -> None:
    spans = [S(1, trace_state="vendor=a,key3=value1"), S(2, trace_state="key3=other"), S(3)]
    assert await decide([p("t", "trace_state", key="key3", values=["value1", "value2"])],
                        spans) == {1}


async def test_span_count() -> None:
    spans = [S(1), S(2), S(2), S(3), S(3), S(3), S(3)]
    assert await decide([p("c", "span_count", min_spans=2, max_spans=3)], spans) == {2}
    assert await decide([p("c", "span_count", min_spans=2)], spans) == {2, 3}


def test_probabilistic_hash_is_the_collectors() -> None:
    # FNV-1a 64 test vectors, then the Collector's salt + trace id.
    assert fnv1a64(b"") == 0xCBF29CE484222325
    assert fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a64(b"foobar") == 0x85944171F73967E8
    assert probabilistic_threshold(100) == 2**64 - 1
    assert probabilistic_threshold(0) == 0
    # (2^64 - 1) / 2 = 2^63 - 0.5 holds in 64 bits exactly; Uint64() truncates.
    assert probabilistic_threshold(50) == 2**63 - 1


async def test_probabilistic_share_and_agreement() -> None:
    # Random trace ids, as SDKs make them (FNV-1a spreads sequential ids poorly).
    rnd = random.Random(7)
    spans = [S(rnd.getrandbits(128)) for _ in range(2000)]
    ten = await decide([p("p", "probabilistic", sampling_percentage=10)], spans)
    again = await decide([p("p", "probabilistic", sampling_percentage=10)], spans)
    assert ten == again  # the same trace ids, wherever decided
    assert 150 <= len(ten) <= 250
    salted = await decide([p("p", "probabilistic", sampling_percentage=10, hash_salt="x")],
                          spans)
    assert salted != ten
    assert await decide([p("p", "probabilistic", sampling_percentage=100)], spans[:50]) == \
        {s.trace for s in spans[:50]}
    assert await decide([p("p", "probabilistic")], spans[:50]) == set()


async def test_rate_limiting_is_a_token_bucket_of_spans() -> None:
    # 3 traces of 4 spans decided at the same instant; the bucket starts full, twice
    # spans_per_second deep unless burst_capacity says otherwise.
    spans = [S(t, str(i)) for t in (1, 2, 3) for i in range(4)]
    assert await decide([p("r", "rate_limiting", spans_per_second=5)], spans) == {1, 2}
    assert await decide([p("r", "rate_limiting", spans_per_second=10)], spans) == {1, 2, 3}
    assert await decide([p("r", "rate_limiting", spans_per_second=100, burst_capacity=4)],
                        spans) == {1}


async def test_and_not_drop() -> None:
    spans = [S(1, status="ERROR", attrs={"env": "prod"}), S(2, status="ERROR"),
             S(3, attrs={"env": "prod"}), S(4, attrs={"http.route": "/health"})]
    prod_errors = p("pe", "and", and_sub_policy=[
        p("prod", "string_attribute", key="env", values=["prod"]),
        p("err", "status_code", status_codes=["ERROR"])])
    assert await decide([prod_errors], spans) == {1}
    not_health = {"name": "nh", "type": "not", "not": {"not_sub_policy": p(
        "h", "string_attribute", key="http.route", values=["/health"])}}
    assert await decide([not_health], spans) == {1, 2, 3}
    # and / drop sub-policies may be a not (Collector v0.161).
    errors_not_prod = p("enp", "and", and_sub_policy=[
        p("err", "status_code", status_codes=["ERROR"]),
        {"name": "np", "type": "not", "not": {"not_sub_policy": p(
            "prod", "string_attribute", key="env", values=["prod"])}}])
    assert await decide([errors_not_prod], spans) == {2}
    drop_errors = p("d", "drop", drop_sub_policy=[p("err", "status_code",
                                                    status_codes=["ERROR"])])
    assert await decide([p("all", "always_sample"), drop_errors], spans) == {3, 4}


async def test_inverted_not_sampled_wins_over_sampled() -> None:
    spans = [S(1, status="ERROR", attrs={"team": "a"}), S(2, status="ERROR"), S(3)]
    pols = [p("err", "status_code", status_codes=["ERROR"]),
            p("not-a", "string_attribute", key="team", values=["a"], invert_match=True)]
    # trace 1: Sampled + InvertNotSampled -> not sampled; 2: Sampled + InvertSampled;
    # 3: NotSampled + InvertSampled -> not sampled.
    assert await decide(pols, spans) == {2}
    # sample_on_first_match stops at the first Sampled: trace 1 is kept ...
    assert await decide(pols, spans, sample_on_first_match=True) == {1, 2}
    # ... unless an inverted not-sampled came before it.
    assert await decide(pols[::-1], spans, sample_on_first_match=True) == {2}


async def test_composite_rate_allocation() -> None:
    # 6 error traces and 6 slow ones of 10 spans; 100 spans/s: errors 50%, slow 25%.
    spans = [S(t, str(i), status="ERROR") for t in range(1, 7) for i in range(10)] + \
            [S(t, str(i), ms=900) for t in range(11, 17) for i in range(10)]
    comp = p("c", "composite", max_total_spans_per_second=100,
             policy_order=["errors", "slow", "rest"],
             composite_sub_policy=[p("errors", "status_code", status_codes=["ERROR"]),
                                   p("slow", "latency", threshold_ms=500),
                                   p("rest", "always_sample")],
             rate_allocation=[{"policy": "errors", "percent": 50},
                              {"policy": "slow", "percent": 25}])
    assert await decide([comp], spans) == {1, 2, 3, 4, 5, 11, 12}


SLOS = [{"name": "api-availability", "service": "api", "objective": 99.9,
         "sli": {"type": "availability", "match": {"service.name": "api"}}},
        {"name": "api-latency", "service": "api", "objective": 95,
         "sli": {"type": "latency", "threshold": "200ms",
                 "match": {"service.name": "api", "span.kind": "SPAN_KIND_SERVER"}}},
        {"name": "probe", "service": "api", "objective": 99,
         "sli": {"type": "availability", "source": "httpcheck"}}]


async def test_slo_policy_keeps_traces_with_bad_events() -> None:
    spans = [S(1, status="ERROR"),                        # availability: bad
             S(2, ms=250),                                 # latency: bad (server)
             S(3, ms=250, kind="client"),                  # not a latency event
             S(4, ms=150), S(5, status="ERROR", service="web"),  # good / other service
             S(6), S(6, ms=300, attrs={"http.response.status_code": 503}, kind="client")]
    both = await decide([p("slo", "slo", slos=SLOS)], spans)
    assert both == {1, 2}
    latency = await decide([p("slo", "slo", slos=SLOS, names=["api-latency"])], spans)
    assert latency == {2}
    avail = await decide([p("slo", "slo", slos=SLOS, names=["api-availability"],
                            http_5xx=True)], spans)
    assert avail == {1, 6}


def test_slo_policy_errors() -> None:
    with pytest.raises(ValueError, match="unknown SLO"):
        TailSamplingConfig.model_validate({"policies": [p("s", "slo", slos=SLOS,
                                                            names=["nope"])]})
    with pytest.raises(ValueError, match=r"counts httpcheck\.success, not spans"):
        make(Sink(), [p("s", "slo", slos=SLOS, names=["probe"])])


async def test_policy_decisions_are_counted() -> None:
    tel = Telemetry()
    sink = Sink()
    proc = make(sink, [p("err", "status_code", status_codes=["ERROR"]),
                       p("slow", "latency", threshold_ms=100)], tel)
    await proc.consume(batch([S(1, status="ERROR"), S(2, ms=200), S(3)]))
    await proc.decide_due(float("inf"))

    def val(name: str, **labels: str) -> float | None:
        return tel.registry.get_sample_value(
            name, {"processor": "tail_sampling", "pipeline": "traces", **labels})

    d = "otelpipe_processor_tail_sampling_policy_decisions_total"
    assert val(d, policy="err", sampled="true") == 1
    assert val(d, policy="err", sampled="false") == 2
    assert val(d, policy="slow", sampled="true") == 1
    assert val("otelpipe_processor_tail_sampling_traces_total", sampled="true") == 2
    assert val("otelpipe_processor_tail_sampling_traces_total", sampled="false") == 1
    status = proc.sampling_status()
    assert status["traces_sampled"] == 2
    assert status["policies"][0] == {"name": "err", "sampled": 1, "not_sampled": 2}
    _ = tid


async def test_bytes_limiting_counts_encoded_span_bytes() -> None:
    spans = [S(t, str(i), attrs={"pad": "x" * 100}) for t in (1, 2, 3) for i in range(2)]
    one = sum(sp.ByteSize() for sp in request(spans[:2]).resource_spans[0]
              .scope_spans[0].spans)
    # Room for two traces in the burst, not three.
    assert await decide([p("b", "bytes_limiting", bytes_per_second=1,
                           burst_capacity=2 * one)], spans) == {1, 2}
    assert await decide([p("b", "bytes_limiting", bytes_per_second=3 * one)], spans) == \
        {1, 2, 3}


def test_decisions_policy_by_policy_are_trace_by_trace_ones() -> None:
    """`decide_chunk` (each policy over the whole chunk, the stateless ones in one pass)
    decides and counts exactly as `decide` trace by trace, stateful policies included."""
    import random

    from pipeline.processors.tail_sampling.facts import TraceData

    policies = [
        p("slow", "latency", threshold_ms=1500), p("band", "latency", threshold_ms=10,
                                                   upper_threshold_ms=900),
        p("zero", "latency", threshold_ms=0),
        p("err", "status_code", status_codes=["ERROR", "OK"]),
        p("pct", "probabilistic", sampling_percentage=37.5, hash_salt="s"),
        p("cart", "string_attribute", key="http.route", values=["/api/cart"]),
        p("notcart", "string_attribute", key="http.route", values=["/x"], invert_match=True),
        p("rate", "rate_limiting", spans_per_second=40),
        p("few", "span_count", min_spans=2, max_spans=5),
    ]
    rnd = random.Random(5)
    for round_ in range(30):
        chosen = rnd.sample(policies, rnd.randint(1, len(policies)))
        a, b = make(Sink(), chosen), make(Sink(), chosen)
        traces = []
        for _ in range(rnd.randint(0, 200)):
            t = TraceData(rnd.randbytes(16), 0.0)
            t.spans = [b""] * rnd.randint(0, 8)
            if t.spans:
                t.start = rnd.getrandbits(40)
                t.end = t.start + rnd.choice([-1, 1, -1_000_000, 999_999, 1_000_000,
                                              10_999_999, 1_500_999_999, 1_501_000_000,
                                              rnd.getrandbits(35)])
            t.status = rnd.randrange(8)
            t.facts = rnd.getrandbits(len(chosen))
            traces.append(t)
        ca, cb = a.m.policy_counts(), b.m.policy_counts()
        got = a.decide_chunk(traces, 1000.0, ca)
        want = [b.decide(t, 1000.0, cb) for t in traces]
        assert got == want, round_
        assert ca == cb, round_
