"""Processor `logstruct`: turn unstructured log lines into structured records.

Logs only. Each record's text (its string body by default, or `source:
attributes["key"]`) goes through an ordered list of `parsers` (the first that
applies and matches wins) and/or automatic detection (`auto: true`, tried
after the list). What a parser finds is normalised (see `normalize.py`):
time, severity, body, trace context, semantic-convention attribute names.
A record no parser understands passes through unchanged with attribute
`log.parse_error` and is counted; a parser that raises is contained per
record. With `templates.enabled`, every record with a text message gets
`log.template` and `log.template_id` from the Drain-style miner.

See docs/logstruct.md for the configuration reference.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from pipeline.component import (
    Component,
    ComponentConfig,
    Consumer,
    CreateSettings,
    Factory,
    Kind,
    Signal,
)
from pipeline.pdata.anyvalue import any_value
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import LogGroup, LogRecord, flat_value
from pipeline.processors.logstruct.grok import GrokError, compile_grok
from pipeline.processors.logstruct.normalize import (
    Normalizer,
    Record,
    TimeParser,
    apply_record,
    write_record,
)
from pipeline.processors.logstruct.parsers import (
    AccessLogParser,
    ApacheErrorParser,
    AutoParser,
    ContainerParser,
    GrokParser,
    JsonParser,
    KlogParser,
    LogfmtParser,
    Parser,
    RegexParser,
    SyslogParser,
)
from pipeline.processors.logstruct.templates import TemplateMiner, TemplateSettings

__all__ = ["LogStructConfig", "LogStructProcessor", "factory"]

Scalar = str | int | float | bool
_SOURCE = re.compile(r"""^(?:body|attributes\[(["'])(?P<key>[^"']+)\1\])$""")


def _check_source(v: str) -> str:
    if not _SOURCE.match(v):
        raise ValueError('source must be `body` or `attributes["key"]`')
    return v


def _check_timezone(v: str | None) -> str | None:
    if v is not None and v != "UTC":
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as "
                             "Europe/Berlin)") from None
    return v


class WhenConfig(ComponentConfig):
    """All given conditions must hold for the parser to be tried."""

    matches: str | None = Field(None, description="regex that must be found in the source text")
    starts_with: str | list[str] | None = Field(
        None, description="prefix (or list of prefixes) the source text must start with")
    attributes: dict[str, Scalar] | None = Field(
        None, description="record attributes that must equal these values")
    resource: dict[str, Scalar] | None = Field(
        None, description="resource attributes that must equal these values")

    @field_validator("matches")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"invalid regex: {exc}") from None
        return v


class _ParserBase(ComponentConfig):
    when: WhenConfig | None = None
    source: str | None = Field(None, description='`body` or `attributes["key"]`; '
                                                 "default: the processor's source")
    time_format: str | None = Field(None, description="strptime format or epoch_s/ms/us/ns")
    timezone: str | None = Field(None, description="IANA zone of stamps without an offset")

    _src = field_validator("source")(lambda v: v if v is None else _check_source(v))
    _tz = field_validator("timezone")(lambda v: _check_timezone(v))


class AutoParserConfig(_ParserBase):
    type: Literal["auto"]


class JsonParserConfig(_ParserBase):
    type: Literal["json"]
    allow_prefix: bool = Field(True, description="also parse `<text> {json}`")


class LogfmtParserConfig(_ParserBase):
    type: Literal["logfmt"]


class SyslogParserConfig(_ParserBase):
    type: Literal["syslog"]
    protocol: Literal["auto", "rfc5424", "rfc3164"] = "auto"


class AccessLogParserConfig(_ParserBase):
    type: Literal["access_log"]


class ApacheErrorParserConfig(_ParserBase):
    type: Literal["apache_error"]


class KlogParserConfig(_ParserBase):
    type: Literal["klog"]


class ContainerParserConfig(_ParserBase):
    type: Literal["container"]
    format: Literal["auto", "docker", "cri"] = "auto"


class RegexParserConfig(_ParserBase):
    type: Literal["regex"]
    pattern: str = Field(description="Python regex with named groups, searched in the text")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            rx = re.compile(v)
        except re.error as exc:
            raise ValueError(f"invalid regex: {exc}") from None
        if not rx.groupindex:
            raise ValueError("the regex has no named groups (?P<name>...)")
        return v


class GrokParserConfig(_ParserBase):
    type: Literal["grok"]
    pattern: str | list[str] = Field(description="grok expression(s); the first match wins")
    pattern_definitions: dict[str, str] = Field(
        default_factory=dict, description="extra named patterns, usable as %{NAME}")

    @model_validator(mode="after")
    def _compiles(self) -> GrokParserConfig:
        for p in self.patterns():
            try:
                compile_grok(p, self.pattern_definitions)
            except GrokError as exc:
                raise ValueError(str(exc)) from None
        return self

    def patterns(self) -> list[str]:
        return [self.pattern] if isinstance(self.pattern, str) else list(self.pattern)


ParserConfig = Annotated[
    AutoParserConfig | JsonParserConfig | LogfmtParserConfig | SyslogParserConfig
    | AccessLogParserConfig | ApacheErrorParserConfig | KlogParserConfig
    | ContainerParserConfig | RegexParserConfig | GrokParserConfig,
    Field(discriminator="type"),
]


class LogStructConfig(ComponentConfig):
    auto: bool = Field(False, description="detect the format of lines no listed parser took")
    parsers: list[ParserConfig] = Field(
        default_factory=list, description="tried in order; the first that applies and "
                                          "matches wins")
    source: str = Field("body", description='text to parse: `body` or `attributes["key"]`')
    time_format: str | None = Field(
        None, description="strptime format (or epoch_s|epoch_ms|epoch_us|epoch_ns) tried "
                          "before the built-in formats")
    timezone: str | None = Field(None, description="IANA zone of stamps without an offset "
                                                   "(default UTC)")
    semconv: bool = Field(True, description="rename fields to OpenTelemetry semantic "
                                            "conventions (status -> http.response.status_code…)")
    rename: dict[str, str] = Field(default_factory=dict,
                                   description="field renames, applied before roles and semconv")
    keep_original: bool = Field(False, description="keep the parsed text in attribute "
                                                   "log.record.original")
    skip_structured: bool = Field(
        True, description="leave records that already have a time or severity (OTLP, JSON "
                          "objects from jsonlogs) unparsed")
    templates: TemplateSettings = Field(default_factory=TemplateSettings)

    _src = field_validator("source")(lambda v: _check_source(v))
    _tz = field_validator("timezone")(lambda v: _check_timezone(v))

    @model_validator(mode="after")
    def _something_to_do(self) -> LogStructConfig:
        if not self.auto and not self.parsers and not self.templates.enabled:
            raise ValueError("set auto: true, list parsers, or enable templates")
        return self


# ---------------------------------------------------------------------------------------


class _Condition:
    __slots__ = ("attrs", "needs_resource", "prefixes", "resource", "search")

    def __init__(self, cfg: WhenConfig):
        self.search = re.compile(cfg.matches).search if cfg.matches is not None else None
        sw = cfg.starts_with
        self.prefixes: tuple[str, ...] | None = None if sw is None else \
            ((sw,) if isinstance(sw, str) else tuple(sw))
        self.attrs = list((cfg.attributes or {}).items())
        self.resource = list((cfg.resource or {}).items())
        self.needs_resource = bool(self.resource)

    def __call__(self, text: str, lr: Any, res: dict[str, Any] | None,
                 native: bool = False) -> bool:
        if self.prefixes is not None and not text.startswith(self.prefixes):
            return False
        if self.search is not None and self.search(text) is None:
            return False
        if self.attrs:
            if lr is None:
                return False
            if native:  # a pdata.logrecords.LogRecord
                attrs = lr.attributes
                for k, v in self.attrs:
                    if k not in attrs or flat_value(attrs[k]) != v:
                        return False
            else:
                have = {kv.key: kv for kv in lr.attributes}
                for k, v in self.attrs:
                    kv = have.get(k)
                    if kv is None or any_value(kv.value) != v:
                        return False
        if self.resource:
            if res is None:
                return False
            for k, v in self.resource:
                if res.get(k) != v:
                    return False
        return True


class _Step:
    __slots__ = ("auto", "parser", "source", "when")

    def __init__(self, parser: Parser, when: _Condition | None, source: str | None):
        self.parser = parser
        self.when = when
        self.source = source  # attribute key, or None for the body
        self.auto = parser if isinstance(parser, AutoParser) else None


def _source_key(source: str) -> str | None:
    m = _SOURCE.match(source)
    assert m is not None
    return m.group("key")


def _attr_text(lr: Any, key: str, native: bool = False) -> str | None:
    if native:
        v = lr.attributes.get(key)
        return v if type(v) is str else None
    for kv in lr.attributes:
        if kv.key == key:
            v = kv.value
            if v.WhichOneof("value") == "string_value":
                return str(v.string_value)
            return None
    return None


class LogStructProcessor(Component, Consumer):
    def __init__(self, settings: CreateSettings, config: LogStructConfig, *,
                 clock: Callable[[], float] = time.time):
        assert settings.next_consumer is not None
        self.next = settings.next_consumer
        self.config = config
        self.log = settings.logger
        self.clock = clock
        self._norms: dict[tuple[str | None, str | None], Normalizer] = {}
        steps: list[_Step] = []
        for pc in config.parsers:
            steps.append(_Step(self._build(pc), _Condition(pc.when) if pc.when else None,
                               _source_key(pc.source or config.source)))
        if config.auto:
            steps.append(_Step(self._build(AutoParserConfig(type="auto")), None,
                               _source_key(config.source)))
        for st in steps:
            p = st.parser
            if isinstance(p, AutoParser):
                p.set_reparse(self._reparse)
            elif isinstance(p, JsonParser | ContainerParser):
                p.reparse = self._reparse
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
        pid = settings.pipeline_id or "logs"
        tel = settings.telemetry
        self._labels = (str(settings.id), pid)
        self._errors_metric = tel.logstruct_parse_errors
        self._parsed_metric = tel.logstruct_parsed
        self._depth = 0

    def _norm(self, time_format: str | None, timezone: str | None) -> Normalizer:
        tf = time_format or self.config.time_format
        tz = timezone or self.config.timezone
        n = self._norms.get((tf, tz))
        if n is None:
            n = self._norms[(tf, tz)] = Normalizer(
                TimeParser(tf, tz, self.clock), semconv=self.config.semconv,
                rename=self.config.rename)
        return n

    def _build(self, pc: Any) -> Parser:
        norm = self._norm(pc.time_format, pc.timezone)
        t = pc.type
        if t == "auto":
            return AutoParser(norm)
        if t == "json":
            return JsonParser(norm, allow_prefix=pc.allow_prefix)
        if t == "logfmt":
            return LogfmtParser(norm)
        if t == "syslog":
            return SyslogParser(norm, pc.protocol)
        if t == "access_log":
            return AccessLogParser(norm)
        if t == "apache_error":
            return ApacheErrorParser(norm)
        if t == "klog":
            return KlogParser(norm)
        if t == "container":
            return ContainerParser(norm, pc.format)
        if t == "regex":
            return RegexParser(norm, pc.pattern)
        if t == "grok":
            return GrokParser(norm, [compile_grok(p, pc.pattern_definitions)
                                     for p in pc.patterns()])
        raise ValueError(f"unknown parser type {t!r}")  # pragma: no cover - config forbids

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
        for st in self.steps:
            if st.source is None:
                text = body
            else:
                src = _attr_text(lr, st.source, native)
                if src is None:
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
        return None, reason

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
                (apply_record if native else write_record)(rec, lr)
        except Exception as exc:  # a parser bug must not lose the batch
            fmt, parsed = None, f"parser failed: {type(exc).__name__}: {exc}"[:200]
            self.log.debug("logstruct parser raised", exc_info=True)
        if fmt is not None:
            formats[fmt] = formats.get(fmt, 0) + 1
            if type(rec.body) is str:
                message = rec.body
        else:
            reason = "exception" if parsed.startswith("parser failed") else "no_match"
            errors[reason] = errors.get(reason, 0) + 1
            if native:
                lr.attributes["log.parse_error"] = parsed
            else:
                lr.attributes.add(key="log.parse_error").value.string_value = parsed
        return message

    def process_records(self, groups: list[LogGroup]) -> None:
        """Parse Python log records (pdata.logrecords) in place: the same parsing as
        `process_otlp`, applied with attribute and dict assignments."""
        steps = bool(self.steps)
        miner = self.miner
        skip_structured = self.config.skip_structured
        needs_resource = self._needs_resource
        all_body = self._all_body
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
                    if tb is bytes:
                        try:
                            text = text.decode()
                        except UnicodeDecodeError:
                            text = text.decode(errors="replace")
                            invalid_utf8 = True
                    else:
                        continue  # no text to parse (structured or no body)
                elif not text and all_body:
                    continue
                message = text
                if steps and not (skip_structured and (lr.time_unix_nano
                                                       or lr.severity_number)):
                    message = self._parse_one(text, lr, res, invalid_utf8, True, formats,
                                              errors)
                if miner is not None and message:
                    tid, template = miner.match(message)
                    attrs = lr.attributes
                    attrs["log.template"] = template
                    attrs["log.template_id"] = tid
        self._count(formats, errors)

    def _process_lines(self, g: LogGroup, res: dict[str, Any] | None,
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
            try:
                if single is not None:
                    if single.parse(text, rec):
                        fmt: str | None = single.format
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
                fmt, parsed = None, f"parser failed: {type(exc).__name__}: {exc}"[:200]
                self.log.debug("logstruct parser raised", exc_info=True)
                lr = out[-1] = make(cls)  # as it was before parsing
                lr.body = message = text
                lr.attributes = base.copy()
                if extras is not None and extras[i]:
                    lr.attributes.update(extras[i])  # type: ignore[arg-type]
                if obs:
                    lr.observed_time_unix_nano = obs
            if fmt is not None:
                formats[fmt] = formats.get(fmt, 0) + 1
            else:
                reason = "exception" if parsed.startswith("parser failed") else "no_match"
                errors[reason] = errors.get(reason, 0) + 1
                lr.attributes["log.parse_error"] = parsed
            if miner is not None and message:
                tid, template = miner.match(message)
                attrs = lr.attributes
                attrs["log.template"] = template
                attrs["log.template_id"] = tid
        g.set_records(out)

    def process_otlp(self, msg: Any) -> None:
        """Parse every record of an OTLP ExportLogsServiceRequest in place."""
        steps = bool(self.steps)
        miner = self.miner
        skip_structured = self.config.skip_structured
        needs_resource = self._needs_resource
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
                            raw = body.bytes_value
                            try:
                                text = raw.decode()
                            except UnicodeDecodeError:
                                text = raw.decode(errors="replace")
                                invalid_utf8 = True
                        elif kind != "string_value" or self._all_body:
                            continue  # no text to parse (structured or empty body)
                    message = text
                    if steps and not (skip_structured and (lr.time_unix_nano
                                                           or lr.severity_number)):
                        message = self._parse_one(text, lr, res, invalid_utf8, False,
                                                  formats, errors)
                    if miner is not None and message:
                        tid, template = miner.match(message)
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


def _create(settings: CreateSettings, config: Any) -> LogStructProcessor:
    return LogStructProcessor(settings, config)


factory = Factory(
    type="logstruct",
    kind=Kind.PROCESSOR,
    config_model=LogStructConfig,
    create=_create,
    signals=frozenset({Signal.LOGS}),
    description="parses log lines (JSON, logfmt, syslog, access/error logs, klog, container "
                "wrappers, regex, grok) into structured records; template mining",
)
