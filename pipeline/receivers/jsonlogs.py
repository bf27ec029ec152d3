"""The `jsonlogs` receiver: JSON and plain-text log lines over HTTP, as OTLP logs.

    POST /logs   (path configurable; default endpoint localhost:8081)

Content types (a `charset` parameter is allowed; non-UTF-8 charsets are transcoded):

- `application/x-ndjson` (also `application/ndjson`, `application/jsonl`,
  `application/x-jsonlines`): one JSON value per line; blank lines are skipped.
- `application/json`: one JSON array of objects, or one object. A body that is not
  one JSON document (NDJSON sent as application/json, broken JSON, JSON nested
  deeper than the parser's limit) is read line by line as NDJSON instead, so
  nothing is refused for being malformed.
- `text/plain`: one unstructured log per line (the body is the line; blank lines
  are skipped). Anything else is answered 415.

A UTF-8 byte order mark at the start of the body is ignored.
Content-Encoding gzip, deflate and zstd are accepted; the body is limited by
`max_request_body_size` before and after decompression (413 above).

Mapping of a JSON object to a LogRecord (key lists are configurable; the first
key of a list present with a usable value wins, the others stay attributes):

- `timestamp`, `time`, `ts`, `@timestamp` -> `time_unix_nano`. RFC 3339 / ISO 8601
  strings with any offset or `Z` (no offset means UTC; up to nanosecond
  fractions), or epoch numbers and numeric strings whose unit is inferred from
  the magnitude: < 1e11 seconds (fractions allowed), < 1e14 milliseconds,
  < 1e17 microseconds, else nanoseconds. `observed_time_unix_nano` is the time
  the request was received; without a timestamp `time_unix_nano` stays 0.
- `level`, `severity`, `lvl` -> `severity_text` (the string as sent) and
  `severity_number` (OTLP): trace/finest 1, debug/fine 5, info 9, notice 10,
  warn/warning 13, error/err/severe 17, fatal/critical/crit/panic 21, alert 22,
  emerg/emergency 24 (case-insensitive; an unknown word keeps
  `severity_text` with number 0). Numbers: 0-7 are syslog severities
  (0 emerg ... 7 debug), 8-99 bunyan/pino ranges (10 trace, 20 debug, 30 info,
  40 warn, 50 error, 60+ fatal); `severity_text` is then the OTLP short name
  (TRACE, DEBUG, INFO, WARN, ERROR, FATAL).
- `message`, `msg` -> body (a string stays a string; other values keep their type).
  Without one, the body is empty and everything is in the attributes.
- `trace_id`, `traceId`, `trace.id` (32 hex digits) and `span_id`, `spanId`
  (16 hex digits) -> trace context; all-zero ids are invalid.
- `service`, `service.name` (a string) -> resource attribute `service.name`;
  records are grouped into one ResourceLogs per service (records without one
  share a ResourceLogs with an empty resource).
- Everything else -> attributes: strings, bools, ints (int64; larger integers
  become their decimal string), floats as doubles, objects as kvlist values,
  arrays as array values; `null` object members are skipped (`null` inside an
  array stays, as an empty value, to keep positions). Containers deeper than
  `max_nesting_depth` (default and maximum 31: a protobuf parser's default
  recursion limit of 100 messages allows no more) become their JSON text.
- A value that cannot be used for its role (an unparseable timestamp, an
  invalid trace id, a non-string service) is never dropped: it stays an
  attribute under its own key, with no error note.

Lines that are not records: a line that is not valid JSON, or holds a JSON
scalar or array, or JSON nested deeper than the JSON parser accepts (1024
levels), becomes a record whose body is the raw line (string); it never fails
the request. In an `application/json` array, an element that is not an object
becomes a record whose body is the element (a string as is, anything else as its
JSON text). A line with invalid UTF-8 is decoded with U+FFFD replacements, then
parsed as usual, and carries the attribute `log.invalid_utf8 = true`. A line
longer than `max_line_size` bytes (default 1 MiB) is cut there (at a character
boundary), kept unparsed as the body, and flagged `log.truncated = true`.

Security: `tls` (cert_file, key_file, client_ca_file for mutual TLS) serves
HTTPS; `auth` (bearer_token / bearer_tokens / bearer_token_file, or basic)
answers a request without the credential 401 `{"error": "missing credential"}`
(or "invalid credential") with `WWW-Authenticate`, before reading its body.

Budgets (as every listener, docs/security.md "Limits"): `read_header_timeout`
(10 s), `read_timeout` (30 s, 408 after), `idle_timeout` (60 s),
`max_connections` (1000; 503 beyond) and `max_in_flight_bytes` (64 MiB, shared
process-wide): a request that does not fit, or arrives while a memory_limiter
refuses, is answered 503 `{"error": "..."}` with Retry-After before its body is
read.

Answers: 200 `{"accepted": N}` (an empty body accepts 0 records); a refusal by
the pipeline (RetryableError) 503, or 429 when it asks to throttle, with
Retry-After; PermanentError 400; body too large 413, undecodable 400,
unsupported content type or encoding 415 -- errors as `{"error": "..."}`. An
exporter's error is answered with a generic reason naming the exporter; its
text, which may quote the backend, goes to the log, masked. Each request is
delivered as one batch, acknowledged only after the pipeline took it.
"""

