"""Line parsers of `logstruct`, one module per parser type.

Each module holds a `Parser` (fills a `Record` from one line, see `base.py` for
the contract) and its config class, whose `build()` returns the compiled
parser. To add a parser type: write its module, and add its config class to
`ParserConfig` below (the discriminated union the processor's `parsers:` list
is validated with; its order is the order of the tags in error messages).

Fixed formats (logfmt, access logs, syslog, Apache error log, container
wrappers) are parsed by hand with `str.find`/`split`/`partition`, which beats
one general regex several times on CPython; user formats (`regex`, `grok`)
are one compiled regex each.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from pipeline.processors.logstruct.parsers.access import (
    AccessLogParserConfig,
    ApacheErrorParserConfig,
)
from pipeline.processors.logstruct.parsers.auto import AutoParserConfig
from pipeline.processors.logstruct.parsers.container import ContainerParserConfig
from pipeline.processors.logstruct.parsers.grok import GrokParserConfig
from pipeline.processors.logstruct.parsers.json import JsonParserConfig
from pipeline.processors.logstruct.parsers.klog import KlogParserConfig
from pipeline.processors.logstruct.parsers.logfmt import LogfmtParserConfig
from pipeline.processors.logstruct.parsers.regex import RegexParserConfig
from pipeline.processors.logstruct.parsers.syslog import SyslogParserConfig

__all__ = ["ParserConfig"]

#: One entry of the processor's `parsers:` list, told apart by `type`.
ParserConfig = Annotated[
    AutoParserConfig | JsonParserConfig | LogfmtParserConfig | SyslogParserConfig
    | AccessLogParserConfig | ApacheErrorParserConfig | KlogParserConfig
    | ContainerParserConfig | RegexParserConfig | GrokParserConfig,
    Field(discriminator="type"),
]
