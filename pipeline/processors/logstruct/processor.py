"""The `logstruct` processor: turn unstructured log lines into structured records.

Logs only. Each record's text (its string body by default, or `source:
attributes["key"]`) goes through an ordered list of `parsers` (the first that
applies and matches wins) and/or automatic detection (`auto: true`, tried
after the list). What a parser finds is normalised (see `normalize.py`):
time, severity, body, trace context, semantic-convention attribute names.
A record no parser understands passes through unchanged with attribute
`log.parse_error` and is counted; a parser that raises is contained per
record. With `templates.enabled`, every record with a text message gets
`log.template` and `log.template_id` from the Drain-style miner.

Bounded work per record: a text longer than `max_parse_bytes` (UTF-8) is not
parsed (the parser that would read it is skipped; a record no parser took for
that reason gets `log.parse_skipped: too_long` and is counted under reason
`too_long`), and its template is mined from its first `max_parse_bytes`
characters, cut after the last whole word, with one `<*>` for the rest. Regexes
(`regex`, `grok`) match anchored at the start of the text; every built-in parser
is linear in the text. Together: no record holds the event loop for long,
whatever it contains (tests/unit/processors/logstruct/test_bounds.py).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from pipeline.component import Component, Consumer, ProcessorCreateSettings, Signal
from pipeline.pdata.anyvalue import any_value
from pipeline.pdata.batch import Batch
from pipeline.pdata.flatlogs import flat_value
from pipeline.pdata.logrecords import LogGroup, LogRecord
from pipeline.processors.logstruct.config import LogStructConfig
from pipeline.processors.logstruct.exceptions import tag_exception, tag_exception_otlp
from pipeline.processors.logstruct.normalize import Normalizer
from pipeline.processors.logstruct.parsers.auto import AutoParserConfig
from pipeline.processors.logstruct.parsers.base import Parser, ParserConfigBase
from pipeline.processors.logstruct.record import Record, apply_record, write_record
from pipeline.processors.logstruct.steps import (
    Condition,
    Step,
    attr_text,
    clip_words,
    decode,
    failure,
    source_key,
    utf8_len,
)
from pipeline.processors.logstruct.templates import TemplateMiner
from pipeline.processors.logstruct.timestamps import TimeParser
from pipeline.telemetry.metrics import CounterSpec

__all__ = ["PARSED", "PARSE_ERRORS", "SKIPPED_ATTRIBUTE", "TOO_LONG", "LogStructProcessor",
           "clip_words"]

PARSED = CounterSpec(
    "otelpipe_processor_logstruct_parsed_records",
    "Log records the logstruct processor parsed, by detected or configured format.",
    ("processor", "pipeline", "format"))
PARSE_ERRORS = CounterSpec(
    "otelpipe_processor_logstruct_parse_errors",
    "Log records no logstruct parser understood (no_match), whose parser raised "
    "(exception) or whose text was longer than max_parse_bytes (too_long); they pass "
    "through unparsed with log.parse_error or log.parse_skipped.",
    ("processor", "pipeline", "reason"))

#: The attribute of a record left unparsed on purpose, and its value (and the
#: `reason` label of PARSE_ERRORS) when its text is longer than `max_parse_bytes`.
SKIPPED_ATTRIBUTE = "log.parse_skipped"
TOO_LONG = "too_long"


class LogStructProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: LogStructConfig, *,
                 clock: Callable[[], float] = time.time):
        self.next = settings.next_consumer
        self.config = config
        self.log = settings.logger
        self.clock = clock
        self._norms: dict[tuple[str | None, str | None], Normalizer] = {}
        steps: list[Step] = []
        for pc in config.parsers:
            steps.append(Step(self._build(pc), Condition(pc.when) if pc.when else None,
                              source_key(pc.source or config.source)))
        if config.auto:
            steps.append(Step(self._build(AutoParserConfig(type="auto")), None,
                              source_key(config.source)))
        for st in steps:
            st.parser.set_reparse(self._reparse)
        self.steps = steps
        # One parser for every record's body: called directly, without the step loop.
        st0 = steps[0] if len(steps) == 1 else None
        self._single: Parser | None = (
            st0.parser if st0 is not None and st0.source is None and st0.when is None
            and st0.auto is None else None)
        self._all_body = all(st.source is None for st in steps)
        self._needs_resource = any(st.when is not None and st.when.needs_resource
                                   for st in steps)
        self.miner: TemplateMiner | None = (
            TemplateMiner(config.templates) if config.templates.enabled else None)
        pid = settings.pipeline_id
        tel = settings.telemetry
        self._labels = (str(settings.id), pid)
        self._errors_metric = tel.counter(PARSE_ERRORS)
        self._parsed_metric = tel.counter(PARSED)
        self._depth = 0
        # The parse window: texts of up to `_window_chars` characters are within it
        # whatever they hold (a character is at most 4 UTF-8 bytes); longer ones are
        # measured, and those over `_window` bytes are not parsed.
        self._window = config.max_parse_bytes or sys.maxsize
        self._window_chars = config.max_parse_bytes // 4 if config.max_parse_bytes \
            else sys.maxsize
        self._exceptions = config.exceptions

    def _too_long(self, text: str) -> bool:
        """Is `text` longer than `max_parse_bytes`? (Call when over `_window_chars`.)"""
        return len(text) > self._window or utf8_len(text) > self._window

    def _norm(self, time_format: str | None, timezone: str | None) -> Normalizer:
        tf = time_format or self.config.time_format
        tz = timezone or self.config.timezone
        n = self._norms.get((tf, tz))
        if n is None:
            n = self._norms[(tf, tz)] = Normalizer(
                TimeParser(tf, tz, self.clock), semconv=self.config.semconv,
                rename=self.config.rename)
        return n

    def _build(self, pc: ParserConfigBase) -> Parser:
        return pc.build(self._norm(pc.time_format, pc.timezone))

    # -- parsing ---------------------------------------------------------------------

    def _reparse(self, text: str, rec: Record) -> bool:
        """The inner line of a container wrapper, through the parsers again."""
        if self._depth:
            return False
        self._depth = 1
        try:
            for st in self.steps:
                p = st.parser
                if p.wrapper or (st.when is not None and not st.when(text, None, None)):
                    continue
                if st.auto is not None:
                    fmt = st.auto.detect(text, rec)
                    if fmt is not None:
                        return True
                elif p.parse(text, rec):
                    return True
            return False
        finally:
            self._depth = 0

    def _parse(self, body: str, lr: Any, res: dict[str, Any] | None,
               rec: Record, native: bool = False) -> tuple[str | None, str]:
        """(format, text parsed) or (None, reason). `lr` is an OTLP LogRecord, or with
        `native` a pdata.logrecords.LogRecord."""
        reason = "no parser matched"
        skipped = False
        wc = self._window_chars
        body_long = len(body) > wc and self._too_long(body)
        for st in self.steps:
            if st.source is None:
                if body_long:
                    cut = self._head(body, st)
                    # `when` sees the first lines only: it never reads past the window.
                    if cut > 0 and (st.when is None or st.when(body[:cut], lr, res, native)) \
                            and st.parser.parse(body, rec, cut):  # type: ignore[call-arg]
                        return st.parser.format, body
                    skipped = True
                    continue
                text = body
            else:
                src = attr_text(lr, st.source, native)
                if src is None:
                    continue
                if len(src) > wc and self._too_long(src):
                    skipped = True
                    continue
                text = src
            if not text:
                continue
            when = st.when
            if when is not None and not when(text, lr, res, native):
                continue
            auto = st.auto
            if auto is not None:
                fmt = auto.detect(text, rec)
                if fmt is not None:
                    return fmt, text
                reason = auto.last
                continue
            p = st.parser
            if p.parse(text, rec):
                return p.format, text
            reason = p.reason
        return None, TOO_LONG if skipped else reason

    def _head(self, text: str, st: Step) -> int:
        """A text over the parse window that a windowed parser (regex, grok) may read
        the first lines of: where those lines end (a newline within the window); 0: not
        parsed."""
        if not st.parser.windowed:
            return 0
        n = self._window  # characters; fewer if they are more than max_parse_bytes bytes
        head = text[:n].encode("utf-8", "surrogatepass")
        if len(head) > n:  # the characters within n bytes (a cut sequence is dropped)
            n = len(head[:n].decode("utf-8", "ignore"))
        return max(text.rfind("\n", 0, n), 0)

    async def consume(self, batch: Batch) -> None:
        if batch.signal is Signal.LOGS:
            self.process(batch)
        await self.next.consume(batch)

    def process(self, batch: Batch) -> None:
        """Parse every record of a logs batch in place."""
        groups = batch.mutable_logs()
        if groups is not None:
            self.process_records(groups)
        else:
            self.process_otlp(batch.mutable())

    def _mark(self, lr: Any, parsed: str, native: bool, errors: dict[str, int]) -> None:
        """A record no parser took: `log.parse_skipped` (too long) or `log.parse_error`
        (`parsed` holds the reason), counted by reason."""
        if parsed == TOO_LONG:
            reason, key = TOO_LONG, SKIPPED_ATTRIBUTE
        else:
            reason = "exception" if parsed.startswith("parser failed") else "no_match"
            key = "log.parse_error"
        errors[reason] = errors.get(reason, 0) + 1
        if native:
            lr.attributes[key] = parsed
        else:
            lr.attributes.add(key=key).value.string_value = parsed

    def _count(self, formats: dict[str, int], errors: dict[str, int]) -> None:
        for fmt, n in formats.items():
            self._parsed_metric.labels(*self._labels, fmt).inc(n)
        for reason, n in errors.items():
            self._errors_metric.labels(*self._labels, reason).inc(n)
        if self.miner is not None:
            self.miner.maybe_save()

    def _parse_one(self, text: str, lr: Any, res: dict[str, Any] | None, invalid_utf8: bool,
                   native: bool, formats: dict[str, int], errors: dict[str, int]) -> str:
        """Parse one record's text and apply the result to `lr` (a pdata.logrecords
        LogRecord when `native`, else an OTLP LogRecord); on failure mark it with
        `log.parse_error`. Returns the message to mine templates from."""
        rec = Record()
        message = text
        try:
            fmt, parsed = self._parse(text, lr, res, rec, native)
            if fmt is not None:
                if invalid_utf8:
                    rec.attrs["log.invalid_utf8"] = True
                    if rec.body is None:
                        rec.body = text
                if self.config.keep_original:
                    rec.attrs["log.record.original"] = parsed
                if self._exceptions and "exception.stacktrace" in rec.attrs:
                    tag_exception(rec.attrs, "")  # a trace a parser found in a field
                (apply_record if native else write_record)(rec, lr)
        except Exception as exc:  # a parser bug must not lose the batch
            fmt, parsed = None, failure(exc, self.log)
        if fmt is not None:
            formats[fmt] = formats.get(fmt, 0) + 1
            if type(rec.body) is str:
                message = rec.body
        else:
            self._mark(lr, parsed, native, errors)
        return message

    def _template(self, message: str) -> tuple[str, str]:
        """(id, template) of a message; a too long one is mined from its first
        `max_parse_bytes` characters."""
        assert self.miner is not None
        if len(message) > self._window_chars and self._too_long(message):
            message = clip_words(message, self._window)
        return self.miner.match(message)

    def _tag_template(self, attrs: dict[str, Any], message: str) -> None:
        """`log.template` and `log.template_id` of a Python record's message."""
        tid, template = self._template(message)
        attrs["log.template"] = template
        attrs["log.template_id"] = tid

    def process_records(self, groups: list[LogGroup]) -> None:
        """Parse Python log records (pdata.logrecords) in place: the same parsing as
        `process_otlp`, applied with attribute and dict assignments."""
        steps = bool(self.steps)
        miner = self.miner
        skip_structured = self.config.skip_structured
        needs_resource = self._needs_resource
        all_body = self._all_body
        exceptions = self._exceptions
        formats: dict[str, int] = {}
        errors: dict[str, int] = {}
        for g in groups:
            res = ({k: flat_value(v) for k, v in g.resource.items()}
                   if needs_resource else None)
            if not g.materialized and steps:
                self._process_lines(g, res, formats, errors)
                continue
            for lr in g.records:
                text = lr.body
                invalid_utf8 = False
                tb = type(text)
                if tb is not str:
                    if tb is not bytes:
                        continue  # no text to parse (structured or no body)
                    text, invalid_utf8 = decode(text)
                elif not text and all_body:
                    continue
                message = text
                if steps and not (skip_structured and (lr.time_unix_nano
                                                       or lr.severity_number)):
                    message = self._parse_one(text, lr, res, invalid_utf8, True, formats,
                                              errors)
                if exceptions and ("\n" in message
                                   or "exception.stacktrace" in lr.attributes):
                    message = tag_exception(lr.attributes, message)
                if miner is not None and message:
                    self._tag_template(lr.attributes, message)
        self._count(formats, errors)

    def _line_record(self, g: LogGroup, i: int, text: str) -> LogRecord:
        """Record `i` of a group that holds lines, as `LogGroup.records` builds it."""
        lr: LogRecord = object.__new__(LogRecord)
        lr.body = text
        lr.attributes = g.line_attributes.copy()
        extras = g.extras
        if extras is not None and extras[i]:
            lr.attributes.update(extras[i])  # type: ignore[arg-type]
        if g.observed:
            lr.observed_time_unix_nano = g.observed
        return lr

    def _process_lines(self, g: LogGroup, res: dict[str, Any] | None,  # noqa: C901 - hot path, inlined on purpose
                       formats: dict[str, int], errors: dict[str, int]) -> None:
        """`process_records` for a group that still holds lines (`LogGroup.from_lines`):
        each record is built and parsed in one pass, the parsers writing straight into
        its attribute dict (a parser touches nothing unless the line is its format; if
        one raises, the record is built again from the line). Same result as building
        the records first and applying each parse result to them."""
        lines = g.lines
        assert lines is not None
        extras = g.extras
        base = g.line_attributes
        obs = g.observed
        miner = self.miner
        keep_original = self.config.keep_original
        all_body = self._all_body
        parse = self._parse
        single = self._single
        single_head = single is not None and single.windowed
        window = self._window
        exceptions = self._exceptions
        make = object.__new__
        cls = LogRecord
        out: list[LogRecord] = []
        append = out.append
        for i, line in enumerate(lines):
            lr = make(cls)
            text = line.decode()  # from_lines holds valid UTF-8
            lr.body = text
            a = lr.attributes = base.copy()
            if extras is not None:
                e = extras[i]
                if e:
                    a.update(e)
            if obs:
                lr.observed_time_unix_nano = obs
            append(lr)
            if not text and all_body:
                continue
            message = text
            rec = Record(a)  # parsers write the record's attributes directly
            fmt: str | None
            try:
                if single is not None:
                    if len(line) > window:
                        cut = self._head(text, self.steps[0]) if single_head else 0
                        if cut and single.parse(text, rec, cut):  # type: ignore[call-arg]
                            fmt = single.format
                            parsed = text
                        else:
                            fmt, parsed = None, TOO_LONG
                    elif single.parse(text, rec):
                        fmt = single.format
                        parsed = text
                    else:
                        fmt, parsed = None, single.reason
                else:
                    fmt, parsed = parse(text, lr, res, rec, True)
                if fmt is not None:
                    if keep_original:
                        a["log.record.original"] = parsed
                    t = rec.time or rec.fallback_time
                    if t:
                        lr.time_unix_nano = t
                    if rec.sev_text is not None:
                        lr.severity_number = rec.sev_num
                        lr.severity_text = rec.sev_text
                    body = rec.body
                    if body is not None:
                        lr.body = body
                        if type(body) is str:
                            message = body
                    if rec.trace_id:
                        lr.trace_id = rec.trace_id
                        if rec.span_id:
                            lr.span_id = rec.span_id
                        if rec.flags >= 0:
                            lr.flags = rec.flags
                    elif rec.span_id:
                        lr.span_id = rec.span_id
            except Exception as exc:  # a parser bug must not lose the batch
                fmt, parsed = None, failure(exc, self.log)
                lr = out[-1] = self._line_record(g, i, text)  # as it was before parsing
                message = text
            if fmt is not None:
                formats[fmt] = formats.get(fmt, 0) + 1
            else:
                self._mark(lr, parsed, True, errors)
            if exceptions and ("\n" in message or "exception.stacktrace" in lr.attributes):
                message = tag_exception(lr.attributes, message)
            if miner is not None and message:
                self._tag_template(lr.attributes, message)
        g.set_records(out)

    def process_otlp(self, msg: Any) -> None:
        """Parse every record of an OTLP ExportLogsServiceRequest in place."""
        steps = bool(self.steps)
        miner = self.miner
        skip_structured = self.config.skip_structured
        needs_resource = self._needs_resource
        exceptions = self._exceptions
        formats: dict[str, int] = {}
        errors: dict[str, int] = {}
        for rl in msg.resource_logs:
            res = ({kv.key: any_value(kv.value) for kv in rl.resource.attributes}
                   if needs_resource else None)
            for sl in rl.scope_logs:
                for lr in sl.log_records:
                    body = lr.body
                    text = body.string_value
                    invalid_utf8 = False
                    if not text:
                        kind = body.WhichOneof("value")
                        if kind == "bytes_value":
                            text, invalid_utf8 = decode(body.bytes_value)
                        elif kind != "string_value" or self._all_body:
                            continue  # no text to parse (structured or empty body)
                    message = text
                    if steps and not (skip_structured and (lr.time_unix_nano
                                                           or lr.severity_number)):
                        message = self._parse_one(text, lr, res, invalid_utf8, False,
                                                  formats, errors)
                    if exceptions and "\n" in message:
                        message = tag_exception_otlp(lr, message)
                    if miner is not None and message:
                        tid, template = self._template(message)
                        add = lr.attributes.add
                        add(key="log.template").value.string_value = template
                        add(key="log.template_id").value.string_value = tid
        self._count(formats, errors)

    async def shutdown(self) -> None:
        if self.miner is not None:
            try:
                self.miner.close()
            except OSError as exc:
                self.log.warning("cannot save log templates: %s", exc)

