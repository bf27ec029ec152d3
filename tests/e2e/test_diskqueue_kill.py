"""PersistentQueue crash safety: a child Python process puts batches (8 concurrent puts
share one fsync) and reports each acknowledged put; it is SIGKILLed mid-stream, and every
acknowledged batch must be in the queue when it is opened again, in order."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.support import REPO
from tests.unit.exporterhelper.diskqueue.helpers import ENGINES, drain, make_queue, span_names

CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from pipeline.exporterhelper.diskqueue import PersistentQueue, make_store
    from tests.builders import traces

    async def main():
        q = PersistentQueue(make_store(sys.argv[2], Path(sys.argv[1]), True, 1 << 16),
                            10**9, "requests", False, "child")
        await q.open()
        i = 0
        while True:
            # 8 concurrent puts share one fsync (group commit)
            await asyncio.gather(*(q.put(traces(3, start=i + k)) for k in range(8)))
            for k in range(8):
                print(i + k, flush=True)
            i += 8

    asyncio.run(main())
""")


def put_until_killed(path: Path, engine: str, at_least: int) -> list[int]:
    """Run CHILD until it reported `at_least` puts, SIGKILL it; the puts it reported."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), engine],
                             stdout=subprocess.PIPE, cwd=REPO, text=True)
    assert child.stdout is not None
    deadline = time.monotonic() + 20
    acked: list[int] = []
    while len(acked) < at_least and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acked.append(int(line))
    child.send_signal(signal.SIGKILL)
    rest = child.communicate()[0]
    return acked + [int(x) for x in rest.split()]


@pytest.mark.parametrize("engine", ENGINES)
async def test_sigkill_loses_nothing_that_was_acknowledged(tmp_path: Path, engine: str) -> None:
    acked = put_until_killed(tmp_path, engine, 400)
    assert len(acked) >= 400
    q = make_queue(tmp_path, engine, cache_bytes=0)
    await q.open()
    got = await drain(q, q.size)
    starts = [int(span_names(b)[0].split("-")[1]) for b in got]
    # Every batch whose put returned is there, in order; a put in flight at the kill may
    # be there too (written, not yet reported).
    assert set(acked) <= set(starts)
    assert starts == sorted(starts)
    await q.close()
