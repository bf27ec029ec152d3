"""`pipeline.telemetry.merge`: the expositions of real `Telemetry` registries (one per
simulated process, and real subprocesses where the process start time matters) merged
into one, read back with prometheus_client's parser."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.telemetry.merge import ExpositionMerger, merge_expositions, policy
from pipeline.telemetry.metrics import CounterSpec, GaugeSpec, HistogramSpec, Telemetry
from tests.support import REPO

ACCEPTED = CounterSpec("otelpipe_receiver_accepted_items", "Items accepted.", ("signal",))
SEND_SIZE = HistogramSpec("otelpipe_processor_batch_send_size", "Batch sizes.",
                          ("processor",), buckets=(10, 100, 1000))
LAG = HistogramSpec("otelpipe_event_loop_lag_seconds", "Loop lag.", buckets=(0.1, 1.0))
QUEUE = GaugeSpec("otelpipe_exporter_queue_size", "Queue size.", ("exporter",))
OFFSET = GaugeSpec("otelpipe_kafka_receiver_committed_offset", "Offset.",
                   ("receiver", "topic", "partition"))
REFUSING = GaugeSpec("otelpipe_memory_limiter_refusing", "Refusing.", ("processor",))

Values = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> tuple[dict[str, str], Values]:
    """Family name -> type, and (sample name, sorted labels) -> value; fails on a
    sample name seen twice."""
    types: dict[str, str] = {}
    values: Values = {}
    for fam in text_string_to_metric_families(text):
        assert fam.name not in types, f"family {fam.name} twice"
        types[fam.name] = fam.type
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in values, f"series {key} twice"
            values[key] = s.value
    return types, values


def process(accepted: dict[str, float], sizes: list[float], lags: list[float],
            queue: float, offset: float, refusing: float) -> str:
    t = Telemetry()
    for signal, n in accepted.items():
        t.counter(ACCEPTED).labels(signal).inc(n)
    for size in sizes:
        t.histogram(SEND_SIZE).labels("batch").observe(size)
    for lag in lags:
        t.histogram(LAG).observe(lag)
    t.gauge(QUEUE).labels("otlp").set(queue)
    t.gauge(OFFSET).labels("kafka", "spans", "0").set(offset)
    t.gauge(REFUSING).labels("memory_limiter").set(refusing)
    return t.render().decode()


def test_counters_histograms_and_gauges_are_summed_per_label_set() -> None:
    texts = {
        "0": process({"traces": 3, "logs": 1}, [5, 50], [0.05], queue=4, offset=100,
                     refusing=0),
        "1": process({"traces": 4}, [500, 5000, 50], [0.5], queue=6, offset=90, refusing=1),
    }
    types, v = parse(merge_expositions(texts))
    assert types["otelpipe_receiver_accepted_items"] == "counter"
    assert v[("otelpipe_receiver_accepted_items_total", (("signal", "traces"),))] == 7
    assert v[("otelpipe_receiver_accepted_items_total", (("signal", "logs"),))] == 1
    b = "otelpipe_processor_batch_send_size"
    assert types[b] == "histogram"
    got = {le: v[(b + "_bucket", (("le", le), ("processor", "batch")))]
           for le in ("10.0", "100.0", "1000.0", "+Inf")}
    assert got == {"10.0": 1, "100.0": 3, "1000.0": 4, "+Inf": 5}
    assert v[(b + "_count", (("processor", "batch"),))] == 5
    assert v[(b + "_sum", (("processor", "batch"),))] == 5 + 50 + 500 + 5000 + 50
    assert v[("otelpipe_exporter_queue_size", (("exporter", "otlp"),))] == 10
    # An offset is not a quantity: the highest (latest) commit.
    assert v[("otelpipe_kafka_receiver_committed_offset",
              (("partition", "0"), ("receiver", "kafka"), ("topic", "spans")))] == 100
    # `_created` of a summed family: the earliest.
    created = [k for k in v if k[0] == "otelpipe_receiver_accepted_items_created"]
    assert created
    assert types["otelpipe_receiver_accepted_items_created"] == "gauge"
    singles = [parse(texts[w])[1] for w in ("0", "1")]
    for key in created:
        assert v[key] == min(s[key] for s in singles if key in s)


def test_per_process_families_keep_a_worker_label() -> None:
    texts = {"0": process({}, [], [0.05], queue=0, offset=0, refusing=0),
             "1": process({}, [], [0.5, 0.5], queue=0, offset=0, refusing=1),
             "10": process({}, [], [], queue=0, offset=0, refusing=0)}
    types, v = parse(merge_expositions(texts))
    for name in ("otelpipe_process_resident_memory_bytes",
                 "otelpipe_process_start_time_seconds", "otelpipe_process_cpu_seconds_total"):
        assert {dict(k[1]).get("worker") for k in v if k[0] == name} == {"0", "1", "10"}
        assert all("worker" in dict(k[1]) for k in v if k[0] == name)
    assert types["otelpipe_process_cpu_seconds"] == "counter"
    info = {k for k in v if k[0] == "otelpipe_build_info"}
    assert {dict(k[1])["worker"] for k in info} == {"0", "1", "10"}
    assert {dict(k[1])["worker"] for k in v if k[0] == "python_info"} == {"0", "1", "10"}
    lag = "otelpipe_event_loop_lag_seconds"
    assert v[(lag + "_count", (("worker", "1"),))] == 2
    assert v[(lag + "_bucket", (("le", "0.1"), ("worker", "0")))] == 1
    assert v[(lag + "_bucket", (("le", "0.1"), ("worker", "1")))] == 0
    assert v[("otelpipe_memory_limiter_refusing",
              (("processor", "memory_limiter"), ("worker", "1")))] == 1
    assert v[("otelpipe_memory_limiter_refusing",
              (("processor", "memory_limiter"), ("worker", "0")))] == 0


def test_help_and_type_once_and_the_output_parses_again() -> None:
    texts = {str(i): process({"traces": i + 1}, [float(i)], [0.01], queue=i, offset=i,
                             refusing=0) for i in range(4)}
    out = merge_expositions(texts)
    helps = [line.split()[2] for line in out.splitlines() if line.startswith("# HELP")]
    type_lines = [line.split()[2] for line in out.splitlines() if line.startswith("# TYPE")]
    assert len(helps) == len(set(helps))
    assert helps == type_lines
    assert set(helps) >= {"otelpipe_receiver_accepted_items_total",
                          "otelpipe_processor_batch_send_size", "otelpipe_exporter_queue_size"}
    _, v = parse(out)
    assert v[("otelpipe_receiver_accepted_items_total", (("signal", "traces"),))] == 10
    # Merging one process gives that process back (per-process families labelled).
    _, one = parse(merge_expositions({"0": texts["0"]}))
    _, alone = parse(texts["0"])
    for (name, labels), value in alone.items():
        fam = name.removesuffix("_total").removesuffix("_bucket").removesuffix(
            "_count").removesuffix("_sum")
        if policy(fam, "gauge") == "worker":
            assert one[(name, tuple(sorted((*labels, ("worker", "0")))))] == value
        else:
            assert one[(name, labels)] == value


def test_histograms_with_different_buckets_are_not_added() -> None:
    a, b = Telemetry(), Telemetry()
    a.histogram(HistogramSpec("otelpipe_h", "h", buckets=(1, 2))).observe(1.5)
    b.histogram(HistogramSpec("otelpipe_h", "h", buckets=(1, 5))).observe(1.5)
    _, v = parse(merge_expositions({"0": a.render().decode(), "1": b.render().decode()}))
    assert v[("otelpipe_h_bucket", (("le", "2.0"), ("worker", "0")))] == 1
    assert v[("otelpipe_h_bucket", (("le", "5.0"), ("worker", "1")))] == 1
    assert ("otelpipe_h_count", ()) not in v


def test_a_series_in_one_process_only_and_a_family_of_another_type() -> None:
    a, b = Telemetry(), Telemetry()
    a.counter(CounterSpec("otelpipe_child_items", "c", ("k",))).labels("x").inc(2)
    b.counter(CounterSpec("otelpipe_child_items", "c", ("k",))).labels("y").inc(5)
    a.gauge(GaugeSpec("otelpipe_q", "q")).set(1)
    b.counter(CounterSpec("otelpipe_q", "q")).inc(9)  # another version: dropped
    types, v = parse(merge_expositions({"0": a.render().decode(), "1": b.render().decode()}))
    assert v[("otelpipe_child_items_total", (("k", "x"),))] == 2
    assert v[("otelpipe_child_items_total", (("k", "y"),))] == 5
    assert types["otelpipe_q"] == "gauge"
    assert v[("otelpipe_q", ())] == 1
    assert ("otelpipe_q_total", ()) not in v


def test_label_values_needing_escapes_survive() -> None:
    t = Telemetry()
    t.counter(CounterSpec("otelpipe_e", "e", ("k",))).labels('a "q" \\ \n b').inc()
    out = merge_expositions({"0": t.render().decode(), "1": t.render().decode()})
    _, v = parse(out)
    assert v[("otelpipe_e_total", (("k", 'a "q" \\ \n b'),))] == 2


def test_a_bad_text_names_its_worker() -> None:
    good = Telemetry().render().decode()
    with pytest.raises(ValueError, match="worker 1"):
        merge_expositions({"0": good, "1": 'otelpipe_x{a="1" 3\n'})


_CHILD = textwrap.dedent("""
    import sys
    from pipeline.telemetry.metrics import CounterSpec, HistogramSpec, Telemetry
    t = Telemetry()
    n = float(sys.argv[1])
    t.counter(CounterSpec("otelpipe_child_items", "c", ("k",))).labels("x").inc(n)
    t.histogram(HistogramSpec("otelpipe_child_sizes", "h", buckets=(1,))).observe(n)
    sys.stdout.write(t.render().decode())
