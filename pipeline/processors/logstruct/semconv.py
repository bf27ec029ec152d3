"""Field names: which parsed field takes which role, and semantic-convention renames.

A field name (after the `rename` map and, with `semconv: true`, `DEFAULT_SEMCONV`)
either has a role in the record (`ROLE_KEYS`: time, level, body, trace context,
request target) or becomes an attribute of that name.
"""

from __future__ import annotations

__all__ = [
    "ATTR",
    "BODY",
    "DASH_MEANS_NONE",
    "DEFAULT_SEMCONV",
    "FLAGS",
    "INT_ATTRS",
    "LEVEL",
    "ROLE_KEYS",
    "SPAN",
    "TARGET",
    "TIME",
    "TRACE",
    "TRACEPARENT",
    "Plan",
]

#: Roles of a field in the record.
TIME, LEVEL, BODY, TRACE, SPAN, FLAGS, TRACEPARENT, TARGET, ATTR = range(9)

ROLE_KEYS: dict[str, int] = {
    "timestamp": TIME, "time": TIME, "ts": TIME, "@timestamp": TIME, "datetime": TIME,
    "level": LEVEL, "severity": LEVEL, "lvl": LEVEL, "loglevel": LEVEL, "log.level": LEVEL,
    "message": BODY, "msg": BODY,
    "trace_id": TRACE, "traceId": TRACE, "trace.id": TRACE, "traceid": TRACE,
    "span_id": SPAN, "spanId": SPAN, "span.id": SPAN, "spanid": SPAN,
    "trace_flags": FLAGS, "traceFlags": FLAGS, "trace.flags": FLAGS,
    "traceparent": TRACEPARENT,
    "request": TARGET, "request_uri": TARGET, "uri": TARGET,
}

#: Field names renamed to OpenTelemetry semantic conventions when `semconv: true`.
DEFAULT_SEMCONV: dict[str, str] = {
    # client / network
    "client_ip": "client.address", "clientip": "client.address", "remote_addr": "client.address",
    "remote_ip": "client.address", "client_addr": "client.address", "client": "client.address",
    "client_port": "client.port", "remote_port": "client.port",
    "httpversion": "network.protocol.version", "http_version": "network.protocol.version",
    "protocol_version": "network.protocol.version",
    # HTTP
    "method": "http.request.method", "verb": "http.request.method",
    "request_method": "http.request.method", "http_method": "http.request.method",
    "path": "url.path", "request_path": "url.path", "uri_path": "url.path",
    "query": "url.query", "query_string": "url.query", "querystring": "url.query",
    "status": "http.response.status_code", "status_code": "http.response.status_code",
    "response": "http.response.status_code", "http_status": "http.response.status_code",
    "response_code": "http.response.status_code",
    "bytes": "http.response.body.size", "body_bytes_sent": "http.response.body.size",
    "response_size": "http.response.body.size", "size": "http.response.body.size",
    "referrer": "http.request.header.referer", "referer": "http.request.header.referer",
    "http_referer": "http.request.header.referer",
    "agent": "user_agent.original", "user_agent": "user_agent.original",
    "useragent": "user_agent.original", "http_user_agent": "user_agent.original",
    "auth": "user.name", "remote_user": "user.name", "user": "user.name",
    # process / host / code
    "pid": "process.pid", "process_id": "process.pid", "procid": "process.pid",
    "tid": "thread.id", "thread_id": "thread.id", "threadid": "thread.id",
    "thread": "thread.name", "thread_name": "thread.name",
    "host": "host.name", "hostname": "host.name", "logsource": "host.name",
    "program": "process.executable.name", "appname": "process.executable.name",
    "logger": "log.logger", "logger_name": "log.logger", "component": "log.logger",
    "file": "code.file.path", "caller_file": "code.file.path",
    "line": "code.line.number", "lineno": "code.line.number",
    "func": "code.function.name", "function": "code.function.name",
    "stacktrace": "exception.stacktrace", "stack_trace": "exception.stacktrace",
}

#: Attributes that are integers by convention: numeric strings are converted.
INT_ATTRS = frozenset({
    "http.response.status_code", "http.response.body.size", "process.pid", "thread.id",
    "code.line.number", "client.port", "syslog.facility", "syslog.version",
})

#: Attributes for which `-` means "no value" (access-log convention): left out.
DASH_MEANS_NONE = frozenset({
    "ident", "user.name", "http.request.header.referer", "user_agent.original",
    "http.response.status_code", "http.response.body.size", "client.address",
})

#: (role, attribute name, int attribute, field name, plain: store the value as it is)
Plan = tuple[int, str, bool, str, bool]
