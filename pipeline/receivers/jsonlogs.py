"""The `jsonlogs` receiver: JSON and plain-text log lines over HTTP, as OTLP logs.

    POST /logs   (path configurable; default endpoint 0.0.0.0:8081)

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

Answers: 200 `{"accepted": N}` (an empty body accepts 0 records); a refusal by
the pipeline (RetryableError) 503, or 429 when it asks to throttle, with
Retry-After; PermanentError 400; body too large 413, undecodable 400,
unsupported content type or encoding 415 -- errors as `{"error": "..."}`. Each
request is delivered as one batch, acknowledged only after the pipeline took it.
"""

from __future__ import annotations

import asyncio
import codecs
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from pydantic import Field, field_validator, model_validator

from pipeline.component import (
    Component,
    CreateSettings,
    Factory,
    Host,
    Kind,
    Signal,
)
from pipeline.config.types import Endpoint
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import MAX_DEPTH, LogGroup, LogRecord, encode_groups
from pipeline.receivers.common import (
    Authenticator,
    BodyError,
    HTTPServer,
    HTTPServerSettings,
    ReceiverObs,
    auth_middleware,
    decompress,
    retry_after_header,
)

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
    endpoint: Endpoint = Field("0.0.0.0:8081", description="host:port to listen on.")
    path: str = Field("/logs", description="URL path that accepts POSTed logs.")
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
_TIME, _SEVERITY, _BODY, _TRACE, _SPAN, _SERVICE = range(6)

# ---------------------------------------------------------------------------------------
# Severity

_SEVERITY_WORDS = {
    "trace": 1, "trc": 1, "finest": 1, "verbose": 1,
    "finer": 2,
    "debug": 5, "dbg": 5, "fine": 5,
    "config": 7,
    "info": 9, "inf": 9, "information": 9, "informational": 9,
    "notice": 10,
    "warn": 13, "warning": 13, "wrn": 13,
    "error": 17, "err": 17, "eror": 17, "severe": 17, "dpanic": 17,
    "fatal": 21, "critical": 21, "crit": 21, "panic": 21,
    "alert": 22,
    "emerg": 24, "emergency": 24,
}
# Exact-match table with the usual spellings, so most levels cost one dict lookup.
_SEVERITY_EXACT: dict[str, int] = {}
for _w, _n in _SEVERITY_WORDS.items():
    _SEVERITY_EXACT[_w] = _SEVERITY_EXACT[_w.upper()] = _SEVERITY_EXACT[_w.capitalize()] = _n
_SYSLOG = (24, 22, 21, 17, 13, 10, 9, 5)  # 0 emerg .. 7 debug
_SHORT_NAMES = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def _numeric_severity(n: int) -> int:
    """OTLP severity number of a numeric level, or 0 if it is none we know."""
    if 0 <= n <= 7:
        return _SYSLOG[n]
    if 8 <= n <= 99:  # bunyan / pino: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal
        return 1 if n < 20 else 5 if n < 30 else 9 if n < 40 else 13 if n < 50 else \
            17 if n < 60 else 21
    return 0


