"""probabilistic_sampler: exact decisions on known trace ids.

The tracestate table is the Collector's own (contrib v0.161.0,
`Test_tracesamplerprocessor_TraceState` and `..._TraceStateErrors`); the hash_seed
figures are checked against the real Collector in
tests/integration/test_probabilistic_sampler_peer.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import ValidationError

from pipeline.component import Signal
from pipeline.errors import PermanentError
from pipeline.pdata.batch import Batch
from pipeline.pdata.sampling import (
    TraceState,
    adjusted_count,
    fnv1a32,
    hash_seed_randomness,
    seed_state32,
)
from pipeline.processors.probabilistic_sampler import (
    ProbabilisticSamplerConfig,
    ProbabilisticSamplerProcessor,
    factory,
)
from pipeline.telemetry.metrics import Telemetry
from tests.builders import kv
from tests.support import Sink, processor_settings

DEFAULT_TID = bytes.fromhex("fefefefefefefefefe80000000000000")  # rnd 0x80000000000000
IMPROBABLE_TID = bytes.fromhex("111111111111111111ffffffffffffff")
HASH_SEED = 4312


def make(sink: Sink, cfg: dict[str, Any], signal: Signal = Signal.TRACES,
         telemetry: Telemetry | None = None) -> ProbabilisticSamplerProcessor:
    settings = processor_settings("probabilistic_sampler", telemetry=telemetry,
                                  next_consumer=sink, signal=signal)
    proc = factory.create(settings, ProbabilisticSamplerConfig.model_validate(cfg))
    assert isinstance(proc, ProbabilisticSamplerProcessor)
    return proc


def one_span(tid: bytes, tracestate: str = "", attr: tuple[str, Any] | None = None) -> Batch:
    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add(
        trace_id=tid, span_id=bytes.fromhex("00000000fefefefe"), name="s",
        trace_state=tracestate)
    if attr is not None:
        sp.attributes.append(kv(*attr))
    return Batch(Signal.TRACES, raw=req.SerializeToString())


def spans_of(sink: Sink) -> list[Any]:
    return [sp for b in sink.batches for rs in b.message.resource_spans
            for ss in rs.scope_spans for sp in ss.spans]


# (name, tid, cfg, tracestate in, attribute, {mode: (sampled, adjusted count, tracestate)})
# A mode missing from the dict expects the "both" entry.
E, P = "equalizing", "proportional"
NOT = (False, 0.0, "")
TABLE: list[tuple[str, bytes | None, dict[str, Any], str, tuple[str, Any] | None,
                  dict[str, tuple[bool, float, str]]]] = [
    ("100 percent", None, {"sampling_percentage": 100}, "", None,
     {"both": (True, 1, "ot=th:0")}),
    ("50 percent sampled", None, {"sampling_percentage": 50}, "", None,
     {"both": (True, 2, "ot=th:8")}),
    ("25 percent sampled", bytes.fromhex("ddddddddddddddddddc0000000000000"),
     {"sampling_percentage": 25}, "", None, {"both": (True, 4, "ot=th:c")}),
    ("25 percent unsampled", bytes.fromhex("ddddddddddddddddddb0000000000000"),
     {"sampling_percentage": 25}, "", None, {"both": NOT}),
    ("1 percent sampled, 14 digits", None, {"sampling_percentage": 1, "sampling_precision": 14},
     "ot=rv:FD70A3D70A3D71", None,
     {"both": (True, 100, "ot=rv:FD70A3D70A3D71;th:fd70a3d70a3d71")}),
    ("1 percent sampled with rvalue and precision 4", None,
     {"sampling_percentage": 1, "sampling_precision": 4}, "ot=rv:FD70A3D70A3D71", None,
     {"both": (True, 100, "ot=rv:FD70A3D70A3D71;th:fd70a")}),
    ("1 percent with rvalue and precision 3", None,
     {"sampling_percentage": 1, "sampling_precision": 3}, "ot=rv:FD70A3D70A3D71", None,
     {"both": NOT}),
    ("1 percent not sampled with rvalue", None, {"sampling_percentage": 1},
     "ot=rv:FD70A3D70A3D70", None, {"both": NOT}),
    ("49 percent not sampled with default tid", None, {"sampling_percentage": 49}, "", None,
     {"both": NOT}),
    ("1 percent sampled with rvalue", None, {"sampling_percentage": 1, "sampling_precision": 14},
     "ot=rv:fd70B000000000", None,
     {"both": (True, 100, "ot=rv:fd70B000000000;th:fd70a3d70a3d71")}),
    ("1 percent sampled with tid", bytes.fromhex("a0a0a0a0a0a0a0a0a0fe000000000000"),
     {"sampling_percentage": 1, "sampling_precision": 4}, "", None,
     {"both": (True, 100, "ot=th:fd70a")}),
    ("sampled by priority", None, {"sampling_percentage": 1}, "", ("sampling.priority", 2),
     {"both": (True, 1, "ot=th:0")}),
    ("not sampled by priority", None, {"sampling_percentage": 99}, "",
     ("sampling.priority", 0), {"both": NOT}),
    ("incoming 50 percent with rvalue", None, {"sampling_percentage": 50},
     "ot=rv:90000000000000;th:80000000000000", None,
     {E: (True, 2, "ot=rv:90000000000000;th:8"), P: NOT}),
    ("incoming 50 percent at 25 percent not sampled", None, {"sampling_percentage": 25},
     "ot=th:8", None, {"both": NOT}),
    ("incoming 50 percent at 25 percent sampled",
     bytes.fromhex("ffffffffffffffffffffffffffffffff"), {"sampling_percentage": 25},
     "ot=th:8", None, {E: (True, 4, "ot=th:c"), P: (True, 8, "ot=th:e")}),
    ("equalizing vs proportional", None, {"sampling_percentage": 50},
     "ot=rv:c0000000000000;th:8", None,
     {E: (True, 2, "ot=rv:c0000000000000;th:8"), P: (True, 4, "ot=rv:c0000000000000;th:c")}),
    ("inconsistent arriving threshold", None,
     {"sampling_percentage": 100, "fail_closed": False}, "ot=rv:40000000000000;th:8", None,
     {"both": (True, 1, "ot=rv:40000000000000;th:0")}),
    ("inconsistent arriving threshold not sampled", None,
     {"sampling_percentage": 1, "fail_closed": True},
     "ot=rv:40000000000000;th:8", None, {"both": NOT}),
    ("40 percent precision 3 with rvalue", None,
     {"sampling_percentage": 40, "sampling_precision": 3}, "ot=rv:a0000000000000", None,
     {"both": (True, 2.5, "ot=rv:a0000000000000;th:99a")}),
    ("arriving 50 percent sampled at 40 percent precision 6 with tid",
     bytes.fromhex("a0a0a0a0a0a0a0a0a0d0000000000000"),
     {"sampling_percentage": 40, "sampling_precision": 6}, "ot=th:8", None,
     {P: (True, 5, "ot=th:cccccd"), E: (True, 2.5, "ot=th:99999a")}),
    ("arriving 50 percent sampled at 40 percent partly sampled",
     bytes.fromhex("a0a0a0a0a0a0a0a0a0b0000000000000"),
     {"sampling_percentage": 40, "sampling_precision": 3}, "ot=th:8", None,
     {P: NOT, E: (True, 2.5, "ot=th:99a")}),
    ("arriving 50 percent sampled at 40 percent not sampled",
     bytes.fromhex("a0a0a0a0a0a0a0a0a080000000000000"),
     {"sampling_percentage": 40, "sampling_precision": 3}, "ot=th:8", None, {"both": NOT}),
    ("200 percent equals 100 percent", None, {"sampling_percentage": 200}, "", None,
     {"both": (True, 1, "ot=th:0")}),
    ("tiny probability rounding", IMPROBABLE_TID, {"sampling_percentage": 100 * 2 ** -14},
     "ot=th:fffc", None, {E: (True, 1 << 14, "ot=th:fffc"), P: (True, 1 << 28, "ot=th:fffffff")}),
    ("almost 100pct sampling", IMPROBABLE_TID,
     {"sampling_percentage": (1 - 8e-7) * 100, "sampling_precision": 10}, "", None,
     {"both": (True, 1 / (1 - 8e-7), "ot=th:00000cccccccd")}),
    ("probability underflow", IMPROBABLE_TID, {"sampling_percentage": 2 ** -4},
     "ot=th:fffffffffffff8", None, {E: (True, 1 << 53, "ot=th:fffffffffffff8"), P: NOT}),
    ("other vendors kept after ot", None, {"sampling_percentage": 50},
     "congo=t61rcWkgMzE, ot=foo:bar", None,
     {"both": (True, 2, "ot=th:8;foo:bar,congo=t61rcWkgMzE")}),
]


@pytest.mark.parametrize("mode", [E, P])
@pytest.mark.parametrize("case", TABLE, ids=[c[0] for c in TABLE])
async def test_tracestate_table(case: Any, mode: str) -> None:
    _, tid, cfg, ts, attr, want = case
    sink = Sink()
    # The Go table's zero values: precision 0 (= 14 digits) and fail_closed false.
    proc = make(sink, {"sampling_precision": 14, "fail_closed": False, **cfg, "mode": mode,
                       "hash_seed": HASH_SEED})
    await proc.consume(one_span(tid or DEFAULT_TID, ts, attr))
    sampled, count, out = want.get(mode, want.get("both"))
    spans = spans_of(sink)
    if not sampled:
        assert spans == []
        assert sink.batches == []
        return
    assert len(spans) == 1
    assert spans[0].trace_state == out
    got = TraceState.parse(spans[0].trace_state)
    assert adjusted_count(got.threshold) == pytest.approx(count, rel=1e-3)


ERRORS = [
    ("missing randomness", bytes(16), ""),
    ("invalid r-value", DEFAULT_TID, "ot=rv:abababababababab"),
    ("invalid t-value", DEFAULT_TID, "ot=th:abababababababab"),
    ("t-value syntax", DEFAULT_TID, "ot=th:-1"),
    ("inconsistent t-value trace id", bytes.fromhex("ffffffffffffffffff70000000000000"),
     "ot=th:8"),
    ("inconsistent t-value r-value", DEFAULT_TID, "ot=th:8;rv:70000000000000"),
    ("bad w3c syntax", DEFAULT_TID, "ot=th:8,Bad Key=1"),
    ("32 members", DEFAULT_TID, ",".join(f"k{i}=v" for i in range(32))),
]


@pytest.mark.parametrize("mode", [E, P])
@pytest.mark.parametrize("case", ERRORS, ids=[c[0] for c in ERRORS])
async def test_errors_fail_closed(case: Any, mode: str) -> None:
    _, tid, ts = case
    sink, tel = Sink(), Telemetry()
    proc = make(sink, {"sampling_percentage": 100, "mode": mode}, telemetry=tel)
    await proc.consume(one_span(tid, ts))
    assert sink.batches == []
    # fail_closed: false lets the same span through
    open_sink = Sink()
    await make(open_sink, {"sampling_percentage": 100, "mode": mode,
                           "fail_closed": False}).consume(one_span(tid, ts))
    assert len(spans_of(open_sink)) == 1


@pytest.mark.parametrize(("pct", "tv"), [(100, "0"), (75, "4"), (50, "8"), (25, "c"),
                                         (10, "e668"), (100 / 3, "aaac")])
async def test_hash_seed_writes_rv_and_th(pct: float, tv: str) -> None:
    sink = Sink()
    proc = make(sink, {"sampling_percentage": pct, "hash_seed": HASH_SEED,
                       "mode": "hash_seed"})
    found = 0
    for i in range(2000):
        tid = (i * 0x9E3779B97F4A7C15 % (1 << 128)).to_bytes(16, "big")
        await proc.consume(one_span(tid))
    for sp in spans_of(sink):
        ts = TraceState.parse(sp.trace_state)
        assert ts.th == tv
        assert ts.rv
        assert ts.threshold <= ts.rnd
        assert ts.rnd == hash_seed_randomness(sp.trace_id, seed_state32(HASH_SEED))
        found += 1
    assert found >= 10


def kept_ids(sink: Sink) -> set[bytes]:
    return {sp.trace_id for sp in spans_of(sink)}


def trace_ids(n: int) -> list[bytes]:
    # A fixed, spread set: splitmix64 of i, twice.
    def mix(x: int) -> int:
        x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        return x ^ (x >> 31)
    return [mix(2 * i).to_bytes(8, "big") + mix(2 * i + 1).to_bytes(8, "big")
            for i in range(n)]


async def test_hash_seed_known_decisions() -> None:
    """The 14-bit FNV bucket rule: kept exactly when the bucket is below pct × 163.84."""
    ids = trace_ids(3000)
    sink = Sink()
    proc = make(sink, {"sampling_percentage": 10})
    req = ExportTraceServiceRequest()
    spans = req.resource_spans.add().scope_spans.add().spans
    for tid in ids:
        spans.add(trace_id=tid, span_id=b"\x01" * 8, name="s")
    await proc.consume(Batch(Signal.TRACES, raw=req.SerializeToString()))
    state = seed_state32(0)
    want = {t for t in ids if (hash_seed_randomness(t, state) & 0x3FFF) < 1638}
    assert kept_ids(sink) == want
    assert 250 < len(want) < 350
    # FNV-1a 32 reference vectors (the IETF draft's), and the seed prefix it runs after.
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C
    assert fnv1a32(b"foobar") == 0xBF9CF968
    assert state == fnv1a32(bytes(4))


async def test_consistency_lower_percentage_keeps_a_subset() -> None:
    ids = trace_ids(2000)
    kept: dict[float, set[bytes]] = {}
    for mode in ("hash_seed", "proportional"):
        for pct in (5, 20, 60):
            sink = Sink()
            proc = make(sink, {"sampling_percentage": pct, "mode": mode})
            for tid in ids:
                await proc.consume(one_span(tid))
            kept[pct] = kept_ids(sink)
        assert kept[5] <= kept[20] <= kept[60]
        assert len(kept[5]) < len(kept[20]) < len(kept[60])


async def test_spans_of_one_trace_share_the_decision_and_empty_parts_go() -> None:
    ids = trace_ids(40)
    req = ExportTraceServiceRequest()
    for r in range(2):
        ss = req.resource_spans.add().scope_spans.add()
        for tid in ids:
            ss.spans.add(trace_id=tid, span_id=bytes([r + 1]) * 8, name=f"r{r}")
    sink = Sink()
    await make(sink, {"sampling_percentage": 30}).consume(
        Batch(Signal.TRACES, raw=req.SerializeToString()))
    spans = spans_of(sink)
    by_trace: dict[bytes, int] = {}
    for sp in spans:
        by_trace[sp.trace_id] = by_trace.get(sp.trace_id, 0) + 1
    assert set(by_trace.values()) == {2}
    # A batch where nothing is kept is not forwarded at all.
    nothing = Sink()
    await make(nothing, {"sampling_percentage": 0}).consume(
        Batch(Signal.TRACES, raw=req.SerializeToString()))
    assert nothing.batches == []


async def test_counted_by_policy() -> None:
    sink, tel = Sink(), Telemetry()
    proc = make(sink, {"sampling_percentage": 100}, telemetry=tel)
    await proc.consume(one_span(DEFAULT_TID))
    await proc.consume(one_span(DEFAULT_TID, attr=("sampling.priority", 0)))
    await proc.consume(one_span(bytes(16)))

    def count(policy: str, sampled: str) -> float | None:
        return tel.registry.get_sample_value(
            "otelpipe_processor_probabilistic_sampler_count_traces_sampled_total",
            {"processor": "probabilistic_sampler", "policy": policy, "sampled": sampled})
    assert count("trace_id_hash", "true") == 1
    assert count("sampling_priority", "false") == 1
    assert count("missing_randomness", "false") == 1


@pytest.mark.parametrize(("value", "keep"), [(1, True), (0, False), (0.5, True), (-1, None),
                                              ("1", True), ("0", False), ("NaN", None),
                                              ("1_0", None), (True, None)])
async def test_span_priority(value: Any, keep: bool | None) -> None:
    # 50% on a trace id that 50% does not keep in hash_seed mode? use pct 0.01 for "None".
    sink = Sink()
    tid = DEFAULT_TID
    proc = make(sink, {"sampling_percentage": 0.01})
    await proc.consume(one_span(tid, attr=("sampling.priority", value)))
    base = Sink()
    await make(base, {"sampling_percentage": 0.01}).consume(one_span(tid))
    expected = bool(base.batches) if keep is None else keep
    assert bool(sink.batches) is expected


def test_config_errors() -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({}, "sampling_percentage"),
        ({"sampling_percentage": -1}, "negative"),
        ({"sampling_percentage": float("inf")}, "invalid"),
        ({"sampling_percentage": 1e39}, "invalid"),  # beyond float32
        ({"sampling_percentage": 1e-20}, "too small"),
        ({"sampling_percentage": 10, "sampling_precision": 0}, "sampling_precision"),
        ({"sampling_percentage": 10, "sampling_precision": 15}, "sampling_precision"),
        ({"sampling_percentage": 10, "mode": "random"}, "mode"),
        ({"sampling_percentage": 10, "hash_seed": -1}, "hash_seed"),
        ({"sampling_percentage": 10, "attribute_source": "record"}, "from_attribute"),
        ({"sampling_percentage": 10, "attribute_source": "span"}, "attribute_source"),
    ]
    for cfg, msg in bad:
        with pytest.raises(ValidationError, match=msg):
            ProbabilisticSamplerConfig.model_validate(cfg)


async def test_undecodable_batch_is_permanent() -> None:
    proc = make(Sink(), {"sampling_percentage": 10})
    with pytest.raises(PermanentError):
        await proc.consume(Batch(Signal.TRACES, raw=b"\x0a\xff\xff\xff"))


# Logs ------------------------------------------------------------------------------------

def one_record(tid: bytes = b"", attrs: list[tuple[str, Any]] | None = None) -> Batch:
    req = ExportLogsServiceRequest()
    lr = req.resource_logs.add().scope_logs.add().log_records.add(trace_id=tid)
    lr.body.string_value = "x"
    for k, v in attrs or ():
        lr.attributes.append(kv(k, v))
    return Batch(Signal.LOGS, raw=req.SerializeToString())


def records_of(sink: Sink) -> list[Any]:
    return [lr for b in sink.batches for rl in b.message.resource_logs
            for sl in rl.scope_logs for lr in sl.log_records]


def attrs_of(rec: Any) -> dict[str, Any]:
    return {a.key: a.value.string_value for a in rec.attributes}


async def test_logs_by_trace_id_hash_seed() -> None:
    ids = trace_ids(500)
    state = seed_state32(0)
    sink = Sink()
    proc = make(sink, {"sampling_percentage": 25}, signal=Signal.LOGS)
    for tid in ids:
        await proc.consume(one_record(tid))
    recs = records_of(sink)
    want = {t for t in ids if (hash_seed_randomness(t, state) & 0x3FFF) < 4096}
    assert {r.trace_id for r in recs} == want
    for r in recs:
        a = attrs_of(r)
        assert a["sampling.threshold"] == "c"
        assert int(a["sampling.randomness"], 16) == hash_seed_randomness(r.trace_id, state)


async def test_logs_from_attribute_and_priority() -> None:
    state = seed_state32(7)
    sink = Sink()
    proc = make(sink, {"sampling_percentage": 50, "hash_seed": 7,
                       "attribute_source": "record", "from_attribute": "logID",
                       "sampling_priority": "priority"}, signal=Signal.LOGS)
    kept = set()
    for i in range(200):
        await proc.consume(one_record(DEFAULT_TID, [("logID", f"id-{i}")]))
        if (hash_seed_randomness(f"id-{i}".encode(), state) & 0x3FFF) < 8192:
            kept.add(f"id-{i}")
    got = {attrs_of(r)["logID"] for r in records_of(sink)}
    assert got == kept
    assert 60 < len(kept) < 140
    # priority 100 keeps everything; 0 is "no say"; the integer attribute hashes as text
    prio = Sink()
    proc = make(prio, {"sampling_percentage": 0.01, "attribute_source": "record",
                       "from_attribute": "n", "sampling_priority": "priority"},
                signal=Signal.LOGS)
    for i in range(50):
        await proc.consume(one_record(attrs=[("n", i), ("priority", 100)]))
    assert len(records_of(prio)) == 50
    assert {attrs_of(r)["sampling.threshold"] for r in records_of(prio)} == {"0"}
    # A record without any randomness source is dropped (fail_closed)
    none = Sink()
    await make(none, {"sampling_percentage": 100}, signal=Signal.LOGS).consume(one_record())
    assert none.batches == []


async def test_logs_proportional_with_record_threshold() -> None:
    sink = Sink()
    proc = make(sink, {"sampling_percentage": 50, "mode": "proportional"}, signal=Signal.LOGS)
    # arriving 50% (th 8), randomness c0…: proportional 25% → th c, kept (c0… >= c0…)
    await proc.consume(one_record(attrs=[("sampling.threshold", "8"),
                                         ("sampling.randomness", "c0000000000000")]))
    recs = records_of(sink)
    assert len(recs) == 1
    assert attrs_of(recs[0])["sampling.threshold"] == "c"
    # bad randomness attribute: fail closed
    bad = Sink()
    proc = make(bad, {"sampling_percentage": 50, "mode": "proportional"}, signal=Signal.LOGS)
    await proc.consume(one_record(DEFAULT_TID, [("sampling.randomness", "zz")]))
    assert bad.batches == []


async def test_logs_held_as_python_records() -> None:
    """A batch of text-log records (no OTLP yet) is sampled like an OTLP one."""
    from pipeline.pdata.logrecords import LogGroup, LogRecord

    records = [LogRecord(body=f"line {i}", attributes={"logID": f"id-{i}"})
               for i in range(300)]
    batch = Batch(Signal.LOGS, logs=[LogGroup(records, resource={"service.name": "x"})])
    sink = Sink()
    await make(sink, {"sampling_percentage": 20, "attribute_source": "record",
                      "from_attribute": "logID"}, signal=Signal.LOGS).consume(batch)
    state = seed_state32(0)
    want = {f"line {i}" for i in range(300)
            if (hash_seed_randomness(f"id-{i}".encode(), state) & 0x3FFF) < 3276}
    assert {r.body.string_value for r in records_of(sink)} == want
    assert 30 < len(want) < 90
