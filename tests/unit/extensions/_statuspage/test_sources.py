"""Reading a section's state from components by shape: the kind asked for, components
that have the method, each object once, in start order."""

from __future__ import annotations

from typing import Any

from pipeline.component import Component, ComponentEntry, ComponentID, Kind
from pipeline.extensions._statuspage.sources import component_states
from tests.unit.extensions._statuspage.hosts import EntriesHost


class Offers(Component):
    def __init__(self, name: str):
        self.name = name
        self.reads = 0

    def offered_status(self) -> dict[str, Any]:
        self.reads += 1
        return {"name": self.name}


def test_kind_shape_once_in_order() -> None:
    a, b, other_kind = Offers("a"), Offers("b"), Offers("exporter")
    host = EntriesHost([
        ComponentEntry(Kind.PROCESSOR, ComponentID.parse("p/b"), b, "traces"),
        ComponentEntry(Kind.PROCESSOR, ComponentID.parse("p/none"), Component()),
        ComponentEntry(Kind.EXPORTER, ComponentID.parse("e"), other_kind),
        ComponentEntry(Kind.PROCESSOR, ComponentID.parse("p/a"), a, "traces"),
        ComponentEntry(Kind.PROCESSOR, ComponentID.parse("p/b"), b, "logs"),
    ])
    assert component_states(host, Kind.PROCESSOR, "offered_status") == [
        {"name": "b"}, {"name": "a"}]
    assert (a.reads, b.reads, other_kind.reads) == (1, 1, 0)
    assert component_states(host, Kind.CONNECTOR, "offered_status") == []
    assert component_states(None, Kind.PROCESSOR, "offered_status") == []
