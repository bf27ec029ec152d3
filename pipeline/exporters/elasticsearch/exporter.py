"""The `elasticsearch` exporter: bulk requests of a batch's documents (split at
`max_request_bytes`), per-document outcomes from the bulk response, and what is left
of a partly failed batch kept for its retry."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from pipeline import __version__
from pipeline.component import ExporterCreateSettings, Host, Signal
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporterhelper import Exporter
from pipeline.exporterhelper.http import client_session, error_for_status, gzip_body, post, safe_url
from pipeline.exporters.elasticsearch.config import ElasticsearchExporterConfig
from pipeline.exporters.elasticsearch.documents import DocumentBuilder
from pipeline.pdata.batch import Batch
from pipeline.telemetry.metrics import CounterSpec

if TYPE_CHECKING:
    import aiohttp

BULK_ITEMS = CounterSpec(
    "otelpipe_elasticsearch_exporter_bulk_items",
    "Per-document results of bulk requests: ok (indexed or already there), retry "
    "(429/5xx, sent again alone), rejected (other 4xx such as mapping errors; dropped).",
    ("exporter", "outcome"))
REJECTED_DOCUMENTS = CounterSpec(
    "otelpipe_elasticsearch_exporter_rejected_documents",
    "Documents the backend rejected permanently, by error type "
    "(mapper_parsing_exception …).", ("exporter", "reason"))


class _RequestRefused(PermanentError):
    """A whole bulk request answered with a non-retryable status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass
class _Progress:
    """What is left of a batch after a partly failed bulk request."""

    batch: Batch
    pending: list[bytes]          # action + document lines still to deliver
    ok: int = 0                   # documents delivered
    rejected: int = 0             # documents dropped for good
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class BulkResult:
    ok: int = 0
    retry: list[bytes] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    first_error: str = ""
    throttled: bool = False


