"""How a status page section reads its state from the components the host runs: by
shape, a method returning a dict (extensions never import components), once per
component object (a processor has one entry per pipeline it is in, one object each).
"""

from __future__ import annotations

from typing import Any

from pipeline.component import Host, Kind


def component_states(host: Host | None, kind: Kind, method: str) -> list[dict[str, Any]]:
    """What `method()` returns for every component of `kind` the host runs that has
    it, in start order."""
    if host is None:
        return []
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for entry in host.component_entries():
        comp = entry.component
        read = getattr(comp, method, None)
        if entry.kind is kind and read is not None and id(comp) not in seen:
            seen.add(id(comp))
            out.append(read())
    return out