def parse_severity(v: Any) -> tuple[int, str] | None:
    """(severity_number, severity_text) of a level value, or None if unusable."""
    t = type(v)
    if t is str:
        n = _SEVERITY_EXACT.get(v)
        if n is not None:
            return n, v
        word = v.strip().lower()
        n = _SEVERITY_WORDS.get(word)
        if n is not None:
            return n, v
        if word.isdigit():
            return _numeric_severity(int(word)), v
        return (0, v) if word else None
    if t is int or (t is float and v.is_integer()):
        num = _numeric_severity(int(v))
        if num > 0:
            return num, _SHORT_NAMES[(num - 1) // 4]
    return None


# ---------------------------------------------------------------------------------------
# Timestamps

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_UINT64 = 1 << 64
_DIGITS = "0123456789"


def _scale_int(v: int) -> int | None:
    if v <= 0:
        return None
    if v < 100_000_000_000:
        ns = v * 1_000_000_000
    elif v < 100_000_000_000_000:
        ns = v * 1_000_000
    elif v < 100_000_000_000_000_000:
        ns = v * 1000
    else:
        ns = v
    return ns if ns < _UINT64 else None


def _scale_float(v: float) -> int | None:
    if not v > 0 or v >= 1.8e19:  # also false for NaN
        return None
    if v < 1e11:
        mult = 1_000_000_000
    elif v < 1e14:
        mult = 1_000_000
    elif v < 1e17:
        mult = 1000
    else:
        return int(v) if v < _UINT64 else None
    whole = int(v)
    return whole * mult + round((v - whole) * mult)


def _parse_iso(s: str) -> int | None:
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        try:
            dt = datetime.fromisoformat(s.strip().upper())
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    ns = (dt - _EPOCH) // _MICROSECOND * 1000
    # datetime keeps microseconds; add the nanoseconds of longer fractions.
    dot = s.find(".", 14)
    if dot < 0:
        dot = s.find(",", 14)
    if dot > 0:
        frac = s[dot + 1:dot + 10]
        digits = len(frac) - len(frac.lstrip(_DIGITS))
        if digits > 6:
            ns += int(frac[6:digits].ljust(3, "0"))
    return ns if 0 < ns < _UINT64 else None


def parse_timestamp(v: Any) -> int | None:
    """Unix nanoseconds of a timestamp value, or None if it is not one."""
    t = type(v)
    if t is str:
        if len(v) >= 10 and v[4:5] == "-":
            return _parse_iso(v)
        s = v.strip()
        if s.isdigit():
            return _scale_int(int(s))
        try:
            f = float(s)
        except ValueError:
            return None
        return _scale_float(f)
    if t is int:
        return _scale_int(v)
    if t is float:
        return _scale_float(v)
    return None


def _hex_id(v: Any, size: int) -> bytes | None:
    if type(v) is str and len(v) == 2 * size:
        try:
            b = bytes.fromhex(v)
        except ValueError:
            return None
        if len(b) == size and b.count(0) != size:
            return b
    return None


# ---------------------------------------------------------------------------------------
# JSON values -> OTLP AnyValue (as dicts: upb builds the whole request from them in C,
# about twice as fast as constructing AnyValue/KeyValue objects one by one).

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class _Lit(str):
    """A piece of JSON text (as opposed to a string value) in `_dumps_deep`."""


def _dumps(v: Any) -> str:
    try:
        return orjson.dumps(v).decode()
    except orjson.JSONEncodeError:  # deeper than orjson writes (255 levels)
        return _dumps_deep(v)


def _dumps_deep(value: Any) -> str:
    """JSON text of arbitrarily deep data, without recursion."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is _Lit:
            out.append(v)
        elif t is dict:
            items = list(v.items())
            stack.append(_Lit("}"))
            for i in range(len(items) - 1, -1, -1):
                k, x = items[i]
                stack.append(x)
                stack.append(_Lit(orjson.dumps(str(k)).decode() + ":"))
                if i:
                    stack.append(_Lit(","))
            stack.append(_Lit("{"))
        elif t is list:
            stack.append(_Lit("]"))
            for i in range(len(v) - 1, -1, -1):
                stack.append(v[i])
                if i:
                    stack.append(_Lit(","))
            stack.append(_Lit("["))
        else:
            try:
                out.append(orjson.dumps(v).decode())
            except orjson.JSONEncodeError:
                out.append(orjson.dumps(str(v)).decode())
    return "".join(out)


def _any(v: Any, depth: int, max_depth: int) -> dict[str, Any]:
    """AnyValue (as a dict) of a JSON value; `depth` counts containers from the record."""
    t = type(v)
    if t is str:
        return {"string_value": v}
    if t is bool:
        return {"bool_value": v}
    if t is int:
        if _INT64_MIN <= v <= _INT64_MAX:
            return {"int_value": v}
        return {"string_value": str(v)}
    if t is float:
        return {"double_value": v}
    if t is dict:
        if depth > max_depth:
            return {"string_value": _dumps(v)}
        d = depth + 1
        return {"kvlist_value": {"values": [
            {"key": k, "value": _any(x, d, max_depth)} for k, x in v.items() if x is not None]}}
    if t is list:
        if depth > max_depth:
            return {"string_value": _dumps(v)}
        d = depth + 1
        return {"array_value": {"values": [_any(x, d, max_depth) for x in v]}}
    if v is None:
        return {}
    return {"string_value": str(v)}


def _limit_depth(v: Any, depth: int, max_depth: int) -> Any:
    """`v` with containers deeper than `max_depth` replaced by their JSON text (what `_any`
    does), as a Python value for pdata.logrecords (which applies the default limit, 31,
    itself: this is needed only for a lower `max_nesting_depth`)."""
    t = type(v)
    if t is dict:
        if depth > max_depth:
            return _dumps(v)
        d = depth + 1
        return {k: _limit_depth(x, d, max_depth) for k, x in v.items()}
    if t is list:
        if depth > max_depth:
            return _dumps(v)
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
                self._text(_dumps(el), None)

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
            # Python values as they are (pdata.logrecords encodes them as `_any` does)
            attrs[k] = v if not deep or type(v) in _SCALAR_TYPES else self._value(v)

        ts = sev_num = 0
        sev_text = ""
        body: Any = None
        trace_id = span_id = b""
        service: str | None = None
        if special is not None:
            if len(special) > 1:
                special.sort()  # by key precedence (unique), never compares further
            done = 0  # bit set of filled roles
            for (_, role), k, v in special:
                if v is None:
                    continue
                bit = 1 << role
                if not done & bit:
                    if role == _TIME:
                        parsed = parse_timestamp(v)
                        if parsed is not None:
                            ts, done = parsed, done | bit
                            continue
                    elif role == _SEVERITY:
                        sev = parse_severity(v)
                        if sev is not None:
                            (sev_num, sev_text), done = sev, done | bit
                            continue
                    elif role == _BODY:
                        body = self._value(v)
                        done |= bit
                        continue
                    elif role == _TRACE:
                        tid = _hex_id(v, 16)
                        if tid is not None:
                            trace_id, done = tid, done | bit
                            continue
                    elif role == _SPAN:
                        sid = _hex_id(v, 8)
                        if sid is not None:
                            span_id, done = sid, done | bit
                            continue
                    elif type(v) is str and v:  # _SERVICE
                        service, done = v, done | bit
                        continue
                attrs[k] = self._value(v)
        if extra:
            attrs.update(extra)
        lr = LogRecord(body, attrs, self.observed)
        if ts:
            lr.time_unix_nano = ts
        if sev_text or sev_num:
            lr.severity_number = sev_num
            lr.severity_text = sev_text
        if trace_id:
            lr.trace_id = trace_id
        if span_id:
            lr.span_id = span_id
        self._records(service).append(lr)
        self.count += 1


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line[-1:] == b"\r" else line


# ---------------------------------------------------------------------------------------
# HTTP


def _error(status: int, message: str, headers: Any = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"error": message}),
                        content_type="application/json", headers=headers)


def _unauthorized(request: web.Request, reason: str) -> web.Response:
    return _error(401, reason)


async def _read_body(request: web.Request, limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise BodyError(413, f"request body of {length} bytes exceeds the limit of {limit} bytes")
    buf = bytearray()
    async for chunk in request.content.iter_any():
        buf += chunk
        if len(buf) > limit:
            raise BodyError(413, f"request body exceeds the limit of {limit} bytes")
    return bytes(buf)


def _to_utf8(body: bytes, charset: str | None) -> bytes:
    if not charset or charset.lower() in _UTF8_NAMES:
        return body
    try:
        codecs.lookup(charset)
    except LookupError:
        raise BodyError(415, f"unsupported charset {charset!r}") from None
    return body.decode(charset, errors="replace").encode()


class JsonLogsReceiver(Component):
    def __init__(self, settings: CreateSettings, config: JsonLogsConfig):
        self.config = config
        self.log = settings.logger
        self.consumer = settings.consumers[Signal.LOGS]
        self.obs = ReceiverObs(settings, "http")
        self._server: HTTPServer | None = None
        self.auth = Authenticator(config.auth, settings, "http") \
            if config.auth is not None else None

    async def start(self, host: Host) -> None:
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
            ssl_context=cfg.tls.ssl_context() if cfg.tls is not None else None)
        await self._server.start()

    async def shutdown(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None
        if self.auth is not None:
            await self.auth.stop()

    async def handle(self, request: web.Request) -> web.Response:
        obs = self.obs
        kind = CONTENT_TYPES.get(request.content_type)
        if kind is None:
            obs.failed_request("unsupported_media_type")
            return _error(415, f"unsupported Content-Type {request.content_type!r}; send "
                               "application/x-ndjson, application/json or text/plain")
        limit = self.config.max_request_body_size
        try:
            body = await _read_body(request, limit)
            body = decompress(body, request.headers.get("Content-Encoding", ""), limit)
            body = _to_utf8(body, request.charset)
        except BodyError as exc:
            reason = {413: "too_large", 415: "unsupported_encoding"}.get(exc.status, "bad_body")
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
            return _error(429 if exc.throttle else 503, str(exc), retry_after_header(exc))
        except PermanentError as exc:
            return _error(400, str(exc))
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


def _create(settings: CreateSettings, config: JsonLogsConfig) -> JsonLogsReceiver:
    return JsonLogsReceiver(settings, config)


factory = Factory(
    type="jsonlogs",
    kind=Kind.RECEIVER,
    config_model=JsonLogsConfig,
    create=_create,
    signals=frozenset({Signal.LOGS}),
    description="JSON (NDJSON, JSON arrays) and plain-text log lines over HTTP POST.",
)
