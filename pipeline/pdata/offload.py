"""Running CPU-heavy work on a batch in a worker process, off the event loop.

Encoding a big batch as OTLP JSON (≈ 15 µs per span: 67k spans ≈ 1 s on an idle
core) or splitting one (decode, copy, encode) would hold the loop far past the
100 ms bound. Threads do not help: upb and orjson hold the GIL for a whole
call (`orjson.dumps` of 25 MB is one call of ≈ 0.5 s). So a component hands
such work to an `Offload`: a worker process, started on first use, that runs
a module-level function on picklable arguments (bytes, config models) and
returns its picklable result. The loop only moves bytes through pipes.

The process and its framing are `WorkerPipe` (here, in this lower layer, so
that exporters, processors and the otlp receiver's decode worker in
receivers/_otlpdecode.py share it): `subprocess.Popen` (no `multiprocessing`:
its spawn method re-imports the main script, its feeder thread pickles holding
the GIL), frames on the worker's stdin/stdout (a caller's fixed-size header and
body; an answer's fixed-size header ending with the payload's length, then the
payload, read a MiB per loop step), one exchange at a time; `serve` is the
worker's side. The workers' memory counts as the process's: `workers_memory()`
(what `memory_limiter` adds to the RSS it compares with its limits), and each
worker gives freed memory back to the OS after every call.

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
import ctypes
import gc
import os
import pickle
import signal as signal_module
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, TypeVar

__all__ = ["OFF_LOOP_BYTES", "Offload", "OffloadError", "WorkerPipe", "serve",
           "workers_memory"]

T = TypeVar("T")

#: Batches whose protobuf is larger than this are encoded or split off the loop.
#: 256 KiB of spans (≈ 2k spans) encode to OTLP JSON in ≈ 30 ms on an idle core,
#: ≈ 60-90 ms on the busy 2-core machine of the benchmarks.
OFF_LOOP_BYTES = 256 * 1024

# Offload frames: call = length, pickle((function, args)); answer = status, length,
# pickle(result or exception).
_LEN = struct.Struct(">Q")
_ANSWER = struct.Struct(">BQ")
# result pickled, exception of the function, text of a worker error, bytes result as is
_OK, _RAISED, _BROKEN, _RAW = 0, 1, 2, 3
_CHUNK = 1024 * 1024
_READ_LIMIT = 1024 * 1024


class OffloadError(RuntimeError):
    """The worker process failed (died, could not start, answered garbage)."""


# The worker processes, and what they hold --------------------------------------------

#: pid -> pipe of every worker process running (of any WorkerPipe in this process).
_LIVE: dict[int, WorkerPipe] = {}


def _private_bytes(pid: int) -> int:
    """Memory a process holds of its own (anonymous + shared memory resident), not its
    mapped files (the interpreter and libraries, shared with the parent)."""
    total = 0
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith((b"RssAnon:", b"RssShmem:")):
                total += int(line.split()[1]) * 1024
    return total


def workers_memory() -> int:
    """Bytes held by the worker processes of this process (0 when none runs)."""
    total = 0
    for pid in list(_LIVE):
        try:
            total += _private_bytes(pid)
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
    return total


class WorkerPipe:
    """`python -m <module>` (whose main is `serve`), started on first use, one exchange
    at a time: the caller's frames in; an answer header (`answer`, a struct whose last
    field is the payload's length) and the payload, in pieces of at most 1 MiB, out.
    If the worker dies or answers garbage, the exchange raises OffloadError and the
    next one starts a new worker."""

    def __init__(self, module: str, name: str):
        self.module = module
        self.name = name  # for errors: "the offload worker failed: …"
        self.proc: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._lock = asyncio.Lock()
        self.calls = 0  # exchanges answered (for tests and logs)

    async def _start(self) -> tuple[asyncio.StreamWriter, asyncio.StreamReader]:
        proc = self.proc = _spawn(self.module)
        _LIVE[proc.pid] = self
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

    async def exchange(self, frames: Sequence[bytes | memoryview], answer: struct.Struct
                       ) -> tuple[tuple[Any, ...], list[bytes]]:
        """Write `frames`, read the answer: its header's fields and the payload's pieces.
        A list of frames is emptied once written (the pipe no longer holds them while
        the worker works). Shielded: a cancelled caller must not leave half a frame in
        the pipe; the exchange finishes and its answer is dropped."""
        return await asyncio.shield(asyncio.ensure_future(self._exchange(frames, answer)))

    async def _exchange(self, frames: Sequence[bytes | memoryview], answer: struct.Struct
                        ) -> tuple[tuple[Any, ...], list[bytes]]:
        async with self._lock:
            try:
                if self._writer is None or self._reader is None:
                    writer, reader = await self._start()
                else:
                    writer, reader = self._writer, self._reader
                for k in range(len(frames)):
                    view = memoryview(frames[k])
                    for i in range(0, len(view), _CHUNK):  # the transport copies what waits
                        writer.write(view[i:i + _CHUNK])
                        await writer.drain()
                    del view
                if isinstance(frames, list):
                    frames.clear()
                fields = answer.unpack(await reader.readexactly(answer.size))
                n = fields[-1]
                chunks: list[bytes] = []
                while n:
                    chunk = await reader.read(min(n, _CHUNK))
                    if not chunk:
                        raise EOFError("the worker's answer ended early")
                    chunks.append(chunk)
                    n -= len(chunk)
                    await asyncio.sleep(0)  # read() does not yield while data is buffered
            except (OSError, EOFError, ValueError, struct.error) as exc:
                await self._stop(kill=True)  # BrokenPipe, IncompleteRead
                raise OffloadError(f"the {self.name} failed: {exc!r}") from None
            self.calls += 1
            return fields, chunks

    async def _stop(self, kill: bool) -> None:
        proc, writer = self.proc, self._writer
        self.proc = self._writer = self._reader = None
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
        finally:
            _LIVE.pop(proc.pid, None)

    async def close(self) -> None:
        """Stop the worker: end of input, then kill if it does not exit in 5 s."""
        async with self._lock:
            await self._stop(kill=False)


def _spawn(module: str) -> subprocess.Popen[bytes]:
    # vfork + exec: returns at once (the loop's subprocess support forks under uvloop,
    # and gRPC's fork handlers then warn).
    return subprocess.Popen([sys.executable, "-m", module], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)


# The worker's side ----------------------------------------------------------------------

def read_exact(stream: BinaryIO, n: int) -> bytes | None:
    """`n` bytes of the input, or None at its end."""
    data = stream.read(n)
    if len(data) < n:
        return None
    return data


def _trimmer() -> Callable[[], Any]:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


def serve(step: Callable[[BinaryIO], tuple[bytes, bytes] | None]) -> None:
    """A worker's loop: `step` reads one call from the input and returns the answer's
    header and payload (None at the end of the input: the worker exits). Each step runs
    with the cyclic GC off (encoding and decoding build millions of short-lived
    containers: it would slow them severalfold and finds nothing to collect in them);
    after each answer the freed memory goes back to the OS (glibc keeps it otherwise,
    and `memory_limiter` counts what the worker holds)."""
    signal_module.signal(signal_module.SIGINT, signal_module.SIG_IGN)
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # nothing else may write into the answer stream
    trim = _trimmer()
    gc.freeze()
    while True:
        gc.disable()
        try:
            answer = step(inp)
        finally:
            gc.enable()
        if answer is None:
            return
        head, payload = answer
        out.write(head)
        out.write(payload)
        out.flush()
        del answer, payload
        trim()


# Offload: a function call in the worker -------------------------------------------------

class Offload:
    """A worker process running one function call at a time, started on first use."""

    def __init__(self) -> None:
        self._pipe = WorkerPipe(__name__, "offload worker")

    @property
    def calls(self) -> int:
        return self._pipe.calls

    @property
    def _proc(self) -> subprocess.Popen[bytes] | None:
        return self._pipe.proc

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
        frames = [_LEN.pack(len(frame)), frame]
        del frame
        (status, _), chunks = await self._pipe.exchange(frames, _ANSWER)
        if status == _BROKEN:
            raise OffloadError(f"the offload worker could not run the call: "
                               f"{b''.join(chunks).decode(errors='replace')}")
        return status, chunks

    async def close(self) -> None:
        """Stop the worker: end of input, then kill if it does not exit in 5 s."""
        await self._pipe.close()


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


def _step(inp: BinaryIO) -> tuple[bytes, bytes] | None:
    head = read_exact(inp, _LEN.size)
    if head is None:
        return None
    frame = read_exact(inp, _LEN.unpack(head)[0])
    if frame is None:
        return None
    status, payload = _run(frame)
    return _ANSWER.pack(status, len(payload)), payload


if __name__ == "__main__":
    serve(_step)
