"""`resource` processor: insert, update, upsert, delete, hash, extract and convert
resource attributes, like the Collector's resource processor (traces, metrics, logs).

```yaml
processors:
  resource:
    attributes:
      - {key: deployment.environment.name, value: prod, action: upsert}
      - {key: k8s.cluster.name, from_attribute: k8s-cluster, action: insert}
      - {key: redundant-attribute, action: delete}
      - {key: user.email, action: hash}
      - {key: host.name, action: extract, pattern: '^(?P<host__role>[a-z]+)-\\d+'}
      - {key: service.instance.number, action: convert, converted_type: int}
```

The actions and their semantics are the `attributes` processor's, shared through
`pipeline.pdata.attractions` (the Collector's `attraction`): `insert` only if absent,
`update` only if present, `upsert` either way (`value` or `from_attribute`),
`delete` (a key or keys matching `pattern`), `hash` (SHA-256 hex), `extract` (named
groups of `pattern` searched in the key's string value become attributes; `__` in a
group name stands for `.`), `convert` (`converted_type`: int, double, string, bool).
Actions run in order. The Collector's `from_context` (client metadata) is not
supported (a validation error names it).

Cost: only resources are touched (`pipeline.pdata.resources`): a serialized batch is
scanned at the wire level, each resource parsed, edited and re-serialized once per
distinct resource (cached), spans / records / points copied as bytes.
"""

from __future__ import annotations

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
from pipeline.errors import PermanentError
from pipeline.pdata.attractions import AttributeAction, compile_actions
from pipeline.pdata.batch import Batch
from pipeline.pdata.resources import ResourceEditor, WireError


class ResourceConfig(ComponentConfig):
    attributes: list[AttributeAction] = Field(
        min_length=1, description="actions on the resource attributes, in order")


class ResourceProcessor(Component, Consumer):
    def __init__(self, settings: ProcessorCreateSettings, config: ResourceConfig):
        self.next = settings.next_consumer
        self.editor = ResourceEditor(compile_actions(config.attributes))

    async def consume(self, batch: Batch) -> None:
        try:
            out = await self.editor.apply_async(batch)
        except WireError as exc:
            raise PermanentError(f"undecodable {batch.signal} request: {exc}") from exc
        await self.next.consume(out)


def _create(settings: ProcessorCreateSettings, config: ResourceConfig) -> ResourceProcessor:
    return ResourceProcessor(settings, config)


factory = Factory(type="resource", kind=Kind.PROCESSOR, config_model=ResourceConfig,
                  create=_create, signals=frozenset(Signal),
                  description="insert, update, upsert, delete, hash, extract and convert "
                              "resource attributes")
