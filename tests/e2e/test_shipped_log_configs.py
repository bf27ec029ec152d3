"""The shipped configs/filelog.yaml and configs/logstruct.yaml end to end, as a user runs
them. filelog.yaml: a real `otelpipe run` tails one folder holding a Python app log
with chained tracebacks, a Java app log with a `Caused by:` stack trace and an nginx
access log (the stack-trace fixtures were captured from the real runtimes,
tests/unit/processors/logstruct/stacktraces). Exact records out of the file exporter:
one per access line (multiline applies to the app group only), one per app log line
with its stack trace kept in the body, and exception.type / exception.message /
exception.stacktrace where there is one. logstruct.yaml: the same records as a log
shipper forwards them (NDJSON to `jsonlogs`, each joined record one `message`), a
Node.js log and a Go panic too, and the access lines as text/plain."""

from __future__ import annotations

import re
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from tests.support import OtelpipeProcess, eventually, free_port

REPO = Path(__file__).parents[2]
TRACES = REPO / "tests" / "unit" / "processors" / "logstruct" / "stacktraces"
ACCESS = [f'10.0.0.{i} - - [06/Dec/2026:13:00:{i:02d} +0000] "GET /items/{i}?page=2 HTTP/1.1" '
          f'{500 if i % 5 == 0 else 200} {1000 + i} "-" "curl/8.5.0"' for i in range(1, 21)]
_START = re.compile(r"\n(?=\d{4}-\d\d-\d\d[ T])")
_HEAD = re.compile(r"(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)[,.](\d{3}) (\w+) \[([^\]]*)\] "
                   r"([\w.$]+): ")


def app_records(name: str) -> list[dict[str, Any]]:
    """What each record of an app log fixture must become."""
    out = []
    for rec in _START.split((TRACES / name).read_text().rstrip("\n")):
        m = _HEAD.match(rec)
        assert m is not None, rec
        day, hms, ms, level, thread, logger = m.groups()
        out.append({"time": f"{day}T{hms}.{ms}000000Z", "severity_text": level,
                    "body": rec[m.end():], "thread.name": thread, "log.logger": logger,
                    "log.file.name": name.replace("python_logging", "app")
                    .replace("java_app", "shop")})
    return out


def test_shipped_filelog_config_on_a_mixed_folder(tmp_path: Path) -> None:
    logs, data = tmp_path / "logs", tmp_path / "data"
    logs.mkdir()
    health = free_port()
    env = {"OTELPIPE_LOG_GLOB": str(logs / "*.log"), "OTELPIPE_STATE_DIR": str(tmp_path / "st"),
           "OTELPIPE_DATA_DIR": str(data), "OTELPIPE_HEALTH_ENDPOINT": f"127.0.0.1:{health}",
           "OTELPIPE_SERVICE_NAME": "shop"}
    proc = OtelpipeProcess(REPO / "configs" / "filelog.yaml", tmp_path, env=env,
                           wait_ports=(health,)).start()
    try:
        # start_at: end applies to files present at the first start; these come later
        # and are read from their beginning, as a deployment finds new files. (The
        # health port listens before the receivers start: wait for the service.)
        eventually(lambda: "otelpipe started" in proc.logs(), what="otelpipe started")
        shutil.copy(TRACES / "python_logging.log", logs / "app.log")
        shutil.copy(TRACES / "java_app.log", logs / "shop.log")
        (logs / "access.log").write_text("\n".join(ACCESS) + "\n")
        out = data / "logs.jsonl"
        want = 5 + 3 + len(ACCESS)

        def count() -> int:
            return len(out.read_bytes().splitlines()) if out.exists() else 0

        eventually(lambda: count() >= want, timeout=30, what=f"{want} records")
    finally:
        assert proc.stop() == 0, proc.logs()
    got = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(got) == want, [g["body"][:60] for g in got]
    by_file: dict[str, list[dict[str, Any]]] = {}
    for g in got:
        assert g["service.name"] == "shop"
        assert "log.parse_error" not in g, g
        by_file.setdefault(g["log.file.name"], []).append(g)

    # nginx: one record per line, parsed.
    web = by_file["access.log"]
    assert [g["body"] for g in web] == ACCESS
    for i, g in enumerate(web, 1):
        assert g["time"] == f"2026-12-06T13:00:{i:02d}.000000000Z"
        assert (g["client.address"], g["http.request.method"], g["url.path"], g["url.query"],
                g["http.response.status_code"], g["http.response.body.size"],
                g["user_agent.original"]) == (
            f"10.0.0.{i}", "GET", f"/items/{i}", "page=2", 500 if i % 5 == 0 else 200,
            1000 + i, "curl/8.5.0")
        assert not any(k.startswith("exception.") for k in g)

    # The app logs: one record per log line, the stack trace in it.
    for name, fixture in (("app.log", "python_logging.log"), ("shop.log", "java_app.log")):
        expected = app_records(fixture)
        recs = by_file[name]
        assert [r["body"] for r in recs] == [e["body"] for e in expected]
        for r, e in zip(recs, expected, strict=True):
            assert {k: r.get(k) for k in e} == e
    py = by_file["app.log"]
    assert [(r.get("exception.type"), r.get("exception.message")) for r in py] == [
        (None, None), ("PaymentError", "cannot charge cart 42"), (None, None),
        ("KeyError", "'fallback'"), (None, None)]
    for r in (py[1], py[3]):
        assert r["exception.stacktrace"] == r["body"][r["body"].index("Traceback"):]
    assert "\nThe above exception was the direct cause" in py[1]["exception.stacktrace"]
    assert "\nDuring handling of the above exception" in py[3]["exception.stacktrace"]
    java = by_file["shop.log"]
    assert [(r.get("exception.type"), r.get("exception.message")) for r in java] == [
        (None, None), ("java.lang.IllegalStateException", "order failed: sku=A-1"),
        (None, None)]
    st = java[1]["exception.stacktrace"]
    assert st == java[1]["body"][java[1]["body"].index("java.lang."):]
    assert "\nCaused by: java.io.IOException: stock file missing for A-1\n" in st
    assert st.endswith("\t... 9 more")
    # Templates come from the log line, not from the stack trace.
    assert py[1]["log.template"] == "checkout failed for order <*>"
    assert java[1]["log.template"] == "checkout failed"


