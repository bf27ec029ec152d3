"""One scrape target's state and the exposition -> OTLP conversion.

The hot loop reads a body line by line. The text before a sample's value
(`name{labels}`) is the key of a per-target cache that holds what the series
becomes after `metric_relabel_configs`: its OTLP metric, its data point
attributes already encoded as protobuf, and its role in the family (value,
bucket, quantile, `_sum`, `_count`, `_created`) -- or that it was dropped. A
steady target therefore costs a dict lookup, a float() and a few attribute
writes per sample; labels are parsed and relabelled once per series.

Conversion (as the Collector's prometheusreceiver does it):
- counter -> Sum, cumulative, monotonic; the metric keeps the sample name
  (`http_requests_total`); start time from `_created` when sent, else the
  time the series was first seen, reset to the sample time when the value
  goes down (a counter reset);
- gauge, unknown/untyped, info, stateset -> Gauge (named as the sample);
- histogram -> Histogram, cumulative: `_bucket{le}` become bucket counts
  (de-cumulated), `_sum`, `_count`; resets detected on count or sum;
- summary -> Summary: `{quantile}` values, `_sum`, `_count`;
- OpenMetrics exemplars -> exemplars (trace_id/span_id as ids, the other
  labels as filtered attributes) on the counter point or histogram;
- staleness: a series sent in the previous scrape but not in this one, or all
  series of a target whose scrape failed, get one point flagged
  NO_RECORDED_VALUE.

The OTLP side (metrics, series, their encoding) is in `otlpmetrics.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.pdata.wire import ld
from pipeline.receivers.prometheus.otlpmetrics import (
    BUCKET,
    CREATED,
    DROPPED,
    GAUGE,
    HISTOGRAM,
    NO_EXEMPLARS,
    NUMBER_GAUGE,
    NUMBER_SUM,
    P_COUNT,
    P_SUM,
    QUANTILE,
    SUM,
    SUMMARY,
    VALUE,
    Entry,
    Metric,
    ScrapeResult,
    Series,
    attrs_bytes,
    encode_exemplar,
    hist_point,
    stale_point,
    sum_point,
    summary_point,
)
from pipeline.receivers.prometheus.relabel import Rule, relabel
from pipeline.receivers.prometheus.textparse import (
    ParseError,
    parse_exemplar,
    parse_meta,
    parse_series,
    split_sample,
)

CHUNK_LINES = 4000
# New series cost ~10-30x a known one (labels parsed, relabelled, encoded): a chunk
# stops after this many, so the first scrape of a big target yields as often.
CHUNK_NEW_SERIES = 200

_TYPES = {"counter", "gauge", "histogram", "summary", "untyped", "unknown", "info",
          "stateset", "gaugehistogram"}
_SUFFIXES = (("_total", "counter", VALUE), ("_created", "counter", CREATED),
             ("_bucket", "histogram", BUCKET), ("_sum", "histogram", P_SUM),
             ("_count", "histogram", P_COUNT), ("_created", "histogram", CREATED),
             ("_sum", "summary", P_SUM), ("_count", "summary", P_COUNT),
             ("_created", "summary", CREATED))


class SampleLimitExceeded(Exception):
    pass


def _resolve(name: str, types: dict[str, str], kind: str | None = None
             ) -> tuple[str, str, int]:
    """(family, type, role) of a sample name given the body's TYPE lines."""
    t = types.get(name)
    if t is not None:
        if t in ("histogram", "summary"):
            return name, t, QUANTILE if t == "summary" else VALUE
        return name, t, VALUE
    for suffix, ftype, role in _SUFFIXES:
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            if types.get(base) == ftype:
                return base, ftype, role
    return name, "unknown", VALUE


