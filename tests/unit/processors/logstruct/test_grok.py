from __future__ import annotations

import pytest

from pipeline.processors.logstruct.grok import PATTERNS, GrokError, compile_grok, unquote


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_library_pattern_compiles(name: str) -> None:
    compile_grok("%{" + name + "}")


@pytest.mark.parametrize(("pattern", "text", "fields"), [
    ("%{IPV4:ip}", "addr 192.168.0.255 end", {"ip": "192.168.0.255"}),
    ("^%{IPV6:ip}$", "2001:db8::ff00:42:8329", {"ip": "2001:db8::ff00:42:8329"}),
    ("^%{IP:ip}$", "::1", {"ip": "::1"}),
    ("^%{HOSTNAME:h}$", "web-1.example.com", {"h": "web-1.example.com"}),
    ("%{UUID:u}", "id=123e4567-e89b-12d3-a456-426614174000",
     {"u": "123e4567-e89b-12d3-a456-426614174000"}),
    ("^%{TIMESTAMP_ISO8601:t}", "2024-03-01T12:00:00.123+02:00 x",
     {"t": "2024-03-01T12:00:00.123+02:00"}),
    ("^%{HTTPDATE:t}$", "10/Oct/2000:13:55:36 -0700", {"t": "10/Oct/2000:13:55:36 -0700"}),
    ("^%{SYSLOGTIMESTAMP:t}", "Jun  4 15:16:01 host", {"t": "Jun  4 15:16:01"}),
    ("^%{LOGLEVEL:l} ", "WARNING disk", {"l": "WARNING"}),
    ("^%{NUMBER:n:float} %{INT:i:int}$", "-3.5 42", {"n": -3.5, "i": 42}),
    ("^%{WORD:w} %{NOTSPACE:ns} %{GREEDYDATA:rest}$", "abc d/e:f the rest",
     {"w": "abc", "ns": "d/e:f", "rest": "the rest"}),
    ("^%{QS:q}$", '"say \\"hi\\""', {"q": 'say "hi"'}),
    ("^%{URIPATH:p}%{URIPARAM:q}?$", "/a/b.html?x=1", {"p": "/a/b.html", "q": "?x=1"}),
    ("^(?<custom>[a-z]+)-%{INT:n:int}$", "abc-7", {"custom": "abc", "n": 7}),
])
def test_patterns_match(pattern: str, text: str, fields: dict[str, object]) -> None:
    gp = compile_grok(pattern)
    m = gp.regex.search(text)
    assert m is not None
    got: dict[str, object] = {}
    for (name, conv), v in zip(gp.fields, m.groups(), strict=True):
        if v is None:
            continue
        if conv == "int":
            got[name] = int(v)
        elif conv == "float":
            got[name] = float(v)
        elif conv == "unquote":
            got[name] = unquote(v)
        else:
            got[name] = v
    assert got == fields


def test_syslogline_and_combined_fields() -> None:
    gp = compile_grok("%{SYSLOGLINE}")
    names = [n for n, _ in gp.fields]
    assert {"timestamp", "logsource", "program", "pid", "message"} <= set(names)
    gp = compile_grok("%{HTTPD_COMBINEDLOG}")
    assert [n for n, _ in gp.fields][:3] == ["clientip", "ident", "auth"]
    assert dict(gp.fields)["agent"] == "unquote"


def test_user_definitions_and_errors() -> None:
    gp = compile_grok("%{ORDER:o}", {"ORDER": "ORD-%{INT}"})
    m = gp.regex.search("x ORD-12 y")
    assert m is not None
    assert m.group(1) == "ORD-12"
    with pytest.raises(GrokError, match=r"unknown grok pattern %\{NOPE\}"):
        compile_grok("%{NOPE}")
    with pytest.raises(GrokError, match="refers to itself"):
        compile_grok("%{A}", {"A": "x%{A}"})
    with pytest.raises(GrokError, match="invalid grok expression"):
        compile_grok("%{INT:n}(")
