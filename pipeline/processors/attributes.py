"""`attributes` processor: insert, update, upsert, delete, hash, extract and convert
attributes of spans, log records and metric data points (or of their resource),
like the Collector's attributes processor.

```yaml
processors:
  attributes/tidy:
    actions:
      - {key: deployment.environment, value: prod, action: insert}   # only if absent
      - {key: http.status_code, value: 0, action: update}            # only if present
      - {key: team, value: checkout, action: upsert}                 # either way
      - {key: peer.service, from_attribute: net.peer.name, action: upsert}
      - {key: db.statement, action: delete}
      - {pattern: '^temp\\.', action: delete}                        # keys matching a regex
      - {key: user.email, action: hash}                              # sha256 hex of the value
      - {key: http.url, action: extract,
         regex: '^(?P<url__scheme>\\w+)://(?P<server__address>[^/:]+)'}  # named groups -> upsert
      - {key: http.status_code, action: convert, converted_type: int}
      - {key: cloud.region, value: eu-west-1, action: insert, context: resource}
```

Actions run in order, on every item (`context: item`, the default) or on each
resource (`context: resource`). `value` is a string, number or bool (kept as
that type); `from_attribute` copies another attribute of the same item (or
resource), whatever its type; an absent source does nothing. `hash` replaces
the value with the SHA-256 hex digest of its text (strings as they are, other
values as the Collector prints them). `extract` applies `pattern` (or `regex`; searched) to a
string value and upserts one string attribute per named group that matched
(Python group names cannot hold dots: `__` in a group name stands for `.`, so
`(?P<url__scheme>…)` writes `url.scheme`); the source attribute is kept.
`convert` turns a value into `int`, `double`,
`string` or `bool`; a value that does not convert is left as it is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.component import (
    Component,
    ComponentConfig,
    Consumer,
    Factory,
    Kind,
    ProcessorCreateSettings,
    Signal,
)
from pipeline.pdata.attractions import AttributeAction, compile_action
from pipeline.pdata.batch import Batch
from pipeline.processors._otlp import items, resources


class ActionConfig(AttributeAction):
    """An attribute action (`pipeline.pdata.attractions`) and where it applies."""

    context: Literal["item", "resource"] = Field(
        "item", description="item: span/log record/data point attributes; resource: the "
                            "resource's")


class AttributesConfig(ComponentConfig):
    actions: list[ActionConfig] = Field(min_length=1)


class AttributesProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: AttributesConfig):
        self.next = settings.next_consumer
        self.signal = settings.signal
        self.item_actions = [compile_action(a) for a in config.actions if a.context == "item"]
        self.resource_actions = [compile_action(a) for a in config.actions
                                 if a.context == "resource"]

    async def consume(self, batch: Batch) -> None:
        self.apply(batch)
        await self.next.consume(batch)

    def apply(self, batch: Batch) -> None:
        request = batch.mutable()
        signal = self.signal
        item_actions = self.item_actions
        resource_actions = self.resource_actions
        for res in resources(signal, request):
            if resource_actions:
                attrs = res.resource.attributes
                for act in resource_actions:
                    act(attrs)
            if item_actions:
                for item in items(signal, res):
                    attrs = item.attributes
                    for act in item_actions:
                        act(attrs)


def _create(settings: ProcessorCreateSettings, config: AttributesConfig) -> AttributesProcessor:
    return AttributesProcessor(settings, config)


factory = Factory(type="attributes", kind=Kind.PROCESSOR, config_model=AttributesConfig,
                  create=_create, signals=frozenset(Signal),
                  description="insert, update, upsert, delete, hash, extract and convert "
                              "attributes")
