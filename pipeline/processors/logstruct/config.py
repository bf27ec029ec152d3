"""Config of the `logstruct` processor (reference: docs/logstruct.md)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.types import ByteSize
from pipeline.processors.logstruct.parsers import ParserConfig
from pipeline.processors.logstruct.parsers.base import check_source, check_timezone
from pipeline.processors.logstruct.templates import TemplateSettings

__all__ = ["LogStructConfig"]


class LogStructConfig(ComponentConfig):
    auto: bool = Field(False, description="detect the format of lines no listed parser took")
    parsers: list[ParserConfig] = Field(
        default_factory=list, description="tried in order; the first that applies and "
                                          "matches wins")
    source: str = Field("body", description='text to parse: `body` or `attributes["key"]`')
    time_format: str | None = Field(
        None, description="strptime format (or epoch_s|epoch_ms|epoch_us|epoch_ns) tried "
                          "before the built-in formats")
    timezone: str | None = Field(None, description="IANA zone of stamps without an offset "
                                                   "(default UTC)")
    semconv: bool = Field(True, description="rename fields to OpenTelemetry semantic "
                                            "conventions (status -> http.response.status_code…)")
    rename: dict[str, str] = Field(default_factory=dict,
                                   description="field renames, applied before roles and semconv")
    keep_original: bool = Field(False, description="keep the parsed text in attribute "
                                                   "log.record.original")
    skip_structured: bool = Field(
        True, description="leave records that already have a time or severity (OTLP, JSON "
                          "objects from jsonlogs) unparsed")
    max_parse_bytes: ByteSize = Field(
        16 * 1024, ge=0,
        description="longest text parsed (UTF-8 bytes): a longer record passes unparsed "
                    "with log.parse_skipped: too_long and its template is mined from its "
                    "first max_parse_bytes characters (regex and grok read a longer "
                    "multi-line record's first lines within it, the rest kept); 0 = no "
                    "limit")
    exceptions: bool = Field(
        True, description="find a stack trace (Python, Java, Go, Node.js) in a multi-line "
                          "message and set exception.type, exception.message and "
                          "exception.stacktrace (unless the record has exception.type)")
    templates: TemplateSettings = Field(default_factory=TemplateSettings)

    _src = field_validator("source")(lambda v: check_source(v))
    _tz = field_validator("timezone")(lambda v: check_timezone(v))

    @model_validator(mode="after")
    def _something_to_do(self) -> LogStructConfig:
        if not self.auto and not self.parsers and not self.templates.enabled:
            raise ValueError("set auto: true, list parsers, or enable templates")
        return self
