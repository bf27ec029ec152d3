"""Running CPU-heavy work on a batch in a worker process, off the event loop.

Encoding a big batch as OTLP JSON (≈ 15 µs per span: 67k spans ≈ 1 s on an idle
core) or splitting one (decode, copy, encode) would hold the loop far past the
100 ms bound. Threads do not help: upb and orjson hold the GIL for a whole
call (`orjson.dumps` of 25 MB is one call of ≈ 0.5 s). So a component hands
such work to an `Offload`: a worker process, started on first use, that runs
a module-level function on picklable arguments (bytes, config models) and
returns its picklable result. The loop only moves bytes through pipes.

The same pattern as the otlp receiver's decode worker
(receivers/_otlpdecode.py), in this lower layer so that exporters and
processors can share it: `subprocess.Popen` (no `multiprocessing`: its spawn
method re-imports the main script, its feeder thread pickles holding the
GIL), frames on the worker's stdin/stdout, one call at a time.

What runs there must be pure (its inputs in, its result out): the worker has
no pipeline, no telemetry and no loop. An exception raised by the function is
re-raised by `call` (pickled: its class and attributes travel). If the worker
dies or cannot be started, `call` raises `OffloadError` and the next call
starts a new one; callers then do the work on the loop (late is better than
lost).

Each component owning an `Offload` closes it at shutdown.
"""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import signal as signal_module
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

__all__ = ["OFF_LOOP_BYTES", "Offload", "OffloadError"]

T = TypeVar("T")

#: Batches whose protobuf is larger than this are encoded or split off the loop.
#: 256 KiB of spans (≈ 2k spans) encode to OTLP JSON in ≈ 30 ms on an idle core,
#: ≈ 60-90 ms on the busy 2-core machine of the benchmarks.
OFF_LOOP_BYTES = 256 * 1024

# Frames: call = length, pickle((function, args)); answer = status, length, pickle(result
# or exception).
_LEN = struct.Struct(">Q")
_ANSWER = struct.Struct(">BQ")
# result pickled, exception of the function, text of a worker error, bytes result as is
_OK, _RAISED, _BROKEN, _RAW = 0, 1, 2, 3
_CHUNK = 1024 * 1024
_READ_LIMIT = 1024 * 1024


class OffloadError(RuntimeError):
    """The worker process failed (died, could not start, answered garbage)."""


