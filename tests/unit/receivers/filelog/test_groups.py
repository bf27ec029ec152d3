"""filelog `groups`: multiline rules (and encoding, attributes) belong to the files they
are meant for; a file matched by two groups belongs to the first; checkpoints stay per
file; and the multiline presets on stack traces printed by the real runtimes (fixtures
of tests/unit/processors/logstruct/stacktraces)."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.receivers.filelog.config import FileLogConfig
from pipeline.receivers.filelog.encoding import resolve_codec
from pipeline.receivers.filelog.multiline import PRESETS
from pipeline.receivers.filelog.tracker import WatchedFile
from tests.support import Sink, aeventually
from tests.unit.processors.logstruct.bounds import BOUND_S, assert_linear, best_of
from tests.unit.receivers.filelog.helpers import bodies, polls, records, running, write

TRACES = Path(__file__).parents[3] / "unit" / "processors" / "logstruct" / "stacktraces"
ACCESS = "".join(f'10.0.0.{i} - - [06/Dec/2026:13:00:0{i % 10} +0000] "GET /p/{i} HTTP/1.1" '
                 f'200 {100 + i} "-" "curl/8.5"\n' for i in range(20))
STAMP = r"\d{4}-\d{2}-\d{2}[ T]"


def fixture(name: str) -> str:
    return (TRACES / name).read_text(encoding="utf-8")


def by_date(text: str) -> list[str]:
    """The records of a fixture, one per line that starts with a date."""
    return [r.rstrip("\n") for r in re.split(r"\n(?=\d{4}[-/]\d\d[-/]\d\d[ T])", text)]


# -- config ----------------------------------------------------------------------------

def test_group_config_validation() -> None:
    with pytest.raises(ValidationError, match=r"set include .* or groups"):
        FileLogConfig()
    with pytest.raises(ValidationError, match="not both"):
        FileLogConfig(include=["a"], groups=[{"include": ["b"]}])
    with pytest.raises(ValidationError, match="set multiline in the groups"):
        FileLogConfig(groups=[{"include": ["b"]}],
                      multiline={"line_start_pattern": "x"})
    with pytest.raises(ValidationError, match=r"'/x/\*.log' is already in groups\[0\]"):
        FileLogConfig(groups=[{"include": ["/x/*.log"]}, {"include": ["/x/*.log"]}])
    # Every problem of the groups in one message.
    with pytest.raises(ValidationError, match=r"not both.*set multiline in the groups.*"
                                              r"already in groups\[0\]"):
        FileLogConfig(include=["a"], multiline={"indented": True},
                      groups=[{"include": ["/x"]}, {"include": ["/x"]}])
    # ... unless the first excludes something: the second gets those files.
    FileLogConfig(groups=[{"include": ["/x/*.log"], "exclude": ["access*"]},
                          {"include": ["/x/*.log"]}])
    with pytest.raises(ValidationError, match="two groups are named 'a'"):
        FileLogConfig(groups=[{"name": "a", "include": ["x"]},
                              {"name": "a", "include": ["y"]}])
    with pytest.raises(ValidationError, match="unknown encoding"):
        FileLogConfig(groups=[{"include": ["x"], "encoding": "klingon"}])
    with pytest.raises(ValidationError, match="exactly one of preset"):
        FileLogConfig(include=["x"], multiline={"preset": "java", "indented": True})
    with pytest.raises(ValidationError, match="preset"):
        FileLogConfig(include=["x"], multiline={"preset": "cobol"})
    c = FileLogConfig(exclude=["*.gz"], encoding="latin-1", attributes={"env": "prod", "a": 1},
                      groups=[{"include": ["/a/*.log"], "attributes": {"a": 2}},
                              {"name": "web", "include": ["/w/*.log"], "exclude": ["x*"],
                               "encoding": "utf-16"}])
    g0, g1 = c.file_groups()
    assert (g0.name, g0.exclude, g0.encoding, g0.attributes) == (
        "group[0]", ["*.gz"], "latin-1", {"env": "prod", "a": 2})
    assert (g1.name, g1.exclude, g1.encoding, g1.attributes) == (
        "web", ["*.gz", "x*"], "utf-16", {"env": "prod", "a": 1})
    (flat,) = FileLogConfig(include=["/a/*"], multiline={"preset": "python"}).file_groups()
    assert flat.include == ["/a/*"]
    assert flat.multiline is not None
    assert flat.multiline.preset == "python"


# -- the issue: one folder, an app log with stack traces and an access log ----------------

async def test_multiline_applies_to_its_group_only(tmp_path: Path) -> None:
    app = fixture("python_logging.log")
    write(tmp_path / "app.log", app)
    write(tmp_path / "access.log", ACCESS)
    sink = Sink()
    groups = [{"name": "app", "include": [str(tmp_path / "app*.log")],
               "multiline": {"line_start_pattern": STAMP, "flush_period": "50ms"},
               "attributes": {"log.source": "app"}},
              {"name": "access", "include": [str(tmp_path / "*.log")],
               "attributes": {"log.source": "nginx"}}]
    async with running(sink, groups=groups, start_at="beginning") as r:
        await aeventually(lambda: sink.items == 25)
        await polls(r)
    got = records(sink)
    app_recs = [(b, a) for b, a in got if a["log.source"] == "app"]
    web = [(b, a) for b, a in got if a["log.source"] == "nginx"]
    assert [b for b, _ in app_recs] == by_date(app)
    assert [b for b, _ in web] == ACCESS.splitlines()  # 20 records, not one
    assert {a["log.file.name"] for _, a in web} == {"access.log"}
    assert {a["log.file.name"] for _, a in app_recs} == {"app.log"}


async def test_file_in_two_groups_belongs_to_the_first(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "a.log", "x\n  y\nz\n")
    sink = Sink()
    groups = [{"name": "indented", "include": [str(tmp_path / "a.log")],
               "multiline": {"indented": True, "flush_period": "50ms"}},
              {"name": "all", "include": [str(tmp_path / "*.log")]}]
    with caplog.at_level(logging.INFO):
        async with running(sink, groups=groups, start_at="beginning") as r:
            await aeventually(lambda: sink.items == 2)
            await polls(r, 5)
    assert bodies(sink) == ["x\n  y", "z"]
    warned = [rec for rec in caplog.records if "matched by two groups" in rec.getMessage()]
    assert len(warned) == 1  # once, not at every poll
    assert (warned[0].__dict__["group"], warned[0].__dict__["also_matched_by"]) == (
        "indented", "all")


async def test_group_encoding_and_exclude(tmp_path: Path) -> None:
    write(tmp_path / "win.log", "caf\xe9 ok\n".encode("cp1252"))
    write(tmp_path / "u.log", "caf\xe9 ok\n")
    write(tmp_path / "skip.log", "no\n")
    sink = Sink()
    groups = [{"include": [str(tmp_path / "win.log")], "encoding": "cp1252"},
              {"include": [str(tmp_path / "*.log")], "exclude": ["skip*"]}]
    async with running(sink, groups=groups, start_at="beginning") as r:
        await aeventually(lambda: sink.items == 2)
        await polls(r)
    got = sorted((a["log.file.name"], b, a.get("log.invalid_encoding")) for b, a in records(sink))
    assert got == [("u.log", "caf\xe9 ok", None), ("win.log", "caf\xe9 ok", None)]


async def test_checkpoints_per_file_across_groups(tmp_path: Path) -> None:
    """Each file resumes at its own offset after a restart; an open multiline record is
    read again whole, the other group's lines are not repeated."""
    app, web = tmp_path / "app.log", tmp_path / "web.log"
    cfg: dict[str, Any] = {
        "storage_dir": str(tmp_path / "state"), "start_at": "beginning",
        "groups": [{"include": [str(app)],
                    "multiline": {"preset": "java", "flush_period": "1h"}},
                   {"include": [str(web)]}]}
    recs = by_date(fixture("java_app.log"))
    write(app, recs[0] + "\n" + recs[1] + "\n")  # the second record is still open
    write(web, "w1\nw2\n")
    sink = Sink()
    async with running(sink, **cfg) as r:
        await aeventually(lambda: sink.items == 3)
        await polls(r)
    assert sorted(bodies(sink)) == sorted([recs[0], "w1", "w2"])
    write(app, recs[2] + "\n")
    write(web, "w3\n")
    sink2 = Sink()
    async with running(sink2, **cfg) as r:
        await aeventually(lambda: sink2.items == 2)
        await polls(r)
    assert sorted(bodies(sink2)) == sorted([recs[1], "w3"])


