"""Numbers of 4,301+ digits (past the interpreter's int-string limit, where `int()` raises
`ValueError: Exceeds the limit (4300 digits)`) in every place a parser converts text to a
number. Found by the fuzz test (order-dependent: the Hypothesis database replayed a
`'0' * 4301` line); here deterministic. What they become: a JSON number past a double's
range stays a string with its exact text, a longer integer within it a float (orjson's
rule); a digit run of more than 20 characters where a parser expects an int (pid, size,
status, grok `:int`) stays a string; as a timestamp or level it is not one."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.processors.logstruct.bounds import CONFIGS
from tests.unit.processors.logstruct.helpers import Mode, batch_of, make, records

N = "9" * 4301
ZEROS = "0" * 4301
TS = 1709294400000000000  # 2024-03-01T12:00:00Z

#: line -> (config, expected attributes, expected time, expected body)
CASES: dict[str, tuple[str, str, dict[str, Any], int | None, str | None]] = {
    "json int": ("auto", '{"msg":"a","n":#}'.replace('#', N), {"n": N}, 0, "a"),
    "json beyond double": ("json", '{"msg":"a","n":1e999,"m":-#.5,"k":[#,1]}'.replace('#', N),
                           {"n": "1e999", "m": "-" + N + ".5", "k": [N, 1]}, 0, "a"),
    "json 400 digits is a float": ("json", '{"msg":"a","n":1#}'.replace("#", "0" * 300),
                                   {"n": 1e300}, 0, "a"),
    "json 2^64 is a string": ("json", '{"msg":"a","n":18446744073709551615}',
                              {"n": "18446744073709551615"}, 0, "a"),
    "json timestamp text": ("auto", '{"ts":"#","msg":"a"}'.replace('#', N), {"ts": N}, 0, "a"),
    "json level": ("auto", '{"level":"#","msg":"a"}'.replace('#', N), {}, 0, "a"),
    "docker inner json": ("container",
                          '{"log":"{\\"msg\\":\\"a\\",\\"n\\":#}\\n","stream":"stdout",'
                          '"time":"2024-03-01T12:00:00Z"}'.replace('#', N),
                          {"log.iostream": "stdout", "n": N}, TS, "a"),
    "docker extra key": ("container",
                         '{"log":"hi\\n","stream":"stdout","time":"2024-03-01T12:00:00Z",'
                         '"n":1e999}', {"log.iostream": "stdout", "docker.n": "1e999"}, TS, "hi"),
    "cri logfmt": ("auto", "2024-03-01T12:00:00Z stderr F level=warn n=#".replace('#', N),
                   {"log.iostream": "stderr", "n": N}, TS, "level=warn n=" + N),
    "access size": ("auto", '10.0.0.1 - bob [01/Mar/2024:12:00:00 +0000] "GET /a HTTP/1.1" '
                            '200 # "-" "curl/8"'.replace('#', N),
                    {"client.address": "10.0.0.1", "user.name": "bob",
                     "http.request.method": "GET", "url.path": "/a",
                     "network.protocol.name": "http", "network.protocol.version": "1.1",
                     "http.response.status_code": 200, "http.response.body.size": N,
                     "user_agent.original": "curl/8"}, TS, None),
    "syslog procid": ("syslog", "<34>1 2024-03-01T12:00:00Z host su # ID47 - msg".replace('#', N),
                      {"syslog.facility": 4, "syslog.version": 1, "host.name": "host",
                       "process.executable.name": "su", "process.pid": N,
                       "syslog.msgid": "ID47"}, TS, "msg"),
    "klog thread": ("klog", 'I0301 12:00:00.000000    # main.go:42] "started" n=#'.replace('#', N),
                    {"thread.id": N, "code.file.path": "main.go", "code.line.number": 42,
                     "n": N}, None, "started"),
    "logfmt ts": ("logfmt", "level=info ts=# msg=a".replace('#', N), {"ts": N}, 0, "a"),
    "grok int": ("grok_combined", '10.0.0.1 - bob [01/Mar/2024:12:00:00 +0000] "GET /a '
                                  'HTTP/1.1" 200 # "-" "curl/8"'.replace('#', N),
                 {"client.address": "10.0.0.1", "user.name": "bob",
                  "http.request.method": "GET", "url.path": "/a",
                  "network.protocol.version": "1.1", "http.response.status_code": 200,
                  "http.response.body.size": N, "user_agent.original": "curl/8"}, TS, None),
    "bare zeros": ("auto", ZEROS, {"log.parse_error": "unrecognised format"}, 0, ZEROS),
    "superscript digit": ("auto", '{"status":"\u00b2","msg":"a"}',
                          {"http.response.status_code": "\u00b2"}, 0, "a"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_big_numbers_parse_without_error(name: str, mode: Mode) -> None:
    cfg, line, attrs, time_ns, body = CASES[name]
    proc = make(CONFIGS[cfg])
    b = batch_of(mode, [line])
    proc.process(b)
    (rec,) = records(b)
    assert rec["attributes"] == attrs
    if time_ns is not None:
        assert rec["time_unix_nano"] == time_ns
    if body is not None:
        assert rec["body"] == body
    else:
        assert rec["body"] == line


@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
def test_no_parser_raises_on_a_digit_run(cfg_name: str, mode: Mode) -> None:
    """Every parser type, every case line and a bare 4,301-digit run: no `parser failed`."""
    proc = make(CONFIGS[cfg_name])
    lines = [c[1] for c in CASES.values()] + [ZEROS, N, "-" + N, N + ".5", "level=" + N]
    b = batch_of(mode, lines)
    proc.process(b)
    recs = records(b)
    assert len(recs) == len(lines)
    failed = [r["attributes"]["log.parse_error"] for r in recs
              if r["attributes"].get("log.parse_error", "").startswith("parser failed")]
    assert failed == []
