"""A host running exactly the given component entries (a processor once per pipeline),
for the status page sections that read components by shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipeline.component import Component, ComponentEntry, ComponentID, Host, Kind, PipelineInfo


class EntriesHost(Host):
    def __init__(self, entries: list[ComponentEntry]):
        self.entries = entries

    def components(self) -> Mapping[tuple[Kind, ComponentID], Component]:
        return {}

    def component_entries(self) -> Sequence[ComponentEntry]:
        return self.entries

    def pipelines(self) -> Mapping[str, PipelineInfo]:
        return {}

    def started(self) -> bool:
        return True