# -- presets on the runtimes' own output ----------------------------------------------------

@pytest.mark.parametrize(("preset", "name", "expected"), [
    ("python", "python_logging.log", None),
    ("python", "python_group.log", None),
    ("python", "python_uncaught.txt", None),
    ("java", "java_app.log", None),
    ("java", "java_uncaught.txt", None),
    ("nodejs", "node_logged.txt", None),
    ("nodejs", "node_uncaught.txt", "whole"),
    ("go", "go_panic.txt", "log+panic"),
    ("go", "go_panic_error.txt", "log+panic"),
])
async def test_presets(tmp_path: Path, preset: str, name: str, expected: str | None) -> None:
    text = fixture(name)
    if expected == "whole":
        want = [text.rstrip("\n")]
    elif expected == "log+panic":
        log_line, panic = text.split("\n", 1)
        want = [log_line, panic.rstrip("\n")]
    else:
        want = by_date(text)
    # A record that follows proves the last one ended where it should.
    write(tmp_path / "x.log", text + "2026-12-06 13:59:59 INFO next\n")
    sink = Sink()
    async with running(sink, include=[str(tmp_path / "x.log")], start_at="beginning",
                       multiline={"preset": preset, "flush_period": "50ms"}) as r:
        await aeventually(lambda: sink.items == len(want) + 1)
        await polls(r)
    assert bodies(sink) == [*want, "2026-12-06 13:59:59 INFO next"]


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("shape", [
    lambda n: "a." + "Error" * (n // 5) + "!",
    lambda n: "a." * (n // 2) + "!",
    lambda n: 'Exception in thread "' + "x" * n,
    lambda n: "Err [" + "[" * n,
    lambda n: "main.f(" * (n // 7),
    lambda n: "(" * n + ")",
])
def test_presets_linear_in_the_line(preset: str, shape: Any) -> None:
    cont = PRESETS[preset]

    def timed(n: int) -> float:
        line = shape(n).encode()
        f = WatchedFile(-1, 0, 0, "x", b"", 0, resolve_codec("utf-8"))
        f.ml_state = 1  # inside a trace (go, python): every rule is tried

        def go() -> None:
            for _ in range(10):
                f.ml_state = 1
                cont(f, line)
        return best_of(go, clock=time.process_time)

    assert_linear(timed, what=preset)
    big = shape(1024 * 1024).encode()
    f = WatchedFile(-1, 0, 0, "x", b"", 0, resolve_codec("utf-8"))
    assert best_of(lambda: cont(f, big)) < BOUND_S