class ElasticsearchExporter(Exporter):
    def __init__(self, settings: ExporterCreateSettings, config: ElasticsearchExporterConfig):
        super().__init__(settings, config)
        self.config = config
        self.url = config.url()
        self._session: aiohttp.ClientSession | None = None
        self._gzip = config.compression == "gzip"
        headers = {"User-Agent": f"otelpipe/{__version__}", **config.request_headers(),
                   "Content-Type": "application/x-ndjson"}
        if self._gzip:
            headers["Content-Encoding"] = "gzip"
        self._headers = headers
        self._builder = DocumentBuilder(config)
        self._progress: OrderedDict[int, _Progress] = OrderedDict()
        # Batches in a retry at once: one per queue consumer, or per waiting caller
        # without a queue. Evicting one costs duplicates (it is sent whole), never loss.
        self._max_progress = config.sending_queue.num_consumers + 64
        t = settings.telemetry
        bulk_items = t.counter(BULK_ITEMS)
        self._items = {o: bulk_items.labels(self.id, o) for o in ("ok", "retry", "rejected")}
        self._rejected_docs = t.counter(REJECTED_DOCUMENTS)

    async def start_exporter(self, host: Host) -> None:
        self._session = client_session(self.config, [self.url],
                                       limit=self.config.max_idle_conns, headers=self._headers)

    async def shutdown_exporter(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._progress.clear()

    def documents(self, request: Any) -> list[bytes]:
        """One `action\\ndocument\\n` pair per log record, in request order."""
        return self._builder.documents(request)

    # Sending --------------------------------------------------------------------------

    def _progress_for(self, batch: Batch) -> _Progress:
        key = id(batch)
        prog = self._progress.get(key)
        if prog is not None and prog.batch is batch:
            self._progress.move_to_end(key)
            return prog
        prog = _Progress(batch, self.documents(batch.message))
        self._progress[key] = prog
        while len(self._progress) > self._max_progress:
            # A batch whose retries ran out is never sent again: forget the oldest.
            self._progress.popitem(last=False)
        return prog

    def _chunks_end(self, docs: list[bytes], start: int) -> int:
        size, end, limit = 0, start, self.config.max_request_bytes
        while end < len(docs):
            size += len(docs[end])
            if size > limit and end > start:
                break
            end += 1
        return end

    async def send(self, batch: Batch) -> int | None:
        if batch.signal is not Signal.LOGS:
            raise PermanentError(f"the elasticsearch exporter takes logs, not "
                                 f"{batch.signal.value}")
        prog = self._progress_for(batch)
        docs = prog.pending
        retry: list[bytes] = []
        start = 0
        retry_after: float | None = None
        throttled = False
        errors: list[str] = []
        fatal: PermanentError | None = None
        try:
            while start < len(docs):
                end = self._chunks_end(docs, start)
                chunk = docs[start:end]
                try:
                    result = await self._bulk(chunk)
                except RetryableError as exc:
                    # The whole request was refused for now: keep all of it pending.
                    retry.extend(chunk)
                    retry.extend(docs[end:])
                    start = len(docs)
                    retry_after, throttled = exc.retry_after, exc.throttle
                    errors.append(str(exc))
                    break
                except PermanentError as exc:
                    fatal = exc
                    dropped = len(docs) - start
                    prog.rejected += dropped
                    self._items["rejected"].inc(dropped)
                    reason = f"http_{exc.status}" if isinstance(exc, _RequestRefused) \
                        else "request"
                    prog.reasons[reason] = prog.reasons.get(reason, 0) + dropped
                    self._rejected_docs.labels(self.id, reason).inc(dropped)
                    start = len(docs)
                    break
                start = end
                prog.ok += result.ok
                self._items["ok"].inc(result.ok)
                if result.retry:
                    retry.extend(result.retry)
                    self._items["retry"].inc(len(result.retry))
                    throttled = throttled or result.throttled
                    errors.append(result.first_error)
                for reason, n in result.rejected.items():
                    prog.rejected += n
                    prog.reasons[reason] = prog.reasons.get(reason, 0) + n
                    self._items["rejected"].inc(n)
                    self._rejected_docs.labels(self.id, reason).inc(n)
                if result.rejected:
                    self.log.warning("the backend rejected documents; dropped", extra={
                        "rejected": sum(result.rejected.values()),
                        "reasons": dict(result.rejected), "error": result.first_error})
        finally:
            # Also on cancellation (timeout): what was not answered stays pending.
            prog.pending = retry + docs[start:]
        if prog.pending:
            n = len(prog.pending)
            raise RetryableError(
                f"{safe_url(self.url.split('?')[0])}: {n} of {batch.items} documents refused "
                f"for now, sending those again: {errors[-1] if errors else ''}".rstrip(": "),
                retry_after=retry_after, throttle=throttled)
        self._progress.pop(id(batch), None)
        if fatal is not None and prog.ok == 0:
            raise PermanentError(str(fatal), rejected=batch.items)
        if fatal is not None:
            self.log.warning("the backend refused a bulk request; its documents are dropped",
                             extra={"error": str(fatal), "rejected": prog.rejected})
        return prog.rejected or None

    async def _bulk(self, docs: list[bytes]) -> BulkResult:
        """Post one bulk request; per-document results. Raises for whole-request failures."""
        assert self._session is not None
        body = b"".join(docs)
        if self._gzip:
            body = await gzip_body(body)
        resp = await post(self._session, self.url, body)
        if resp.ok:
            return self.parse_bulk_response(resp.body, docs)
        message = resp.message()
        text = f"HTTP {resp.status}" + (f": {message}" if message else "")
        err = error_for_status(resp.status, text, resp.retry_after)
        if isinstance(err, RetryableError):
            raise err
        raise _RequestRefused(text, resp.status)

    @staticmethod
    def parse_bulk_response(content: bytes, docs: list[bytes]) -> BulkResult:
        """Sort the documents of a 2xx bulk response into ok / retry / rejected."""
        result = BulkResult()
        try:
            data = orjson.loads(content) if content else {}
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            # Unreadable: nothing says any document was taken; send them all again.
            result.retry = list(docs)
            result.first_error = "unreadable bulk response"
            return result
        if not data.get("errors"):
            result.ok = len(docs)
            return result
        items = data.get("items")
        if not isinstance(items, list):
            items = []
        for i, doc in enumerate(docs):
            res: Any = None
            if i < len(items) and isinstance(items[i], dict) and items[i]:
                res = next(iter(items[i].values()))
            if not isinstance(res, dict):
                result.retry.append(doc)  # no answer for this document
                continue
            try:
                st = int(res.get("status", 0))
            except (TypeError, ValueError):
                st = 0
            if 200 <= st < 300 or st == 409:
                result.ok += 1
                continue
            err = res.get("error")
            if isinstance(err, dict):
                reason = str(err.get("type") or "error")
                detail = f"{reason}: {err.get('reason', '')}"
            else:
                reason = "error"
                detail = str(err or f"status {st}")
            if st == 429 or st >= 500 or st == 0:
                result.retry.append(doc)
                result.throttled = result.throttled or st == 429
            else:
                result.rejected[reason] = result.rejected.get(reason, 0) + 1
            if not result.first_error:
                result.first_error = f"status {st}: {detail}"[:500]
        return result
