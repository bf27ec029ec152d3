"""A one-node Kafka broker on a local socket, answering with aiokafka's own protocol
classes: ApiVersions (v0), Metadata (v0, itself as the leader of every partition of its
topics) and Produce (v3, through a test's `on_produce`)."""

from __future__ import annotations

import asyncio
import io
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka.protocol.admin import ApiVersionResponse_v0
from aiokafka.protocol.metadata import MetadataResponse_v0
from aiokafka.protocol.produce import ProduceRequest_v3, ProduceResponse_v3

# What `on_produce` returns: an answer's body (after the correlation id), None for no
# answer (the connection stays open), or "close" (the broker drops the connection).
Reply = bytes | str | None


def ok_answer(req: Any, code: int = 0) -> bytes:
    """Every partition of a Produce request answered with `code`."""
    topics = [(t, [(p, code, 0, -1) for p, _data in parts]) for t, parts in req.topics]
    return bytes(ProduceResponse_v3(topics, 0).encode())


@dataclass
class FakeBroker:
    topics: dict[str, int]  # name: partition count
    on_produce: Callable[[Any], Reply] = ok_answer
    produce_versions: tuple[int, int] = (0, 9)
    produces: list[Any] = field(default_factory=list)  # decoded Produce requests
    versions_error: int = 0  # the ApiVersions answer's error code
    leader: int = 0  # of every partition; -1: none (LEADER_NOT_AVAILABLE)
    close_after_answer: bool = False  # drop the connection after each Produce answer
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = None
    _writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def start(self) -> FakeBroker:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        for w in self._writers:
            w.close()
        if self._server is not None:
            self._server.close()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(w)
        try:
            while True:
                (n,) = struct.unpack(">i", await r.readexactly(4))
                data = await r.readexactly(n)
                key, version, corr, id_len = struct.unpack_from(">hhih", data)
                body = data[10 + max(id_len, 0):]
                low, high = self.produce_versions
                if key == 0 and not low <= version <= high:
                    w.close()  # as a broker does with a version it does not speak
                    return
                reply = self._answer(key, body)
                if reply == "close":
                    w.close()
                    return
                if isinstance(reply, bytes):
                    w.write(struct.pack(">ii", 4 + len(reply), corr) + reply)
                    await w.drain()
                    if key == 0 and self.close_after_answer:
                        w.close()
                        return
        except (asyncio.IncompleteReadError, ConnectionError):
            w.close()
        except asyncio.CancelledError:  # the test's loop ends
            w.close()

    def _answer(self, key: int, body: bytes) -> Reply:
        if key == 18:  # ApiVersions
            if self.versions_error:
                return bytes(ApiVersionResponse_v0(self.versions_error, []).encode())
            return bytes(ApiVersionResponse_v0(0, [(0, *self.produce_versions), (3, 0, 0),
                                                   (18, 0, 0)]).encode())
        if key == 3:  # Metadata v0
            code = 5 if self.leader < 0 else 0
            topics = [(0, name, [(code, p, self.leader, [0], [0]) for p in range(n)])
                      for name, n in self.topics.items()]
            return bytes(MetadataResponse_v0([(0, "127.0.0.1", self.port)], topics).encode())
        if key == 0:
            req = ProduceRequest_v3.decode(io.BytesIO(body))
            self.produces.append(req)
            return self.on_produce(req)
        raise AssertionError(f"unexpected api key {key}")