from __future__ import annotations

import asyncio
import codecs
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from pydantic import Field, field_validator, model_validator

from pipeline.component import (
    Component,
    Factory,
    Host,
    Kind,
    ReceiverCreateSettings,
    Signal,
)
from pipeline.config.types import Endpoint
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch
from pipeline.pdata.logfields import dumps, hex_id, parse_severity, parse_timestamp
from pipeline.pdata.logrecords import MAX_DEPTH, LogGroup, LogRecord, encode_groups
from pipeline.receiverhelper.auth import Authenticator, auth_middleware
from pipeline.receiverhelper.body import BodyError
from pipeline.receiverhelper.http import (
    HTTPServer,
    HTTPServerSettings,
    Refused,
    ServerLimits,
    read_body,
    retry_after_header,
)
from pipeline.receiverhelper.obs import ReceiverObs, sender_reason

if TYPE_CHECKING:
    from aiohttp import web

# Each JSON container level costs 3 protobuf message levels (AnyValue, KeyValueList,
# KeyValue) below the 6 of request/resource/scope/record/attribute; protobuf's
# default decoding limit is 100 levels, so 31 is the most a Python consumer can read.
MAX_SAFE_DEPTH = 31
DEFAULT_MAX_LINE = 1024 * 1024
# Lines (or array elements) converted between two yields to the event loop.
CHUNK = 1000

NDJSON, JSON, TEXT = "ndjson", "json", "text"
CONTENT_TYPES = {
    "application/x-ndjson": NDJSON,
    "application/ndjson": NDJSON,
    "application/jsonl": NDJSON,
    "application/x-jsonlines": NDJSON,
    "application/json": JSON,
    "text/plain": TEXT,
}
_UTF8_NAMES = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


class JsonLogsConfig(HTTPServerSettings):
    endpoint: Endpoint = Field("localhost:8081", description="host:port to listen on.")
    path: str = Field("/logs", description="URL path that accepts POSTed logs.")
    so_reuseport: bool = Field(
        False, description="Set SO_REUSEPORT so several worker processes share the port "
                           "(set by `service.workers` > 1).")
    max_line_size: int = Field(
        DEFAULT_MAX_LINE, gt=0,
        description="Longest line in bytes; longer lines are cut and flagged log.truncated.")
    max_nesting_depth: int = Field(
        MAX_SAFE_DEPTH, ge=1, le=MAX_SAFE_DEPTH,
        description="Deepest JSON object/array kept structured; deeper parts become JSON text.")
    timestamp_keys: tuple[str, ...] = Field(
        ("timestamp", "time", "ts", "@timestamp"),
        description="Top-level keys holding the record's time, first match wins.")
    severity_keys: tuple[str, ...] = Field(
        ("level", "severity", "lvl"), description="Keys holding the level (text or number).")
    message_keys: tuple[str, ...] = Field(
        ("message", "msg"), description="Keys holding the message, which becomes the body.")
    trace_id_keys: tuple[str, ...] = Field(
        ("trace_id", "traceId", "trace.id"), description="Keys holding a 32-hex-digit trace id.")
    span_id_keys: tuple[str, ...] = Field(
        ("span_id", "spanId"), description="Keys holding a 16-hex-digit span id.")
    service_keys: tuple[str, ...] = Field(
        ("service", "service.name"),
        description="Keys holding the service name (resource attribute service.name).")

    @field_validator("path")
    @classmethod
    def _check_path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("path must start with '/'")
        return v

    @model_validator(mode="after")
    def _distinct_keys(self) -> JsonLogsConfig:
        seen: dict[str, str] = {}
        for role in _ROLE_FIELDS:
            for key in getattr(self, role):
                if not key:
                    raise ValueError(f"{role}: keys cannot be empty")
                if key in seen and seen[key] != role:
                    raise ValueError(f"key {key!r} is in both {seen[key]} and {role}")
                seen[key] = role
        return self


