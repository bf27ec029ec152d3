"""The control socket between the supervisor and a worker process.

Each worker listens on a unix socket in the private link directory (0700, so only
this user reaches it) and answers one request per connection: a command line
(`metrics` or `health`), then the answer framed as its length in decimal, a newline
and that many bytes. An answer cut short (the worker killed mid-write) is no answer:
never taken for a complete one.

- `metrics`: the worker's own registry in the Prometheus text format; the primary
  merges them into its `/metrics`.
- `health`: `{"running": bool, "failing": [{"component": name, "error": text}]}` as
  JSON.

The socket appears once the worker's service has started, so its existence is
also the worker's readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable

MAX_COMMAND = 64
MAX_ANSWER = 64 * 1024 * 1024  # a registry's text is a few hundred KiB at most
COMMAND_TIMEOUT = 5.0

log = logging.getLogger("otelpipe.service.workers")

Handler = Callable[[], Awaitable[bytes]]


class ControlServer:
    """A worker's end: answers `commands` on a unix socket at `path`."""

    def __init__(self, path: str, commands: dict[str, Handler]):
        self.path = path
        self.commands = commands
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a previous incarnation's
        tmp = f"{self.path}.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        self._server = await asyncio.start_unix_server(self._serve, path=tmp)
        os.chmod(tmp, 0o600)
        os.rename(tmp, self.path)  # appears whole: its existence means "started"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), COMMAND_TIMEOUT)
            handler = self.commands.get(line[:MAX_COMMAND].strip().decode(errors="replace"))
            if handler is not None:
                answer = await handler()
                writer.write(b"%d\n" % len(answer))
                writer.write(answer)
                await asyncio.wait_for(writer.drain(), COMMAND_TIMEOUT)
        except (TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("control request failed")
        finally:
            writer.close()


async def ask(path: str, command: str, within: float = COMMAND_TIMEOUT) -> bytes | None:
    """The answer of the worker listening at `path`, or None if it does not answer
    whole (its length as announced, at most MAX_ANSWER) `within` seconds."""
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_unix_connection(path)
            try:
                writer.write(command.encode() + b"\n")
                await writer.drain()
                header = await reader.readline()
                if not header.endswith(b"\n") or not header[:-1].isdigit():
                    return None
                size = int(header)
                if size > MAX_ANSWER:
                    return None
                return await reader.readexactly(size)
            finally:
                writer.close()
    except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
        return None
