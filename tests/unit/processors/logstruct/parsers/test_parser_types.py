"""Every parser type in the config union: a distinct `type`, and a `build()` that returns
the parser defined next to its config."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import TypeAdapter

from pipeline.processors.logstruct.normalize import Normalizer
from pipeline.processors.logstruct.parsers import ParserConfig
from pipeline.processors.logstruct.parsers.base import Parser, ParserConfigBase
from pipeline.processors.logstruct.timestamps import TimeParser

REQUIRED: dict[str, dict[str, Any]] = {
    "regex": {"pattern": "(?P<message>.*)"},
    "grok": {"pattern": "%{GREEDYDATA:message}"},
}


def _config_classes() -> list[type[ParserConfigBase]]:
    union, _field = get_args(ParserConfig)
    return list(get_args(union))


def test_types_are_distinct() -> None:
    types = [cls.model_fields["type"].annotation for cls in _config_classes()]
    names = [get_args(t)[0] for t in types]
    assert len(set(names)) == len(names)
    assert {"auto", "json", "grok"} <= set(names)


def test_each_config_builds_its_own_parser() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(ParserConfig)
    norm = Normalizer(TimeParser())
    for cls in _config_classes():
        name = get_args(cls.model_fields["type"].annotation)[0]
        cfg = adapter.validate_python({"type": name, **REQUIRED.get(name, {})})
        assert type(cfg) is cls
        parser = cfg.build(norm)
        assert isinstance(parser, Parser)
        assert parser.norm is norm
        assert type(parser).__module__ == cls.__module__
