"""The `filelog` receiver's lifecycle: the poll loop (discover, read every file, close
files read to their end, checkpoint) and delivery (retried with backoff until the
pipeline accepts a batch; then the file's offset advances and is checkpointed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from pipeline.component import Component, Host, ReceiverCreateSettings, Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.pdata.batch import Batch
from pipeline.pdata.logrecords import LogGroup
from pipeline.receiverhelper.obs import ReceiverObs
from pipeline.receivers.filelog.checkpoint import Checkpoint
from pipeline.receivers.filelog.config import AttrValue, Extra, FileLogConfig
from pipeline.receivers.filelog.reader import READ_SIZE, Reader
from pipeline.receivers.filelog.tracker import Tracker, WatchedFile


class _Stopping(Exception):
    """The receiver is shutting down while a batch waits to be accepted."""


class FileLogReceiver(Component):
    def __init__(self, settings: ReceiverCreateSettings, config: FileLogConfig,
                 *, read_size: int = READ_SIZE):
        self.config = config
        self.log = settings.logger
        self.consumer = settings.consumers[Signal.LOGS]
        self.obs = ReceiverObs(settings, "file")
        self._rid = str(settings.id)
        self._resource: dict[str, AttrValue] = dict(config.resource or {})
        self._checkpoint = Checkpoint(settings, config)
        self._tracker = Tracker(settings, config, self._checkpoint.mark_dirty)
        self._reader = Reader(settings, config, self._deliver, read_size=read_size)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.polls = 0  # completed polls (tests wait on it)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, host: Host) -> None:
        previous = self._checkpoint.load()
        if previous is not None:
            self._tracker.restore(*previous)
        if self._checkpoint.path is None:
            self.log.warning("filelog has no storage_dir/checkpoint_path: offsets are not kept "
                             "across restarts")
        # Find the files now, so that `start_at: end` means "from when start() returned".
        self._tracker.discover(first=True)
        self._save_checkpoint()
        self._task = asyncio.create_task(self._run(), name=f"filelog {self._rid}")

    async def shutdown(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                # Our own shutdown was cancelled (drain timeout): stop the reader too.
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
                raise
            finally:
                self._task = None
                with contextlib.suppress(Exception):
                    await self._checkpoint.settled()
                self._checkpoint.close(self._tracker.files.values(), self._tracker.known)
                self._tracker.close_all()

    async def _run(self) -> None:
        interval = self.config.poll_interval
        while not self._stop.is_set():
            busy = False
            try:
                busy = await self._poll()
            except _Stopping:
                return
            except Exception:
                self.log.exception("filelog poll failed")
            self.polls += 1
            if busy:
                await asyncio.sleep(0)
            else:
                await self._wait(interval)

    async def _wait(self, seconds: float) -> bool:
        """Sleep; True if the receiver is stopping."""
        if self._stop.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self._stop.is_set()

    async def _poll(self) -> bool:
        """One round over all files; True if some file has more data right away."""
        tracker = self._tracker
        tracker.discover()
        busy = False
        for f in list(tracker.files.values()):
            if self._stop.is_set():
                raise _Stopping
            more = await self._reader.read(f)
            busy = busy or more
            if f.lost_polls >= 2 and not more:
                # Rotated away or deleted, read to the end: emit what is pending, close.
                await self._reader.flush_pending(f)
                tracker.untrack(f)
        tracker.end_poll()
        if self._checkpoint.dirty:
            self._save_checkpoint()
        return busy

    # -- delivery ---------------------------------------------------------------------

    async def _deliver(self, f: WatchedFile, bodies: list[bytes], extras: list[Extra] | None,
                       raw_len: int) -> None:
        """Hand the records to the pipeline until accepted; then advance the offset by
        `raw_len` bytes and checkpoint. Raises `_Stopping` if shut down meanwhile."""
        if bodies:
            # Python records, built from the lines only if a processor asks for them;
            # encoded as OTLP (from the lines directly) only if an exporter needs it.
            group = LogGroup.from_lines(
                bodies, f.attrs, time.time_ns(),
                extras=extras if extras is None else [e or None for e in extras],
                resource=dict(self._resource))
            batch = Batch(Signal.LOGS, logs=[group])
            await self._checkpoint.settled()
            await self._until_accepted(f, batch, len(bodies))
        f.offset += raw_len
        if bodies:
            # Written while the next batch is read and built; awaited before that batch
            # is delivered, so after a crash at most the batch in flight comes again.
            self._save_checkpoint()
        else:
            self._checkpoint.dirty = True
        await asyncio.sleep(0)

    async def _until_accepted(self, f: WatchedFile, batch: Batch, records: int) -> None:
        """Deliver, retrying refusals with exponential backoff, forever; a permanent
        rejection is logged and the batch skipped."""
        backoff = self.config.retry_on_failure
        delay = backoff.initial_interval
        while True:
            if self._stop.is_set():
                raise _Stopping
            try:
                await self.obs.deliver(self.consumer, batch)
                return
            except RetryableError as exc:
                wait = max(delay, min(exc.retry_after or 0.0, 60.0))
            except PermanentError as exc:
                self.log.error("pipeline rejected a batch of file lines; skipped",
                               extra={"path": f.path, "records": records,
                                      "error": str(exc)})
                return
            except Exception:
                wait = delay  # logged by deliver(); a bug downstream, keep the data
            if await self._wait(wait):
                raise _Stopping
            delay = min(delay * 2, backoff.max_interval)

    def _save_checkpoint(self) -> None:
        self._checkpoint.save(self._tracker.files.values(), self._tracker.known)
