"""Generated log lines of several formats (the shapes `benchmarks/logstruct_throughput.py`
measures), for tests that compare two parsing paths on varied input."""

from __future__ import annotations

import random
import time

_METHODS = ("GET", "GET", "GET", "POST", "PUT", "DELETE")
_PATHS = ("/api/v1/items/{}", "/api/v1/users/{}/orders", "/static/app.{}.js", "/health",
          "/search?q=term{}&page=2")
_UAS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0 Safari/537.36",
        "curl/8.5.0", "Go-http-client/1.1",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15")
_LEVELS = ("info", "info", "info", "debug", "warn", "error")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MESSAGES = ("request completed in {} ms", "user {} logged in from 10.1.{}.7",
             "cache miss for key item:{}", "connection to db-{} closed after {} queries",
             "retrying job {} (attempt {})")


def _iso(i: int) -> str:
    s = 1714564800 + i // 50
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{(i * 7) % 1000:03d}Z"


def _msg(r: random.Random, i: int) -> str:
    return r.choice(_MESSAGES).format(i % 9973, r.randint(1, 50))


def line_json(r: random.Random, i: int) -> str:
    return (f'{{"ts":"{_iso(i)}","level":"{r.choice(_LEVELS)}","msg":"{_msg(r, i)}",'
            f'"service":"api","method":"{r.choice(_METHODS)}",'
            f'"path":"{r.choice(_PATHS).format(i % 1000)}",'
            f'"status":{r.choice((200, 200, 201, 404, 500))},'
            f'"duration_ms":{r.random() * 200:.1f},"trace_id":"{r.getrandbits(128) | 1:032x}",'
            f'"span_id":"{r.getrandbits(64) | 1:016x}"}}')


def line_logfmt(r: random.Random, i: int) -> str:
    return (f'ts={_iso(i)} level={r.choice(_LEVELS)} msg="{_msg(r, i)}" service=api '
            f'method={r.choice(_METHODS)} path={r.choice(_PATHS).format(i % 1000)} '
            f'status={r.choice((200, 201, 404, 500))} duration={r.randint(1, 900)}ms')


def _clf_time(i: int) -> str:
    t = time.gmtime(1714564800 + i // 50)
    return f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:" \
           f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def line_nginx(r: random.Random, i: int) -> str:
    ip = f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    return (f'{ip} - - [{_clf_time(i)}] "{r.choice(_METHODS)} '
            f'{r.choice(_PATHS).format(i % 1000)} HTTP/1.1" {r.choice((200, 200, 304, 404, 500))} '
            f'{r.randint(0, 50000)} "-" "{r.choice(_UAS)}"')


def line_syslog(r: random.Random, i: int) -> str:
    t = time.gmtime(1714564800 + i // 50)
    prog, text = r.choice((
        ("sshd", "Accepted password for user{} from 10.0.{}.2 port 22 ssh2"),
        ("CRON", "(root) CMD (run-parts /etc/cron.hourly {} {})"),
        ("kernel", "eth0: link up, {} Mbps, full duplex, lpa {}"),
        ("systemd", "Started Session {} of user u{}.")))
    return (f"<{r.choice((13, 30, 34, 86))}>{_MONTHS[t.tm_mon - 1]} {t.tm_mday:2d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} host{i % 5} {prog}[{1000 + i % 300}]: "
            + text.format(i % 997, r.randint(1, 99)))


def line_app(r: random.Random, i: int) -> str:
    return (f"{_iso(i).replace('T', ' ')[:23]} {r.choice(_LEVELS).upper()} "
            f"[{r.choice(('main', 'worker-1', 'db-pool'))}] {_msg(r, i)}")


def line_mixed(r: random.Random, i: int) -> str:
    return (line_json, line_logfmt, line_nginx, line_syslog, line_app)[i % 5](r, i)


def line_java(r: random.Random, i: int) -> str:
    return (f"{_iso(i)[:23]}  {r.choice(('INFO', 'WARN', 'ERROR'))} 1 --- "
            f"[nio-8080-exec-{i % 10}] c.e.d.{r.choice(('OrderService', 'UserController'))} : "
            + _msg(r, i))


def line_apache_error(r: random.Random, i: int) -> str:
    t = time.gmtime(1714564800 + i // 50)
    stamp = (f"{('Mon', 'Tue', 'Wed')[i % 3]} {_MONTHS[t.tm_mon - 1]} {t.tm_mday:02d} "
             f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{i % 999999:06d} {t.tm_year}")
    return (f"[{stamp}] [core:error] [pid {100 + i % 50}] [client 10.0.0.{i % 250}:"
            f"{30000 + i % 999}] AH00126: Invalid URI in request "
            + r.choice(_PATHS).format(i))


def line_grok(r: random.Random, i: int) -> str:
    return (line_nginx, line_syslog, line_app, line_java, line_apache_error)[i % 5](r, i)


GROK_PATTERNS = [  # SYSLOGLINE last: its timestamp alternatives also take ISO stamps
    "%{HTTPD_COMBINEDLOG}",
    r"^%{TIMESTAMP_ISO8601:timestamp} %{LOGLEVEL:level} \[%{DATA:component}\] "
    r"%{GREEDYDATA:message}",
    r"^%{TIMESTAMP_ISO8601:timestamp}\s+%{LOGLEVEL:level} %{NUMBER:pid} --- "
    r"\[%{DATA:thread}\] %{NOTSPACE:logger}\s+: %{GREEDYDATA:message}",
    r"^\[%{HTTPDERROR_DATE:timestamp}\] \[%{WORD:module}:%{LOGLEVEL:level}\] "
    r"\[pid %{POSINT:pid}\] \[client %{IP:client}:%{POSINT:port}\] %{GREEDYDATA:message}",
    r"%{SYSLOGLINE}",
]
