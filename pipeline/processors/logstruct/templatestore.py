"""The template miner's store: the file `persist_path` names (JSON: a format version and
each template's id, tokens, size and tree route), written atomically and checked when
read back."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any

import orjson

__all__ = ["FORMAT_VERSION", "parse_store", "write_store"]

FORMAT_VERSION = 1


def write_store(path: str, data: bytes) -> None:
    """Write `data` to `path` atomically: a temp file in the same directory, fsync, rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".templates-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def parse_store(raw: bytes) -> list[tuple[str, list[str], int, tuple[str, ...] | None]]:
    doc: Any = orjson.loads(raw)
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"unsupported format (version {doc.get('version')!r})"
                         if isinstance(doc, dict) else "not a JSON object")
    out = []
    for e in doc["templates"]:
        cid, tokens, size, route = e["id"], e["tokens"], e.get("size", 1), e.get("route")
        if not (isinstance(cid, str) and isinstance(tokens, list)
                and all(isinstance(t, str) for t in tokens) and isinstance(size, int)
                and (route is None or (isinstance(route, list)
                                       and all(isinstance(t, str) for t in route)))):
            raise ValueError(f"malformed template entry {e!r}")
        out.append((cid, tokens, size, tuple(route) if route is not None else None))
    return out
