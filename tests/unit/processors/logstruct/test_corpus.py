"""Each format's corpus (made-up lines, malformed variants included) against exact records.

`corpus/<format>.log` holds the lines, `corpus/<format>.expected.jsonl` the record
each becomes with `auto: true` (time_unix_nano, severity, body, attributes, trace
context), reviewed by hand. Year-less stamps resolve against a fixed clock.
"""

from __future__ import annotations

import orjson
import pytest

from tests.unit.processors.logstruct.helpers import (
    CORPUS,
    Mode,
    batch_of,
    corpus_lines,
    make,
    records,
    run,
)

FORMATS = ["json", "logfmt", "syslog", "access", "apache_error", "klog", "container"]


@pytest.mark.parametrize("name", FORMATS)
def test_corpus_exact_records(name: str, mode: Mode) -> None:
    lines = corpus_lines(name)
    expected = [orjson.loads(x) for x in
                (CORPUS / f"{name}.expected.jsonl").read_bytes().splitlines()]
    assert len(lines) == len(expected)
    got = run(mode, {"auto": True}, lines)
    for line, g, e in zip(lines, got, expected, strict=True):
        assert g == e, line


@pytest.mark.parametrize("name", FORMATS)
def test_corpus_lines_are_never_lost(name: str, mode: Mode) -> None:
    lines = corpus_lines(name)
    got = run(mode, {"auto": True}, lines)
    assert len(got) == len(lines)
    for line, rec in zip(lines, got, strict=True):
        if "log.parse_error" in rec["attributes"]:
            # unchanged: the raw line as body, nothing else added
            assert rec["body"] == line
            assert rec["time_unix_nano"] == 0
            assert rec["severity_number"] == 0
            assert list(rec["attributes"]) == ["log.parse_error"]


def test_latin1_bytes_body_is_decoded_with_replacement_and_flagged(mode: Mode) -> None:
    raw = 'time=2024-03-01T12:00:00Z level=info msg="caf\xe9 ouvert" city=Z\xfcrich'.encode(
        "latin-1")
    (rec,) = run(mode, {"auto": True}, [raw])
    assert rec == {
        "time_unix_nano": 1709294400000000000, "severity_number": 9, "severity_text": "info",
        "body": "caf\ufffd ouvert",
        "attributes": {"city": "Z\ufffdrich", "log.invalid_utf8": True},
    }


def test_latin1_as_the_receiver_decodes_it(mode: Mode) -> None:
    # the jsonlogs / filelog receivers decode invalid UTF-8 with U+FFFD replacements
    line = b'127.0.0.1 - - [01/Mar/2024:12:00:00 +0000] "GET /caf\xe9 HTTP/1.1" 200 1 "-" "x"'
    (rec,) = run(mode, {"auto": True}, [line.decode(errors="replace")])
    assert rec["attributes"]["url.path"] == "/caf\ufffd"
    assert rec["time_unix_nano"] == 1709294400000000000


def test_unparseable_bytes_body_stays_bytes(mode: Mode) -> None:
    (rec,) = run(mode, {"auto": True}, [b"\xff\xfe binary junk"])
    assert rec["attributes"] == {"log.parse_error": "unrecognised format"}
    assert rec["body"] == "//4gYmluYXJ5IGp1bms="  # base64 of the untouched bytes


def test_one_mib_lines(mode: Mode) -> None:
    big_json = orjson.dumps({"level": "info", "msg": "x" * (1 << 20)}).decode()
    big_text = "y" * (1 << 20)
    big_logfmt = "level=warn msg=" + "z" * (1 << 20)
    # parsed when the window allows it (by default, 16 KiB: see test_bounds.py)
    got = run(mode, {"auto": True, "max_parse_bytes": "2MiB"}, [big_json, big_text, big_logfmt])
    assert got[0]["body"] == "x" * (1 << 20)
    assert got[0]["severity_number"] == 9
    assert got[1]["body"] == big_text
    assert got[1]["attributes"] == {"log.parse_error": "unrecognised format"}
    assert got[2]["body"] == "z" * (1 << 20)
    assert got[2]["severity_text"] == "warn"


def test_empty_and_structured_bodies_are_left_alone(mode: Mode) -> None:
    b = batch_of(mode, ["", None])
    msg = b.mutable()
    kv = msg.resource_logs[0].scope_logs[0].log_records.add()
    kv.body.kvlist_value.values.add(key="a").value.string_value = "b"
    make({"auto": True}).process(b)
    recs = records(b)
    assert [r["attributes"] for r in recs] == [{}, {}, {}]
    assert recs[2]["body"] == {"a": "b"}
