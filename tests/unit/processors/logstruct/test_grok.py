from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.processors.logstruct.grok import PATTERNS, GrokError, compile_grok, unquote
from tests.unit.processors.logstruct.bounds import BOUND_S, assert_linear, best_of


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


# -- bounded work (issue 11) --------------------------------------------------------------

#: A line of each commonly used top-level pattern: hostile lines are a prefix of it (the
#: part a pattern gets through) followed by a long run of one fragment.
SAMPLES = {
    "COMBINEDAPACHELOG": '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" '
                         '200 2326 "http://x.com/s.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"',
    "COMMONAPACHELOG": '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /a.gif HTTP/1.0" '
                       '200 2326',
    "SYSLOGLINE": "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; uid=0",
    "SYSLOGBASE": "Jun 14 15:16:01 <1.2> combo sshd[19939]: x",
    "SYSLOG5424LINE": '<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 '
                      '[exampleSDID@32473 iut="3"] msg',
    "HTTPD_ERRORLOG": "[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328] "
                      "(13)Permission denied: [client 72.15.99.187:1] AH00128: File: /x",
    "URI": "https://user:pw@www.example.com:8080/a/b.html?x=1&y=2",
    "EMAILADDRESS": "john.doe@mail.example.com",
    "JAVACLASS": "org.apache.hadoop.Foo",
    "TIMESTAMP_ISO8601": "2024-03-01T12:00:00.123+02:00",
}
FRAGMENTS = ["a.", "a", "1:", " ", "%", "]", '\\"', "\\a", "-", "/a", "::", ". ", "[a"]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_top_level_patterns_linear_on_hostile_lines(name: str) -> None:
    """Anchored (as the grok parser matches), no library pattern backtracks more than
    linearly, whatever follows a prefix it gets through: 40 KB within the bound."""
    match = compile_grok("%{" + name + "}").regex.match
    sample = SAMPLES[name]
    for cut in sorted({0, len(sample) // 3, 2 * len(sample) // 3, len(sample) - 1}):
        for frag in FRAGMENTS:
            def timed(n: int, clock: Callable[[], float] = time.process_time,
                      head: str = sample[:cut], frag: str = frag) -> float:
                text = head + frag * (n // len(frag)) + "!"
                return best_of(lambda: match(text), 3, clock)

            assert_linear(timed, what=f"{name} {sample[:cut]!r} + {frag!r}")
            assert timed(40_000) < BOUND_S


def test_logstash_ambiguities_removed() -> None:
    """Two library patterns went super-linear even anchored: URIPROTO `[A-Za-z]([A-Za-z0-9+
    \\-.]+)+` is exponential on a long word not followed by `://` (30 letters: 25 s), and
    SYSLOG5424SD `\\[%{DATA}\\]+` quadratic on `[` and a run of `]`."""
    uri = compile_grok("%{URI}").regex.match
    line = "<34>1 2003-10-11T22:14:15.003Z host app - ID47 [" + "]" * 40_000 + "!"
    sd = compile_grok("%{SYSLOG5424LINE}").regex.match
    for match, text in ((uri, "a" * 40_000), (uri, "a" * 30 + "!"), (sd, line)):
        assert best_of(partial(match, text)) < BOUND_S
    m = sd('<34>1 2003-10-11T22:14:15.003Z host su - ID47 [a x="1"][b y="]"]] the msg')
    assert m is not None
    gp = compile_grok("%{SYSLOG5424LINE}")
    got = dict(zip([n for n, _ in gp.fields], m.groups(), strict=True))
    assert got["syslog.structured_data"] == '[a x="1"][b y="]"]]'
    assert got["message"] == "the msg"


_LOGSTASH = {"URIPROTO": r"[A-Za-z](?:[A-Za-z0-9+\-.]+)+", "SYSLOG5424SD": r"\[.*?\]+"}


@pytest.mark.parametrize(("name", "follow"), [
    ("URIPROTO", ""), ("URIPROTO", "://"), ("URIPROTO", r"\.x"), ("URIPROTO", "$"),
    ("SYSLOG5424SD", ""), ("SYSLOG5424SD", " +(.*)"), ("SYSLOG5424SD", "$"),
    ("SYSLOG5424SD", r"\]?x"),
])
def test_rewritten_patterns_match_what_logstash_matches(name: str, follow: str) -> None:
    import re

    old = re.compile(f"({_LOGSTASH[name]}){follow}")
    new = re.compile(f"({PATTERNS[name]}){follow}")
    alphabet = '[]a "=\n' if name == "SYSLOG5424SD" else "aZ1+-.:/x "

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.text(alphabet=alphabet, max_size=14), st.booleans())
    def same(text: str, bracket: bool) -> None:
        if bracket:
            text = "[" + text
        a, b = old.match(text), new.match(text)
        assert (a and a.groups()) == (b and b.groups())

    same()
