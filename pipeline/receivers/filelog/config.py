"""Config models of the `filelog` receiver (keys documented in the package docstring)."""

from __future__ import annotations

import codecs
import re
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.types import ByteSize, Duration

#: Built-in multiline presets: they know which lines continue a stack trace of their
#: runtime (see `multiline.py`); any other line starts a new record.
Preset = Literal["python", "java", "go", "nodejs"]


class MultilineConfig(ComponentConfig):
    """Join lines into one record. Exactly one of the four modes."""

    preset: Preset | None = Field(
        None, description="Built-in rules of a runtime's stack traces (python, java, go, "
                          "nodejs): lines that continue a trace join the record before "
                          "them; any other line starts a new record.")
    line_start_pattern: str | None = Field(
        None, description="Regex matched at the start of a line that begins a new record.")
    line_end_pattern: str | None = Field(
        None, description="Regex found in a line that ends the record.")
    indented: bool = Field(
        False, description="Lines starting with a space or tab (and empty lines) continue "
                           "the record before them.")
    max_lines: int = Field(1000, ge=1, description="Lines per record before it is cut.")
    flush_period: Duration = Field(
        0.5, validation_alias=AliasChoices("flush_period", "timeout"),
        description="A record still open after this long without new data is emitted "
                    "(alias: timeout).")

    @field_validator("line_start_pattern", "line_end_pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v.encode())
            except re.error as exc:
                raise ValueError(f"invalid regex: {exc}") from None
        return v

    @model_validator(mode="after")
    def _one_mode(self) -> MultilineConfig:
        modes = sum((self.line_start_pattern is not None, self.line_end_pattern is not None,
                     self.indented, self.preset is not None))
        if modes != 1:
            raise ValueError("set exactly one of preset, line_start_pattern, "
                             "line_end_pattern, indented: true")
        return self


class BackoffConfig(ComponentConfig):
    initial_interval: Duration = Field(0.1, description="First wait after a refused batch.")
    max_interval: Duration = Field(5.0, description="Longest wait between retries.")


AttrValue = str | bool | int | float
Extra = dict[str, AttrValue]  # attributes of one record beyond the file's


def _check_codec(v: str | None) -> str | None:
    if v is not None:
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r}") from None
    return v


class FileGroupConfig(ComponentConfig):
    """Files that share their rules: one entry of `groups`."""

    name: str | None = Field(None, description="Names the group in logs (default: its "
                                               "position, group[0], group[1] ...).")
    include: list[str] = Field(min_length=1, description="Glob patterns of this group's "
                                                         "files.")
    exclude: list[str] = Field(default_factory=list,
                               description="Glob patterns to leave out of this group.")
    multiline: MultilineConfig | None = Field(
        None, description="Join lines into one record, for this group's files only.")
    encoding: str | None = Field(None, description="Codec of this group's files (default: "
                                                   "the receiver's `encoding`).")
    attributes: dict[str, AttrValue] = Field(
        default_factory=dict, description="Static attributes of this group's records (over "
                                          "the receiver's `attributes`).")

    _codec = field_validator("encoding")(lambda v: _check_codec(v))


class FileLogConfig(ComponentConfig):
    include: list[str] = Field(
        default_factory=list,
        description="Glob patterns of files to tail (`**` matches directories); or use "
                    "`groups`.")
    groups: list[FileGroupConfig] = Field(
        default_factory=list,
        description="Groups of files with their own include/exclude, multiline, encoding "
                    "and attributes; a file matched by several belongs to the first.")
    exclude: list[str] = Field(
        default_factory=list,
        description="Glob patterns to leave out: absolute ones match the full path, relative "
                    "ones the full path or the file name.")
    start_at: Literal["beginning", "end"] = Field(
        "end", description="Where to start in files found at the first start (no checkpoint "
                           "yet); files found later are always read from the beginning.")
    poll_interval: Duration = Field(0.2, description="How often to look for new data.")
    storage_dir: str | None = Field(
        None, description="Directory for the checkpoint file (filelog-<id>.json).")
    checkpoint_path: str | None = Field(None, description="Exact checkpoint file path.")
    multiline: MultilineConfig | None = Field(
        None, description="Join lines into one record (stack traces).")
    encoding: str = Field("utf-8", description="Python codec name of the files.")
    max_log_size: ByteSize = Field(
        1024 * 1024, ge=16,
        description="Longest record in bytes (or 64KiB, 1MiB); longer lines are split into "
                    "pieces flagged log.split.")
    max_batch_lines: int = Field(1000, ge=1, description="Records per batch.")
    include_file_name: bool = Field(True, description="Attribute log.file.name.")
    include_file_path: bool = Field(False, description="Attribute log.file.path.")
    resource: dict[str, AttrValue] = Field(default_factory=dict,
                                           description="Static resource attributes.")
    attributes: dict[str, AttrValue] = Field(default_factory=dict,
                                             description="Static attributes of every record.")
    fingerprint_size: ByteSize = Field(1000, ge=16,
                                       description="Leading bytes that identify a file.")
    force_flush_period: Duration = Field(
        0.5, description="An unterminated last line is emitted after this long without new "
                         "data; 0 waits for its newline forever.")
    retry_on_failure: BackoffConfig = Field(
        default_factory=BackoffConfig,
        description="Backoff while the pipeline refuses a batch (retried forever).")

    @field_validator("encoding")
    @classmethod
    def _codec(cls, v: str) -> str:
        _check_codec(v)
        return v

    @model_validator(mode="after")
    def _one_store(self) -> FileLogConfig:
        if self.storage_dir and self.checkpoint_path:
            raise ValueError("set storage_dir or checkpoint_path, not both")
        return self

    @model_validator(mode="after")
    def _files(self) -> FileLogConfig:
        if not self.groups:
            if not self.include:
                raise ValueError("set include (the files to tail) or groups")
            return self
        problems: list[str] = []
        if self.include:
            problems.append("set include or groups, not both (a group has its own include)")
        if self.multiline is not None:
            problems.append("with groups, set multiline in the groups that need it (a "
                            "receiver-wide multiline would join the lines of every file)")
        seen: dict[str, int] = {}
        names: set[str] = set()
        for i, g in enumerate(self.groups):
            if g.name is not None:
                if g.name in names:
                    problems.append(f"groups: two groups are named {g.name!r}")
                names.add(g.name)
            for pattern in g.include:
                if pattern in seen:
                    problems.append(
                        f"groups[{i}].include: {pattern!r} is already in "
                        f"groups[{seen[pattern]}].include, which excludes nothing (a file "
                        "belongs to the first group that matches it, so here it would "
                        "never apply)")
                if not g.exclude:
                    seen[pattern] = i  # a later group gets what this one excludes
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def file_groups(self) -> list[FileGroupConfig]:
        """The groups in effect: `groups` (with the receiver's `exclude` added to each,
        its `encoding` as their default and its `attributes` under theirs), or one group
        made of the flat keys."""
        if not self.groups:
            return [FileGroupConfig(name="default", include=self.include,
                                    exclude=self.exclude, multiline=self.multiline,
                                    encoding=self.encoding, attributes=self.attributes)]
        return [FileGroupConfig(
            name=g.name if g.name is not None else f"group[{i}]", include=g.include,
            exclude=[*self.exclude, *g.exclude], multiline=g.multiline,
            encoding=g.encoding or self.encoding,
            attributes={**self.attributes, **g.attributes})
            for i, g in enumerate(self.groups)]