""")


def child(n: float) -> str:
    """The exposition of a real, separate process (its own start time)."""
    return subprocess.run([sys.executable, "-c", _CHILD, str(n)], capture_output=True,
                          text=True, check=True, cwd=REPO, timeout=60).stdout


def test_merger_keeps_counters_monotonic_across_a_worker_restart() -> None:
    w0, w1, w1_again = child(10), child(5), child(0.5)
    merger = ExpositionMerger()

    def total(text: str) -> tuple[float, float, float]:
        _, v = parse(text)
        return (v[("otelpipe_child_items_total", (("k", "x"),))],
                v[("otelpipe_child_sizes_count", ())],
                v[("otelpipe_child_sizes_bucket", (("le", "1.0"),))])

    assert total(merger.merge({"0": w0, "1": w1})) == (15, 2, 0)
    # Worker 1's scrape failed: its last values still count.
    assert total(merger.merge({"0": w0})) == (15, 2, 0)
    # Worker 1 was restarted (new start time) and counted 0.5 since: the old 5 stays.
    assert total(merger.merge({"0": w0, "1": w1_again})) == (15.5, 3, 1)
    assert total(merger.merge({"0": w0, "1": w1_again})) == (15.5, 3, 1)
    # The stateless function has no memory: the drop shows.
    assert total(merge_expositions({"0": w0, "1": w1_again})) == (10.5, 2, 1)


def test_merger_carries_a_family_only_a_gone_process_had() -> None:
    merger = ExpositionMerger()
    w0 = Telemetry().render().decode()  # this process: another start time than children
    _, v = parse(merger.merge({"0": w0, "1": child(3)}))
    assert v[("otelpipe_child_items_total", (("k", "x"),))] == 3
    # Worker 1 restarted as a process without that counter (yet): the 3 still counts.
    types, v = parse(merger.merge({"0": w0, "1": w0}))
    assert types["otelpipe_child_items"] == "counter"
    assert v[("otelpipe_child_items_total", (("k", "x"),))] == 3
    types, v = parse(merger.merge({"0": w0, "1": child(1)}))
    assert v[("otelpipe_child_items_total", (("k", "x"),))] == 4


def test_hand_written_texts_label_order_timestamps_untyped_and_help_escapes() -> None:
    a = textwrap.dedent('''\
        # HELP otelpipe_r_total Requests \\\\ with a "quote" and a\\nnewline.
        # TYPE otelpipe_r_total counter
        otelpipe_r_total{a="1",b="x y}"} 2 1700000000000

        otelpipe_loose{k="v"} 4
        # TYPE otelpipe_s summary
        otelpipe_s{quantile="0.5"} 1
        otelpipe_s_sum 10
        otelpipe_s_count 3
        ''')
    b = textwrap.dedent('''\
        # TYPE otelpipe_r_total counter
        otelpipe_r_total{b="x y}",a="1"} 3
        otelpipe_loose{k="v"} 5
        # TYPE otelpipe_s summary
        otelpipe_s{quantile="0.5"} 2
        otelpipe_s_sum 5
        otelpipe_s_count 1
        ''')
    out = merge_expositions({"a": a, "b": b})
    types, v = parse(out)
    assert v[("otelpipe_r_total", (("a", "1"), ("b", "x y}")))] == 5
    assert types["otelpipe_loose"] == "unknown"
    assert v[("otelpipe_loose", (("k", "v"),))] == 9
    assert types["otelpipe_s"] == "summary"
    assert v[("otelpipe_s_sum", ())] == 15
    assert v[("otelpipe_s_count", ())] == 4
    assert ("otelpipe_s", (("quantile", "0.5"),)) not in v  # no sum of quantiles
    assert next(iter(text_string_to_metric_families(out))).documentation == (
        'Requests \\ with a "quote" and a\nnewline.')


@pytest.mark.parametrize("bad", ["otelpipe_x 1 2 3 abc\notelpipe_y\n", "otelpipe_x abc\n",
                                 '{="1"} 3\n', "otelpipe_x{a=1} 2\n"])
def test_malformed_lines_are_refused_with_the_line(bad: str) -> None:
    with pytest.raises(ValueError, match=r"worker 7, line \d"):
        merge_expositions({"7": bad})