def _kind(name: str, family: str, ftype: str, role: int, labels: dict[str, str]
          ) -> tuple[int, int, str, float]:
    """(OTLP kind, role, metric name, le/quantile) of a sample; pops le/quantile."""
    if ftype == "histogram" and role != VALUE:
        if role == BUCKET:
            le = labels.pop("le", None)
            if le is None:
                raise ParseError(f"histogram bucket {name} without le")
            return HISTOGRAM, role, family, _float(le)
        return HISTOGRAM, role, family, 0.0
    if ftype == "summary":
        if role == QUANTILE:
            q = labels.pop("quantile", None)
            if q is None:
                raise ParseError(f"summary {name} sample without quantile")
            return SUMMARY, role, family, _float(q)
        return SUMMARY, role, family, 0.0
    if ftype == "counter":
        # `_created` of an OpenMetrics counter `family` is sent with family_total
        return SUM, role, name if role == VALUE else family + "_total", 0.0
    return GAUGE, VALUE, name, 0.0


class TargetState:
    """Everything kept between scrapes of one target."""

    def __init__(self, *, target_labels: dict[str, str], rules: Sequence[Rule],
                 honor_labels: bool, honor_timestamps: bool, sample_limit: int,
                 max_series: int):
        self.target_labels = dict(target_labels)
        self.rules = list(rules)
        self.honor_labels = honor_labels
        self.honor_timestamps = honor_timestamps
        self.sample_limit = sample_limit
        self.max_series = max_series
        self.cache: dict[str, Entry | Series] = {}
        # Keyed by a string (family, kind, labels): strings are not tracked by the garbage
        # collector, tuples of tuples are, and 100k of them make its passes long.
        self.series: dict[str, Series] = {}
        self.metrics: dict[tuple[str, int], Metric] = {}
        self.live: list[Series] = []
        self.types: dict[str, str] = {}
        self.helps: dict[str, str] = {}
        self.units: dict[str, str] = {}
        self.scrape_no = 0

    # --- the per-series slow path -------------------------------------------------
    def _labels(self, key: str) -> dict[str, str] | None:
        """The series' labels merged with the target's, after metric_relabel_configs."""
        name, labels = parse_series(key)
        merged: dict[str, str] = {}
        target = self.target_labels
        for k, v in labels:
            if k in target and k not in ("__name__",):
                if self.honor_labels:
                    merged[k] = v
                else:
                    merged["exported_" + k] = v
            else:
                merged[k] = v
        for k, v in target.items():
            if k.startswith("__"):
                continue
            if k not in merged:
                merged[k] = v
        merged["__name__"] = name
        if self.rules:
            out = relabel(merged, self.rules)
            if out is None or not out.get("__name__"):
                return None
            merged = out
        return merged

    def _entry(self, key: str) -> Entry | Series:
        merged = self._labels(key)
        if merged is None:
            return DROPPED
        name = merged.pop("__name__")
        family, ftype, role = _resolve(name, self.types)
        kind, role, family, bound = _kind(name, family, ftype, role, merged)
        # job/instance stay resource attributes; honor_labels keeps a scraped one as a
        # point attribute (see docs).
        for k in ("job", "instance"):
            if merged.get(k) == self.target_labels.get(k):
                merged.pop(k, None)
        labels_t = tuple(sorted(merged.items()))
        mkey = (family, kind)
        metric = self.metrics.get(mkey)
        if metric is None:
            base = family[:-6] if kind == SUM and family.endswith("_total") else family
            metric = Metric(family, kind, self.helps.get(family, self.helps.get(base, "")),
                            self.units.get(family, self.units.get(base, "")))
            self.metrics[mkey] = metric
        skey = "\x00".join([family, str(kind), *(f"{k}\x01{v}" for k, v in labels_t)])
        series = self.series.get(skey)
        if series is None:
            if len(self.series) >= self.max_series:
                self._purge()
            attrs = attrs_bytes(labels_t, b"\x4a" if kind == HISTOGRAM else b"\x3a")
            series = Series(metric, attrs)
            self.series[skey] = series
            self._added += 1
        return series if role == VALUE else Entry(series, role, bound)

    def _purge(self) -> None:
        """Forget the series not (yet) sent in this scrape: their start times are lost
        (a series seen again starts anew), memory stays bounded."""
        now = self.scrape_no
        self.series = {k: s for k, s in self.series.items() if s.seen == now}
        self.cache.clear()
        if len(self.series) >= self.max_series:
            raise SampleLimitExceeded(
                f"more than {self.max_series} series (max_series_per_target)")

    def _meta(self, line: str) -> None:
        meta = parse_meta(line)
        if meta is None:
            return
        what, name, rest = meta
        if what == "TYPE":
            t = rest.lower()
            if t not in _TYPES:
                raise ParseError(f"unknown metric type {rest!r} for {name}")
            old = self.types.get(name)
            if old is not None and old != t:
                # typed differently than when its series were cached: start over
                self.cache.clear()
                self.series.clear()
                self.metrics.clear()
                self.live = []
            self.types[name] = t
        elif what == "HELP":
            self.helps[name] = rest
        else:
            self.units[name] = rest

    # --- one scrape ---------------------------------------------------------------
    def begin(self, openmetrics: bool) -> None:
        self.scrape_no += 1
        self._om = openmetrics
        self._touched: list[Series] = []
        self._samples = 0
        self._post = 0
        self._added = 0
        self.eof = False
        for m in self.metrics.values():
            m.points = []

    def feed(self, lines: Sequence[str], start: int, stop: int,  # noqa: C901 - hot path, inlined on purpose
             now_ns: int) -> int:
        """Process lines from `start`: at most CHUNK_LINES of them and CHUNK_NEW_SERIES
        new series, never past `stop`; returns where to continue (call until it returns
        `stop` or `eof` is set, then `encode` and `finish`)."""
        cache = self.cache
        get = cache.get
        touched = self._touched
        scrape_no = self.scrape_no
        om = self._om
        honor_ts = self.honor_timestamps
        samples = 0
        post = 0
        new = 0
        idx = start - 1
        end = min(stop, start + CHUNK_LINES)
        resume = end
        for line in lines[start:end]:
            idx += 1
            if new >= CHUNK_NEW_SERIES:
                resume = idx
                break
            if not line:
                continue
            if line[0] == "#":
                if line.startswith("# EOF"):
                    self.eof = True
                    break
                self._line_meta(line, idx)
                continue
            exemplar = None
            if om and " # " in line:
                try:
                    key, rest, exemplar = split_sample(line)
                except ParseError as exc:
                    raise ParseError(f"line {idx + 1}: {exc}") from None
            else:
                b = line.rfind("}")
                if b >= 0:
                    key = line[:b + 1]
                    rest = line[b + 1:]
                else:
                    key, _, rest = line.partition(" ")
            samples += 1
            e = get(key)
            if e is None:
                e = self._new_entry(key, idx)
                new += 1
            role = e.role
            if role < 0:
                continue
            try:
                value = float(rest)  # the common case: a value, no timestamp
                t = now_ns
            except ValueError:
                value, t = _value_ts(rest, idx, om, honor_ts, now_ns)
            post += 1
            s = e.series
            if s.seen != scrape_no:
                s.seen = scrape_no
                touched.append(s)
                if s.dirty:
                    s.begin()
            if role == VALUE:
                s.value = value
                s.t = t
            elif role == BUCKET:
                s.buckets.append((e.bound, value))
                s.t = t
            elif role == QUANTILE:
                s.quantiles.append((e.bound, value))
                s.t = t
            elif role == P_SUM:
                s.sum = value
                s.t = t
            elif role == P_COUNT:
                s.count = value
                s.t = t
            else:
                s.created = value
                s.dirty = True
            if exemplar is not None:
                self._exemplar(s, exemplar, idx, now_ns)
        self._samples += samples
        self._post += post
        if self.sample_limit and self._post > self.sample_limit:
            raise SampleLimitExceeded(f"sample_limit {self.sample_limit} exceeded")
        return resume

    def _line_meta(self, line: str, idx: int) -> None:
        try:
            self._meta(line)
        except ParseError as exc:
            raise ParseError(f"line {idx + 1}: {exc}") from None

    def _new_entry(self, key: str, idx: int) -> Entry | Series:
        try:
            e = self._entry(key)
        except ParseError as exc:
            raise ParseError(f"line {idx + 1}: {exc}") from None
        if len(self.cache) >= 2 * self.max_series:
            self.cache.clear()
        self.cache[key] = e
        return e

    def _exemplar(self, s: Series, text: str, idx: int, now_ns: int) -> None:
        try:
            labels, value, ts = parse_exemplar(text)
        except ParseError as exc:
            raise ParseError(f"line {idx + 1}: {exc}") from None
        t = int(ts * 1e9) if ts is not None else now_ns
        if s.exemplars is NO_EXEMPLARS:
            s.exemplars = []
        s.exemplars.append(encode_exemplar(labels, value, t))
        s.dirty = True

    def encode(self, start: int, stop: int) -> None:
        """Encode the points of the series sent in this scrape, `touched[start:stop]`
        (call in chunks, then `finish`)."""
        gauge = NUMBER_GAUGE
        sum_ = NUMBER_SUM
        for s in self._touched[start:stop]:
            m = s.metric
            k = m.kind
            if k == GAUGE:
                m.points.append(s.prefix + gauge(0x19, s.t, 0x21, s.value))
            elif k == SUM:
                v = s.value
                if s.created or s.exemplars:
                    m.points.append(ld(b"\x0a", sum_point(s)))
                    continue
                if v < s.prev or not s.start:  # a reset, or first sight: start anew
                    s.start = s.t
                s.prev = v
                m.points.append(s.prefix + sum_(0x11, s.start, 0x19, s.t, 0x21, v))
            elif k == HISTOGRAM:
                m.points.append(ld(b"\x0a", hist_point(s)))
            else:
                m.points.append(ld(b"\x0a", summary_point(s)))

    @property
    def touched(self) -> int:
        return len(self._touched)

    def finish(self, now_ns: int) -> ScrapeResult:
        """Stale markers for the series that went away, and the encoded metrics."""
        res = ScrapeResult()
        res.samples = self._samples
        res.samples_post = self._post
        res.added = self._added
        scrape_no = self.scrape_no
        stale = 0
        for s in self.live:
            if s.seen != scrape_no:
                stale_point(s, now_ns)
                stale += 1
        self.live = self._touched
        self._touched = []
        res.points = len(self.live) + stale
        res.collect(self.metrics.values())
        return res

    def fail(self, now_ns: int) -> ScrapeResult:
        """The scrape failed: every live series gets a stale marker."""
        res = ScrapeResult()
        for m in self.metrics.values():
            m.points = []
        self._touched = []
        for s in self.live:
            stale_point(s, now_ns)
        res.points = len(self.live)
        self.live = []
        res.collect(self.metrics.values())
        return res


def _value_ts(rest: str, idx: int, om: bool, honor_ts: bool, now_ns: int
              ) -> tuple[float, int]:
    """Value and timestamp of a sample whose text is not a bare number."""
    parts = rest.split()
    try:
        value = float(parts[0])
        if len(parts) == 1 or not honor_ts:
            return value, now_ns
        if len(parts) == 2:
            return value, int(float(parts[1]) * 1e9) if om else int(parts[1]) * 1_000_000
        raise ValueError
    except (ValueError, IndexError):
        raise ParseError(f"line {idx + 1}: invalid value or timestamp "
                         f"{rest.strip()[:40]!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ParseError(f"invalid bound {text!r}") from None



__all__ = ["CHUNK_LINES", "CHUNK_NEW_SERIES", "ParseError", "SampleLimitExceeded",
           "TargetState"]
