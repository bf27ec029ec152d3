"""Container runtime wrappers: Docker json-file and CRI (containerd, CRI-O) lines."""

from __future__ import annotations

from typing import Any, Literal

import orjson

from pipeline.processors.logstruct.normalize import Normalizer
from pipeline.processors.logstruct.parsers._jsonload import loads
from pipeline.processors.logstruct.parsers.base import Parser, ParserConfigBase, Reparse
from pipeline.processors.logstruct.record import Record

__all__ = ["ContainerParser", "ContainerParserConfig", "docker_unwrap"]


def docker_unwrap(obj: dict[str, Any], rec: Record, norm: Normalizer, reparse: Reparse) -> bool:
    """Docker json-file: `{"log": "...\\n", "stream": "stdout", "time": "..."}`."""
    rec.format = "container"
    inner = obj["log"]
    if inner.endswith("\n"):
        inner = inner[:-1]
        if inner.endswith("\r"):
            inner = inner[:-1]
    t = obj.get("time")
    if t is not None:
        ns = norm.times.parse(t)
        if ns is not None:
            rec.fallback_time = ns
    rec.attrs["log.iostream"] = str(obj["stream"])
    for k, v in obj.items():
        if k not in ("log", "stream", "time") and v is not None:
            rec.attrs["docker." + k] = v
    if inner and not reparse(inner, rec):
        pass  # a plain-text inner line is a message, not an error
    if rec.body is None:
        rec.body = inner
    return True


class ContainerParser(Parser):
    """Docker json-file lines and CRI (containerd, CRI-O) lines: unwrap, then the
    inner line goes through the parsers again (`log.iostream` = stdout/stderr,
    CRI partial lines get `log.partial = true`)."""

    format = "container"
    reason = "not a Docker or CRI container log line"
    wrapper = True

    def __init__(self, norm: Normalizer, kind: str = "auto"):
        super().__init__(norm)
        self.kind = kind
        self.reparse: Reparse | None = None

    def set_reparse(self, reparse: Reparse) -> None:
        self.reparse = reparse

    def parse(self, text: str, rec: Record) -> bool:
        if text[:1] == "{":
            if self.kind == "cri":
                return False
            try:
                obj = loads(text)
            except orjson.JSONDecodeError:
                return False
            if type(obj) is not dict or type(obj.get("log")) is not str or "stream" not in obj:
                return False
            assert self.reparse is not None
            return docker_unwrap(obj, rec, self.norm, self.reparse)
        if self.kind == "docker":
            return False
        return self.cri(text, rec)

    def cri(self, text: str, rec: Record) -> bool:
        """`<RFC 3339> stdout|stderr F|P <line>`."""
        parts = text.split(" ", 3)
        if len(parts) < 3:
            return False
        ts, stream, tag = parts[0], parts[1], parts[2]
        if stream != "stdout" and stream != "stderr":
            return False
        if tag != "F" and tag != "P" and not tag.startswith(("F:", "P:")):
            return False
        ns = self.norm.times.parse(ts)
        if ns is None:
            return False
        inner = parts[3] if len(parts) == 4 else ""
        rec.format = "container"
        rec.fallback_time = ns
        rec.attrs["log.iostream"] = stream
        if tag[0] == "P":
            rec.attrs["log.partial"] = True
        if inner and self.reparse is not None:
            self.reparse(inner, rec)
        if rec.body is None:
            rec.body = inner
        return True


class ContainerParserConfig(ParserConfigBase):
    type: Literal["container"]
    format: Literal["auto", "docker", "cri"] = "auto"

    def build(self, norm: Normalizer) -> ContainerParser:
        return ContainerParser(norm, self.format)