# Role index = position here.
_ROLE_FIELDS = ("timestamp_keys", "severity_keys", "message_keys", "trace_id_keys",
                "span_id_keys", "service_keys")

def _limit_depth(v: Any, depth: int, max_depth: int) -> Any:
    """`v` with containers deeper than `max_depth` replaced by their JSON text (what
    `any_value_dict` does), as a Python value for pdata.logrecords (which applies the
    default limit, 31, itself: this is needed only for a lower `max_nesting_depth`)."""
    t = type(v)
    if t is dict:
        if depth > max_depth:
            return dumps(v)
        d = depth + 1
        return {k: _limit_depth(x, d, max_depth) for k, x in v.items()}
    if t is list:
        if depth > max_depth:
            return dumps(v)
        d = depth + 1
        return [_limit_depth(x, d, max_depth) for x in v]
    return v


_SCALAR_TYPES = frozenset({str, int, float, bool})
_TRUNCATED = {"log.truncated": True}
_INVALID_UTF8 = {"log.invalid_utf8": True}
_TRUNCATED_INVALID = {"log.truncated": True, "log.invalid_utf8": True}


class LogsBuilder:
    """Turns lines / JSON values into Python log records (pdata.logrecords), one
    `LogGroup` per service; `count` is the number of records added. They become OTLP
    only if an exporter asks for it.
    """

    def __init__(self, config: JsonLogsConfig, observed_time: int):
        self.groups: list[LogGroup] = []
        self.count = 0
        self.observed = observed_time
        self.max_line = config.max_line_size
        self.max_depth = config.max_nesting_depth
        roles: dict[str, tuple[int, int]] = {}
        for role, name in enumerate(_ROLE_FIELDS):
            for key in getattr(config, name):
                roles[key] = (len(roles), role)
        self.roles = roles
        self._deep = self.max_depth < MAX_DEPTH  # a lower limit than the encoder's
        # Per role (in _ROLE_FIELDS order): the value a key gives it, None if unusable.
        self._parsers: tuple[Callable[[Any], Any], ...] = (
            parse_timestamp, parse_severity, self._value, _trace_id, _span_id, _service)
        self._groups: dict[str | None, list[LogRecord]] = {}

    @property
    def request(self) -> ExportLogsServiceRequest:
        """The records as an OTLP request (tests; the receiver sends the records)."""
        req = ExportLogsServiceRequest()
        req.ParseFromString(encode_groups(self.groups))
        return req

    # -- containers -------------------------------------------------------------------

    def _records(self, service: str | None) -> list[LogRecord]:
        records = self._groups.get(service)
        if records is None:
            records = self._groups[service] = []
            self.groups.append(LogGroup(records, resource=None if service is None
                                        else {"service.name": service}))
        return records

    def _value(self, v: Any) -> Any:
        return _limit_depth(v, 1, self.max_depth) if self._deep else v

    # -- inputs -----------------------------------------------------------------------

    def add_ndjson(self, lines: Iterable[bytes]) -> None:
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        max_line = self.max_line
        for line in lines:
            if len(line) > max_line:
                self._long_line(line)
                continue
            try:
                obj = loads(line)
            except decode_error:
                self._bad_json_line(line)
                continue
            if type(obj) is dict:
                self.add_object(obj, line)
            else:  # a scalar or an array: the raw line
                self._text(_strip_cr(line).decode(), None)

    def add_text(self, lines: Iterable[bytes]) -> None:
        max_line = self.max_line
        for line in lines:
            if len(line) > max_line:
                self._long_line(line)
                continue
            line = _strip_cr(line)
            if not line.strip():
                continue
            try:
                self._text(line.decode(), None)
            except UnicodeDecodeError:
                self._text(line.decode(errors="replace"), _INVALID_UTF8)

    def add_elements(self, elements: Sequence[Any]) -> None:
        """Elements of a JSON array (`application/json`)."""
        for el in elements:
            if type(el) is dict:
                self.add_object(el, None)
            elif type(el) is str:
                self._text(el, None)
            else:
                self._text(dumps(el), None)

    # -- records ----------------------------------------------------------------------

    def _text(self, text: str, attrs: dict[str, Any] | None) -> None:
        self._records(None).append(LogRecord(text, dict(attrs) if attrs else {},
                                             self.observed))
        self.count += 1

    def _long_line(self, line: bytes) -> None:
        cut = limit = self.max_line
        # Cut at a UTF-8 character boundary: back off over continuation bytes (10xxxxxx).
        while cut > limit - 3 and cut > 1 and (line[cut] & 0xC0) == 0x80:
            cut -= 1
        head = _strip_cr(line[:cut])
        try:
            self._text(head.decode(), _TRUNCATED)
        except UnicodeDecodeError:
            self._text(head.decode(errors="replace"), _TRUNCATED_INVALID)

    def _bad_json_line(self, line: bytes) -> None:
        line = _strip_cr(line)
        if not line.strip():
            return  # blank line
        try:
            text = line.decode()
        except UnicodeDecodeError:
            text = line.decode(errors="replace")
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError:
                obj = None
            if type(obj) is dict:
                self.add_object(obj, line, _INVALID_UTF8)
            else:
                self._text(text, _INVALID_UTF8)
            return
        self._text(text, None)  # not JSON (or too deep for the parser): the raw line

    def add_object(self, obj: dict[str, Any], raw: bytes | None,
                   extra: dict[str, Any] | None = None) -> None:
        roles = self.roles
        attrs: dict[str, Any] = {}
        deep = self._deep
        special: list[tuple[tuple[int, int], str, Any]] | None = None
        for k, v in obj.items():
            r = roles.get(k)
            if r is not None:
                if special is None:
                    special = [(r, k, v)]
                else:
                    special.append((r, k, v))
                continue
            if v is None:
                continue
            # Python values as they are (pdata.logrecords encodes them as `any_value_dict` does)
            attrs[k] = v if not deep or type(v) in _SCALAR_TYPES else self._value(v)
        if special is None:
            if extra:
                attrs.update(extra)
            self._records(None).append(LogRecord(None, attrs, self.observed))
            self.count += 1
            return
        ts, sev, body, trace_id, span_id, service = self._roles(special, attrs)
        if extra:
            attrs.update(extra)
        lr = LogRecord(body, attrs, self.observed)
        if ts:
            lr.time_unix_nano = ts
        if sev is not None and (sev[0] or sev[1]):
            lr.severity_number, lr.severity_text = sev
        if trace_id:
            lr.trace_id = trace_id
        if span_id:
            lr.span_id = span_id
        self._records(service).append(lr)
        self.count += 1

    def _roles(self, special: list[tuple[tuple[int, int], str, Any]],
               attrs: dict[str, Any]) -> list[Any]:
        """The value of each role (time, severity, body, trace id, span id, service; None
        where none was found) from the keys configured for it, the first usable key by
        precedence winning; a key whose value is not usable for its role, or that comes
        after the winner, stays an attribute (`attrs`)."""
        if len(special) > 1:
            special.sort()  # by key precedence (unique), never compares further
        found: list[Any] = [None] * len(_ROLE_FIELDS)
        parsers = self._parsers
        for (_, role), k, v in special:
            if v is None:
                continue
            if found[role] is None:
                parsed = parsers[role](v)
                if parsed is not None:
                    found[role] = parsed
                    continue
            attrs[k] = self._value(v)
        return found