class Offload:
    """A worker process running one function call at a time, started on first use."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._lock = asyncio.Lock()
        self.calls = 0  # calls answered (for tests and logs)

    async def _start(self) -> tuple[asyncio.StreamWriter, asyncio.StreamReader]:
        proc = self._proc = _spawn()
        assert proc.stdin is not None
        assert proc.stdout is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_READ_LIMIT)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), proc.stdout)
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                            proc.stdin)
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        self._writer, self._reader = writer, reader
        return writer, reader

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the worker. Raises what `fn` raised, or OffloadError."""
        status, chunks = await self._call(fn, args)
        if status == _RAW:
            return b"".join(chunks)  # type: ignore[return-value]
        buf = bytearray()
        chunks.reverse()
        while chunks:  # one MiB per step, each freed once copied
            buf += chunks.pop()
            await asyncio.sleep(0)
        try:
            result = pickle.loads(buf)
        except Exception as exc:
            raise OffloadError(f"cannot read the worker's answer: {exc!r}") from None
        if status == _RAISED:
            raise result
        return result  # type: ignore[no-any-return]

    async def call_chunked(self, fn: Callable[..., bytes], *args: Any) -> list[bytes]:
        """`fn(*args)`, which returns bytes, in the worker: the bytes in pieces of at most
        1 MiB, never joined (a 20 MB result copied at once holds the loop ≈ 50 ms on a
        loaded machine). Raises what `fn` raised, or OffloadError."""
        status, chunks = await self._call(fn, args)
        if status == _RAW:
            return chunks
        result = pickle.loads(b"".join(chunks))
        if status == _RAISED:
            raise result
        raise OffloadError(f"{fn.__name__} returned {type(result).__name__}, not bytes")

    async def _call(self, fn: Callable[..., Any], args: tuple[Any, ...]
                    ) -> tuple[int, list[bytes]]:
        try:
            frame = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise OffloadError(f"cannot send the call to the worker: {exc}") from None
        # Shielded: a cancelled caller must not leave half a frame in the pipe; the
        # exchange finishes and its answer is dropped.
        status, chunks = await asyncio.shield(asyncio.ensure_future(self._exchange(frame)))
        if status == _BROKEN:
            raise OffloadError(f"the offload worker could not run the call: "
                               f"{b''.join(chunks).decode(errors='replace')}")
        return status, chunks

    async def _exchange(self, frame: bytes) -> tuple[int, list[bytes]]:
        async with self._lock:
            try:
                if self._writer is None or self._reader is None:
                    writer, reader = await self._start()
                else:
                    writer, reader = self._writer, self._reader
                writer.write(_LEN.pack(len(frame)))
                view = memoryview(frame)
                for i in range(0, len(view), _CHUNK):  # the transport copies what waits
                    writer.write(view[i:i + _CHUNK])
                    await writer.drain()
                del view, frame
                status, n = _ANSWER.unpack(await reader.readexactly(_ANSWER.size))
                chunks: list[bytes] = []
                while n:
                    chunk = await reader.read(min(n, _CHUNK))
                    if not chunk:
                        raise EOFError("the worker's answer ended early")
                    chunks.append(chunk)
                    n -= len(chunk)
                    await asyncio.sleep(0)  # read() does not yield while data is buffered
            except (OSError, EOFError, ValueError) as exc:  # BrokenPipe, IncompleteRead
                await self._stop(kill=True)
                raise OffloadError(f"the offload worker failed: {exc!r}") from None
            self.calls += 1
            return status, chunks

    async def _stop(self, kill: bool) -> None:
        proc, writer = self._proc, self._writer
        self._proc = self._writer = self._reader = None
        if writer is not None:
            writer.close()  # end of input: the worker exits
        if proc is None:
            return
        if kill:
            proc.kill()
        try:
            await asyncio.to_thread(proc.wait, 5.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)

    async def close(self) -> None:
        """Stop the worker: end of input, then kill if it does not exit in 5 s."""
        async with self._lock:
            await self._stop(kill=False)


def _spawn() -> subprocess.Popen[bytes]:
    # vfork + exec: returns at once (the loop's subprocess support forks under uvloop,
    # and gRPC's fork handlers then warn).
    return subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    if len(data) < n:
        return None
    return data


def _run(frame: bytes) -> tuple[int, bytes]:
    """One call: (status, payload) of the answer."""
    try:
        fn, args = pickle.loads(frame)
    except Exception as exc:
        return _BROKEN, f"cannot read the call: {exc!r}".encode()
    try:
        result = fn(*args)
    except Exception as exc:
        try:
            return _RAISED, pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return _RAISED, pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))
    if type(result) is bytes:
        return _RAW, result
    try:
        return _OK, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return _BROKEN, f"cannot send the result: {exc!r}".encode()


def _serve() -> None:
    """The worker's loop: one call in, one answer out, until end of input."""
    signal_module.signal(signal_module.SIGINT, signal_module.SIG_IGN)
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # nothing else may write into the answer stream
    gc.freeze()
    while True:
        head = _read_exact(inp, _LEN.size)
        if head is None:
            return
        frame = _read_exact(inp, _LEN.unpack(head)[0])
        if frame is None:
            return
        # Encoding builds millions of short-lived containers: the cyclic GC would
        # slow it severalfold and finds nothing to collect in them.
        gc.disable()
        try:
            status, payload = _run(frame)
        finally:
            del frame
            gc.enable()
        out.write(_ANSWER.pack(status, len(payload)))
        out.write(payload)
        out.flush()
        del payload


if __name__ == "__main__":
    _serve()
