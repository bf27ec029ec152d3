from __future__ import annotations

from tests.unit.processors.logstruct.helpers import Mode, run

ACCESS = ('10.0.0.1 - - [01/Mar/2024:12:00:00 +0000] "GET /a?b=1 HTTP/1.1" 200 5 "-" '
          '"curl/8"')


def test_grok_parser_with_definitions_types_and_fallback_patterns(mode: Mode) -> None:
    cfg = {"parsers": [{"type": "grok",
                        "pattern": ["^%{ORDERLINE}$", "^%{HTTPD_COMBINEDLOG}$"],
                        "pattern_definitions": {
                            "ORDERLINE": r"%{TIMESTAMP_ISO8601:timestamp} order "
                                         r"%{ORDERID:order.id} qty=%{INT:order.qty:int} "
                                         r"price=%{NUMBER:order.price:float}",
                            "ORDERID": r"ORD-\d+"}}]}
    got = run(mode, cfg, ["2024-03-01T12:00:00Z order ORD-17 qty=3 price=9.5", ACCESS, "junk"])
    assert got[0] == {"time_unix_nano": 1709294400000000000, "severity_number": 0,
                      "severity_text": "", "body": got[0]["body"],
                      "attributes": {"order.id": "ORD-17", "order.qty": 3, "order.price": 9.5}}
    assert got[1]["attributes"] == {
        "client.address": "10.0.0.1", "http.request.method": "GET", "url.path": "/a",
        "url.query": "b=1", "network.protocol.version": "1.1",
        "http.response.status_code": 200, "http.response.body.size": 5,
        "user_agent.original": "curl/8"}
    assert got[2]["attributes"] == {"log.parse_error": "no grok pattern matched"}


def test_grok_matches_anchored_at_the_start(mode: Mode) -> None:
    """Searched, a pattern was tried at every offset: one 40 KB line `'a.' * 20000 + '!'`
    held %{COMBINEDAPACHELOG} 18.9 s. Anchored, a prefix to skip is written `.*?`."""
    got = run(mode, {"parsers": [{"type": "grok", "pattern": "%{INT:n:int} items"}]},
              ["12 items", "got 12 items"])
    assert got[0]["attributes"] == {"n": 12}
    assert got[1]["attributes"] == {"log.parse_error": "no grok pattern matched"}
    got = run(mode, {"parsers": [{"type": "grok", "pattern": ".*?%{INT:n:int} items"}]},
              ["got 12 items"])
    assert got[0]["attributes"] == {"n": 12}
    # a top-level alternation is anchored as a whole, not only its first branch
    got = run(mode, {"parsers": [{"type": "grok", "pattern": "a%{INT:n:int}|b%{INT:m:int}"}]},
              ["xb2", "b3"])
    assert got[0]["attributes"] == {"log.parse_error": "no grok pattern matched"}
    assert got[1]["attributes"] == {"m": 3}
