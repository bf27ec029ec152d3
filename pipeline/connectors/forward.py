"""`forward` connector: passes data unchanged from one pipeline into others of the
same signal (e.g. one receiver pipeline feeding two differently processed ones)."""

from __future__ import annotations

from pipeline.component import (
    Component,
    ComponentConfig,
    ConnectorCreateSettings,
    Consumer,
    Factory,
    Kind,
    Signal,
)
from pipeline.pdata.batch import Batch


class ForwardConfig(ComponentConfig):
    pass


class ForwardConnector(Component, Consumer):
    def __init__(self, settings: ConnectorCreateSettings):
        self.consumers = settings.consumers

    async def consume(self, batch: Batch) -> None:
        await self.consumers[batch.signal].consume(batch)


def _create(settings: ConnectorCreateSettings, config: ForwardConfig) -> ForwardConnector:
    return ForwardConnector(settings)


factory = Factory(type="forward", kind=Kind.CONNECTOR, config_model=ForwardConfig,
                  create=_create, connector_pairs=frozenset((s, s) for s in Signal),
                  description="passes data unchanged to pipelines of the same signal")
