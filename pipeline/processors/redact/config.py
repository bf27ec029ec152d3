"""The `redact` processor's config keys."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.types import Regex
from pipeline.processors.redact.patterns import BUILTIN_PATTERNS


class PatternConfig(ComponentConfig):
    name: str = Field(min_length=1)
    regex: Regex = Field(description="a group named `secret` masks only that part of a match")
    keywords: list[str] = Field(
        default_factory=list,
        description="lower-case words one of which every match contains; the regex then "
                    "runs only on strings holding one (faster). Empty: runs on every string")

    @field_validator("regex")
    @classmethod
    def _no_backreferences(cls, v: str) -> str:
        if re.search(r"\\[1-9]|\(\?P=", v):
            raise ValueError("backreferences are not supported (patterns are combined)")
        return v


class RedactConfig(ComponentConfig):
    mask: str = Field("****", min_length=1, description="replacement of a masked secret")
    hash: Literal["sha256"] | None = Field(
        None, description="replace secrets by `sha256:<hex>` of their value instead of `mask`")
    hash_key: SecretStr | None = Field(
        None, description="HMAC-SHA256 key for `hash` (without it a guessable secret can be "
                          "found from its digest)")
    patterns: list[PatternConfig] = Field(default_factory=list,
                                          description="additional secret patterns")
    disable_patterns: list[str] = Field(default_factory=list,
                                        description="built-in patterns to switch off")
    blocked_keys: list[str] = Field(
        default_factory=list, description="attribute keys whose values are always masked")
    secret_keys: bool = Field(
        True, description="mask the whole value of attributes whose key names a secret")
    allowed_keys: list[str] = Field(
        default_factory=list, description="attribute keys never masked nor scanned")
    allow_values: list[Regex] = Field(
        default_factory=list, description="regexes: a found secret fully matching one is kept")
    summary: bool = Field(
        False, description="add redaction.masked.count and redaction.masked.keys to items "
                           "where something was masked")

    @field_validator("disable_patterns")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for name in v:
            if name not in BUILTIN_PATTERNS:
                raise ValueError(f"unknown built-in pattern {name!r}; known: "
                                 f"{', '.join(BUILTIN_PATTERNS)}")
        return v

    @model_validator(mode="after")
    def _names(self) -> RedactConfig:
        names = [p.name for p in self.patterns]
        for n in names:
            if names.count(n) > 1 or n in BUILTIN_PATTERNS:
                raise ValueError(f"pattern name {n!r} is used twice (or is a built-in name)")
        if self.hash_key is not None and self.hash is None:
            raise ValueError("hash_key needs hash: sha256")
        return self
