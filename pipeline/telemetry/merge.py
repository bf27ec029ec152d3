"""One `/metrics` for several processes: merge the Prometheus text expositions of the
worker processes of one `otelpipe run --workers N` into one exposition.

`merge_expositions({"0": text0, "1": text1, ...})` reads each text and writes one
exposition (text format 0.0.4, each family's HELP and TYPE once, as first seen) in which
every family gets one of four policies:

- **sum** (counters, histograms, summaries, and gauges by default): one series per
  label set, the sum over processes. Histograms: bucket by bucket, `_sum` and `_count`
  alike, so the result is the histogram of all observations. Summaries: `_sum` and
  `_count`; their quantile series are left out (a sum of quantiles is no quantile, and
  prometheus_client's summaries have none). Gauges that count things
  (queue sizes and capacities, bytes and requests in flight, open connections, series
  held, files watched, consumer lag: a partition's series lives in the process that owns
  it) add up the same way.
- **worker** (per-process families): each series keeps a `worker` label naming its
  process, and nothing is added up: the process collector's `otelpipe_process_*`
  (memory, CPU seconds, fds, start time), `process_*`, `python_*`, `otelpipe_build_info`,
  `otelpipe_event_loop_lag_seconds` (a stall is one loop's, and the sum would hide which)
  and `otelpipe_memory_limiter_refusing` (a 0/1 state per process). `sum by (...)` in
  PromQL still gives a total where one means something (CPU seconds). A histogram whose
  buckets differ between processes (they cannot while all run the same config) is kept
  per process too, as adding such buckets would not be a histogram.
- **max**: gauges for which a sum is wrong and every process holds the same or a
  stale-but-lower value: `otelpipe_kafka_receiver_committed_offset` (an offset: the
  partition's previous owner keeps its last commit) and
  `otelpipe_processor_resourcedetection_attributes` (the same in every process).
- **min**: the `<name>_created` gauges that prometheus_client writes next to counters,
  histograms and summaries: the summed series counts since the earliest of them (per
  process when the family is per process).

The label name `worker` is reserved: a per-process series that already had it gets the
process's name instead. A family whose type differs between texts (processes of
different versions) keeps the first text's type and drops the other texts' samples.
Exposition timestamps are dropped (prometheus_client writes none).

Cost: the merge runs on the primary's event loop at every scrape, so it does not run
prometheus_client's parser over every line (≈ 19 µs a line: 4 processes × 1424 lines
took 110 ms of CPU; this way 21 ms, 52 ms for the first merge). It splits each line into its series text and value and identifies the
series (name and sorted labels) through a cache keyed by the series text; only a text
not seen before goes through prometheus_client's parser (label escapes and all). A
series is written back as the text it arrived in (a per-process one rebuilt with its
`worker` label). The cache holds at most 100k series texts (cleared when full).

`ExpositionMerger` does the same and also keeps summed counters monotonic when a process
restarts: the restarted process counts from zero again, which a plain sum turns into a
drop (Prometheus' `rate()` would read a counter reset, and the whole sum as the
increase). The merger notices a new `otelpipe_process_start_time_seconds` for a worker
and from then on adds that worker's last scraped counters, histograms and summaries to
the sum (what the old process counted after its last scrape is lost to the sum, the
counters never go back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString as _untyped_float_to_go


def floatToGoString(value: float) -> str:
    text: str = _untyped_float_to_go(value)  # type: ignore[no-untyped-call]
    return text

__all__ = ["WORKER_LABEL", "ExpositionMerger", "Policy", "merge_expositions", "policy"]

WORKER_LABEL = "worker"
START_TIME = "otelpipe_process_start_time_seconds"

Policy = Literal["sum", "worker", "max", "min"]

PER_WORKER_PREFIXES = ("otelpipe_process_", "process_", "python_")
PER_WORKER = frozenset({
    "otelpipe_build_info", "otelpipe_event_loop_lag_seconds",
    "otelpipe_memory_limiter_refusing"})
MAX_GAUGES = frozenset({
    "otelpipe_kafka_receiver_committed_offset",
    "otelpipe_processor_resourcedetection_attributes"})
_CUMULATIVE = frozenset({"counter", "histogram", "summary"})
# Sample names of a family besides its own name, per type (text format 0.0.4).
_SUFFIXES = {"histogram": ("_bucket", "_count", "_sum", "_created"),
             "summary": ("_count", "_sum", "_created"), "counter": ("_created",)}
CACHE_LIMIT = 100_000

Labels = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Labels]  # (sample name, sorted labels)


def _per_worker(base: str) -> bool:
    return base in PER_WORKER or base.startswith(PER_WORKER_PREFIXES)


def policy(name: str, type_: str) -> Policy:
    """How the family `name` (a counter's without `_total`, as prometheus_client's parser
    names it) of type `type_` is merged."""
    if _per_worker(name):
        return "worker"
    if type_ not in ("gauge", "unknown", "untyped"):
        return "sum"
    if name.endswith("_created"):
        return "worker" if _per_worker(name[:-len("_created")]) else "min"
    if name in MAX_GAUGES:
        return "max"
    return "sum"


@dataclass
class _Family:
    name: str  # as in the TYPE line (a counter's with `_total`)
    type: str
    help: str  # the HELP line as written (escapes kept), "" if none
    policy: Policy
    # worker -> series -> value, in order of first appearance
    per_worker: dict[str, dict[SeriesKey, float]] = field(default_factory=dict)
    text: dict[SeriesKey, str] = field(default_factory=dict)  # series as first written


class _Series:
    """Series text -> (sample name, sorted labels), through prometheus_client's parser
    once per distinct text."""

    def __init__(self) -> None:
        self.known: dict[str, SeriesKey] = {}

    def key(self, text: str) -> SeriesKey:
        found = self.known.get(text)
        if found is not None:
            return found
        samples = [s for fam in text_string_to_metric_families(text + " 0\n")
                   for s in fam.samples]
        if len(samples) != 1:
            raise ValueError(f"not a sample: {text[:200]!r}")
        found = (samples[0].name, tuple(sorted(samples[0].labels.items())))
        if len(self.known) >= CACHE_LIMIT:
            self.known.clear()
        self.known[text] = found
        return found


_SERIES = _Series()


def _belongs(sample: str, fam: _Family) -> bool:
    name = fam.name
    if sample == name:
        return True
    base = name[:-len("_total")] if fam.type == "counter" and name.endswith("_total") \
        else name
    return sample.startswith(base) and sample[len(base):] in _SUFFIXES.get(fam.type, ())


def _new_family(families: dict[str, _Family], name: str, type_: str, help_: str) -> _Family:
    """The family named `name` in a TYPE line (or a sample's, untyped), keyed by its name
    without a counter's `_total`, as prometheus_client's parser names it: a gauge `x` and
    a counter `x_total` are one family, of the type first seen."""
    base = name[:-len("_total")] if type_ == "counter" and name.endswith("_total") else name
    fam = families.get(base)
    if fam is None:
        fam = families[base] = _Family(name, type_, help_, policy(base, type_))
    return fam


def _read(worker: str, text: str, families: dict[str, _Family], series: _Series) -> None:
    """Add one process's exposition to `families`."""
    helps: dict[str, str] = {}
    fam: _Family | None = None
    values: dict[SeriesKey, float] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line or line.isspace():
            continue
        if line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "HELP":
                helps[parts[2]] = line
            elif len(parts) >= 4 and parts[1] == "TYPE":
                name, type_ = parts[2], parts[3].strip()
                fam = _new_family(families, name, type_, helps.get(name, ""))
                if fam.type != type_:  # another version's family: skip its samples
                    fam = _Family(name, type_, "", "sum")
                    values = {}
                else:
                    values = fam.per_worker.setdefault(worker, {})
            continue
        close = line.rfind("}")
        if close >= 0:
            head, rest = line[:close + 1], line[close + 1:].split()
        else:
            head, *rest = line.split()
        try:
            if not rest:
                raise ValueError("no value")
            value = float(rest[0])
            key = series.key(head)
        except ValueError as exc:
            raise ValueError(f"exposition of worker {worker}, line {n}: {exc}") from exc
        sample = key[0]
        if fam is None or not _belongs(sample, fam):
            fam = _new_family(families, sample, "untyped", helps.get(sample, ""))
            if fam.type != "untyped":
                fam = _Family(sample, "untyped", "", "sum")
                values = {}
            else:
                values = fam.per_worker.setdefault(worker, {})
        values[key] = value
        fam.text.setdefault(key, head)


def _parse(texts: Mapping[str, str], series: _Series) -> dict[str, _Family]:
    families: dict[str, _Family] = {}
    for worker in _ordered(texts):
        _read(worker, texts[worker], families, series)
    for fam in families.values():
        if fam.type == "histogram" and fam.policy == "sum" and not _same_buckets(fam):
            fam.policy = "worker"
    return families


def _ordered(texts: Mapping[str, str]) -> list[str]:
    """Worker names in numeric order when they are numbers ("2" before "10")."""
    return sorted(texts, key=lambda w: (0, int(w), w) if w.isdigit() else (1, 0, w))


def _same_buckets(fam: _Family) -> bool:
    """True if every process has the same `le` bounds for each series of a histogram."""
    seen: dict[Labels, frozenset[str]] = {}
    for values in fam.per_worker.values():
        bounds: dict[Labels, set[str]] = {}
        for name, labels in values:
            if name.endswith("_bucket"):
                rest = tuple(kv for kv in labels if kv[0] != "le")
                le = next((v for k, v in labels if k == "le"), "")
                bounds.setdefault(rest, set()).add(le)
        for rest, les in bounds.items():
            known = seen.setdefault(rest, frozenset(les))
            if known != les:
                return False
    return True


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _with_worker(key: SeriesKey, worker: str) -> str:
    name, labels = key
    pairs = [f'{k}="{_escape(v)}"' for k, v in labels if k != WORKER_LABEL]
    pairs.append(f'{WORKER_LABEL}="{_escape(worker)}"')
    return f"{name}{{{','.join(pairs)}}}"


def _lines(fam: _Family, carried: Mapping[SeriesKey, float], out: list[str]) -> None:
    fmt = floatToGoString
    if fam.policy == "worker":
        for worker, values in fam.per_worker.items():
            for key, value in values.items():
                out.append(f"{_with_worker(key, worker)} {fmt(value)}")
        return
    merged: dict[SeriesKey, float] = {}
    pick = fam.policy
    for values in fam.per_worker.values():
        for key, value in values.items():
            known = merged.get(key)
            if known is None:
                merged[key] = value
            elif pick == "sum":
                merged[key] = known + value
            elif pick == "max":
                merged[key] = max(known, value)
            else:
                merged[key] = min(known, value)
    if carried and pick == "sum":
        for key, extra in carried.items():
            merged[key] = merged.get(key, 0.0) + extra
    text = fam.text
    quantiles = fam.type == "summary" and pick == "sum"
    for key, value in merged.items():
        if quantiles and any(k == "quantile" for k, _ in key[1]):
            continue  # a sum of quantiles is no quantile
        out.append(f"{text[key]} {fmt(value)}")


@dataclass
class _Carry:
    """Counts of a cumulative family carried for processes that are gone (or missing
    from this scrape): added to the sums."""

    name: str  # as in the TYPE line
    type: str
    help: str
    values: dict[SeriesKey, float] = field(default_factory=dict)
    text: dict[SeriesKey, str] = field(default_factory=dict)


def _render(families: Mapping[str, _Family], carried: Mapping[str, _Carry]) -> str:
    out: list[str] = []
    for key_, fam in families.items():
        carry = carried.get(key_)
        extra: Mapping[SeriesKey, float] = {}
        if carry is not None and carry.type == fam.type:
            extra = carry.values
            for key, text in carry.text.items():
                fam.text.setdefault(key, text)
        _header(fam.name, fam.type, fam.help, out)
        _lines(fam, extra, out)
    for key_, carry in carried.items():
        if key_ not in families and carry.values:  # only a gone process had it
            _header(carry.name, carry.type, carry.help, out)
            out.extend(f"{carry.text[k]} {floatToGoString(v)}"
                       for k, v in carry.values.items())
    out.append("")
    return "\n".join(out)


def _header(name: str, type_: str, help_: str, out: list[str]) -> None:
    if help_:
        out.append(help_)
    out.append(f"# TYPE {name} {type_}")


def merge_expositions(texts: Mapping[str, str]) -> str:
    """One Prometheus text exposition from the expositions of several processes, keyed
    by worker name ("0", "1", ...). A text that does not parse raises ValueError naming
    its worker and line."""
    return _render(_parse(texts, _SERIES), {})


def _add(into: dict[str, _Carry], name: str, carry: _Carry) -> None:
    known = into.get(name)
    if known is None:
        into[name] = known = _Carry(carry.name, carry.type, carry.help)
    elif known.type != carry.type:
        return
    values = known.values
    for key, value in carry.values.items():
        values[key] = values.get(key, 0.0) + value
    for key, text in carry.text.items():
        known.text.setdefault(key, text)


class ExpositionMerger:
    """`merge_expositions` with memory, so that summed counters never go back.

    A worker whose `otelpipe_process_start_time_seconds` changed since the last merge
    was restarted: the counters, histograms and summaries of its previous process (as
    last scraped) are added to every later sum. A worker missing from `texts` (its
    scrape failed, or it is being restarted) counts with its last scraped values.
    Memory: one copy of each worker's last cumulative series, plus the retired ones
    (series, not samples: bounded by what the processes expose)."""

    def __init__(self) -> None:
        self._start: dict[str, float] = {}
        self._last: dict[str, dict[str, _Carry]] = {}
        self._retired: dict[str, _Carry] = {}
        self._series = _Series()

    def merge(self, texts: Mapping[str, str]) -> str:
        families = _parse(texts, self._series)
        starts = families.get(START_TIME)
        for worker in texts:
            start = None
            if starts is not None:
                start = next(iter(starts.per_worker.get(worker, {}).values()), None)
            known = self._start.get(worker)
            if start is not None and known is not None and start != known:
                for name, carry in self._last.pop(worker, {}).items():
                    _add(self._retired, name, carry)
            if start is not None:
                self._start[worker] = start
            self._last[worker] = {
                name: _Carry(fam.name, fam.type, fam.help, values,
                             {key: fam.text[key] for key in values})
                for name, fam in families.items()
                if fam.policy == "sum" and fam.type in _CUMULATIVE
                and (values := fam.per_worker.get(worker))}
        carried: dict[str, _Carry] = {}
        for name, carry in self._retired.items():
            _add(carried, name, carry)
        for worker, last in self._last.items():
            if worker not in texts:
                for name, carry in last.items():
                    _add(carried, name, carry)
        return _render(families, carried)