def _post(port: int, body: bytes, content_type: str) -> dict[str, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/logs", data=body,
                                 headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict[str, Any] = orjson.loads(resp.read())
    return result


def test_shipped_logstruct_config_on_forwarded_records(tmp_path: Path) -> None:
    jsonlogs, grpc, http = free_port(), free_port(), free_port()
    data = tmp_path / "data"
    env = {"OTELPIPE_DATA_DIR": str(data),
           "OTELPIPE_JSONLOGS_ENDPOINT": f"127.0.0.1:{jsonlogs}",
           "OTELPIPE_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc}",
           "OTELPIPE_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{http}"}
    py = app_records("python_logging.log")
    java = app_records("java_app.log")
    node = _START.split((TRACES / "node_logged.txt").read_text().rstrip("\n"))
    go_log, go_panic = (TRACES / "go_panic.txt").read_text().rstrip("\n").split("\n", 1)
    texts = [*(_START.split((TRACES / f).read_text().rstrip("\n"))
               for f in ("python_logging.log", "java_app.log"))]
    sent = [*texts[0], *texts[1], *node, go_log, go_panic]
    proc = OtelpipeProcess(REPO / "configs" / "logstruct.yaml", tmp_path, env=env,
                           wait_ports=(jsonlogs, http)).start()
    try:
        body = b"\n".join(orjson.dumps({"message": t}) for t in sent)
        assert _post(jsonlogs, body, "application/x-ndjson") == {"accepted": len(sent)}
        assert _post(jsonlogs, ("\n".join(ACCESS) + "\n").encode(), "text/plain") == {
            "accepted": len(ACCESS)}
        out = data / "logs.json"
        want = len(sent) + len(ACCESS)

        def count() -> int:
            return len(out.read_bytes().splitlines()) if out.exists() else 0

        eventually(lambda: count() >= want, timeout=30, what=f"{want} records")
    finally:
        assert proc.stop() == 0, proc.logs()
    got = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(got) == want
    by_body = {g["body"]: g for g in got}
    assert len(by_body) == want
    # Python and Java app logs: parsed by the config's grok, the stack kept.
    for e in (*py, *java):
        g = by_body[e["body"]]
        assert {k: g.get(k) for k in e if k != "log.file.name"} == {
            k: v for k, v in e.items() if k != "log.file.name"}
    exc = {(g.get("exception.type"), g.get("exception.message")) for g in got
           if "exception.type" in g}
    assert exc == {("PaymentError", "cannot charge cart 42"), ("KeyError", "'fallback'"),
                   ("java.lang.IllegalStateException", "order failed: sku=A-1"),
                   ("TypeError", "Cannot read properties of undefined (reading 'items')"),
                   ("Error", "cannot price order 7"),
                   ("runtime.Error", "runtime error: index out of range [5] with length 3")}
    # Node.js: the automatic text-header detection, the stack kept in the body.
    g = by_body["checkout failed\n" + node[2].split("\n", 1)[1]]
    assert (g["severity_text"], g["exception.type"]) == ("error", "Error")
    assert g["exception.stacktrace"] == node[2][node[2].index("Error: cannot"):]
    # The Go panic: no format knows it (log.parse_error), the exception is still found.
    g = by_body[go_panic]
    assert g["log.parse_error"] == "unrecognised format"
    assert g["exception.stacktrace"] == go_panic.removesuffix("exit status 2").rstrip()
    day, hms, message = go_log.split(" ", 2)  # Go's log package: 2026/12/06 13:39:20 msg
    assert by_body[message]["time"] == f"{day.replace('/', '-')}T{hms}.000000000Z"
    # Access lines: one record each, parsed.
    for i, line in enumerate(ACCESS, 1):
        g = by_body[line]
        assert (g["client.address"], g["http.response.status_code"], g["url.path"]) == (
            f"10.0.0.{i}", 500 if i % 5 == 0 else 200, f"/items/{i}")
        assert not any(k.startswith("exception.") for k in g)