def _trace_id(v: Any) -> bytes | None:
    return hex_id(v, 16)


def _span_id(v: Any) -> bytes | None:
    return hex_id(v, 8)


def _service(v: Any) -> str | None:
    return v if type(v) is str and v else None


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line[-1:] == b"\r" else line


# ---------------------------------------------------------------------------------------
# HTTP


def _error(status: int, message: str, headers: Any = None) -> web.Response:
    from aiohttp import web

    return web.Response(status=status, body=orjson.dumps({"error": message}),
                        content_type="application/json", headers=headers)


def _unauthorized(request: web.Request, reason: str) -> web.Response:
    return _error(401, reason)


async def _read_body(request: web.Request, limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise BodyError(413, f"request body of {length} bytes exceeds the limit of {limit} bytes")
    return await read_body(request, limit)  # inflated, within the listener's budgets


def _to_utf8(body: bytes, charset: str | None) -> bytes:
    if not charset or charset.lower() in _UTF8_NAMES:
        return body
    try:
        info = codecs.lookup(charset)
    except LookupError:
        raise BodyError(415, f"unsupported charset {charset!r}") from None
    if not info._is_text_encoding:  # rot13, hex, base64: codecs, not charsets
        raise BodyError(415, f"unsupported charset {charset!r}")
    return body.decode(charset, errors="replace").encode()


class JsonLogsReceiver(Component):
    def __init__(self, settings: ReceiverCreateSettings, config: JsonLogsConfig):
        self.config = config
        self.log = settings.logger
        self.consumer = settings.consumers[Signal.LOGS]
        self.obs = ReceiverObs(settings, "http")
        self.telemetry = settings.telemetry
        self._server: HTTPServer | None = None
        self.auth = Authenticator(config.auth, settings, "http") \
            if config.auth is not None else None

    async def start(self, host: Host) -> None:
        from aiohttp import web

        cfg = self.config
        middlewares = [auth_middleware(self.auth, _unauthorized)] if self.auth else []
        app = web.Application(client_max_size=cfg.max_request_body_size,
                              middlewares=middlewares)
        app.router.add_post(cfg.path, self.handle)
        if self.auth is not None:
            await self.auth.start()
        # We inflate bodies ourselves, with the size limit (gzip bombs).
        self._server = HTTPServer(
            app, cfg.endpoint, self.log, auto_decompress=False,
            ssl_context=cfg.tls.ssl_context() if cfg.tls is not None else None,
            limits=ServerLimits.of(cfg), telemetry=self.telemetry, reuse_port=cfg.so_reuseport)
        await self._server.start()

    async def shutdown(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None
        if self.auth is not None:
            await self.auth.stop()

    async def handle(self, request: web.Request) -> web.Response:
        from aiohttp import web

        obs = self.obs
        kind = CONTENT_TYPES.get(request.content_type)
        if kind is None:
            obs.failed_request("unsupported_media_type")
            return _error(415, f"unsupported Content-Type {request.content_type!r}; send "
                               "application/x-ndjson, application/json or text/plain")
        limit = self.config.max_request_body_size
        try:
            body = await _read_body(request, limit)
            body = _to_utf8(body, request.charset)
        except Refused as exc:
            obs.failed_request(exc.reason)
            return _error(503, str(exc), exc.headers)
        except BodyError as exc:
            reason = {413: "too_large", 415: "unsupported_encoding", 408: "timeout"}.get(
                exc.status, "bad_body")
            obs.failed_request(reason)
            return _error(exc.status, str(exc))

        builder = LogsBuilder(self.config, time.time_ns())
        await self._parse(builder, kind, body)
        n = builder.count
        if n == 0:
            return web.Response(body=b'{"accepted":0}', content_type="application/json")
        batch = Batch(Signal.LOGS, logs=builder.groups)
        try:
            await obs.deliver(self.consumer, batch)
        except RetryableError as exc:
            return _error(429 if exc.throttle else 503, sender_reason(exc),
                          retry_after_header(exc))
        except PermanentError as exc:
            return _error(400, sender_reason(exc))
        except Exception:  # counted and logged by deliver(); the sender may retry
            return _error(503, "internal error while delivering the logs", {"Retry-After": "1"})
        return web.Response(body=orjson.dumps({"accepted": n}), content_type="application/json")

    @staticmethod
    async def _parse(builder: LogsBuilder, kind: str, body: bytes) -> None:
        if body.startswith(codecs.BOM_UTF8):
            body = body[3:]
        if not body:
            return
        if kind == JSON:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None  # not one document: read it as NDJSON lines
            if type(doc) is list:
                for i in range(0, len(doc), CHUNK):
                    if i:
                        await asyncio.sleep(0)
                    builder.add_elements(doc[i:i + CHUNK])
                return
            if type(doc) is dict:
                builder.add_object(doc, None)
                return
        add = builder.add_text if kind == TEXT else builder.add_ndjson
        lines = body.split(b"\n")
        for i in range(0, len(lines), CHUNK):
            if i:
                await asyncio.sleep(0)  # stay responsive during very large requests
            add(lines[i:i + CHUNK])


def _create(settings: ReceiverCreateSettings, config: JsonLogsConfig) -> JsonLogsReceiver:
    return JsonLogsReceiver(settings, config)


factory = Factory(
    type="jsonlogs",
    kind=Kind.RECEIVER,
    config_model=JsonLogsConfig,
    create=_create,
    signals=frozenset({Signal.LOGS}),
    description="JSON (NDJSON, JSON arrays) and plain-text log lines over HTTP POST.",
)
