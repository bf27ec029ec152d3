"""The HTTP client pieces every HTTP exporter shares.

- `client_session`: one aiohttp session per exporter, TLS from the shared
  `ClientSettings` (only for https:// URLs), default headers, a pool limit;
- `post`: POST and read the whole answer; a connection failure or timeout of
  aiohttp becomes a `RetryableError` (the backend may come back);
- `error_for_status`: a non-2xx answer as the error to raise, retryable by the
  usual rule (429 and every 5xx; an exporter whose protocol says otherwise
  passes its own rule) with `Retry-After` honoured (`retry.parse_retry_after`),
  else permanent;
- `status_message`: the message of an error body.

Secrets: every text these helpers put into an error is masked
(`pipeline.config.secrets.mask_text`): URLs lose their password and secret
query values, also inside a backend's answer (some echo the request).
Exporters build their own messages from `safe_url(url)`.

Retry, backoff and queueing stay in `pipeline.exporterhelper` (`exporter`,
`retry`, `queue`): these helpers only classify one attempt.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from google.protobuf.message import DecodeError
from google.rpc import status_pb2

from pipeline.config.secrets import mask_text, mask_url
from pipeline.config.tls import ClientSettings
from pipeline.errors import PermanentError, RetryableError
from pipeline.exporterhelper.retry import parse_retry_after

if TYPE_CHECKING:
    import aiohttp

# Longest server message quoted in an error or a log line.
MAX_MESSAGE_CHARS = 300


# Bodies larger than this are gzipped in a worker thread (zlib releases the GIL): a
# megabyte costs ~20-200 ms of CPU, which must not hold the event loop.
INLINE_GZIP_BYTES = 64 * 1024


def _gzip(body: bytes) -> bytes:
    return zlib.compress(body, 6, 31)  # wbits 31: a gzip stream


async def gzip_body(body: bytes) -> bytes:
    """`body` as a gzip stream, compressed off the event loop when it is large."""
    if len(body) <= INLINE_GZIP_BYTES:
        return _gzip(body)
    return await asyncio.to_thread(_gzip, body)


def safe_url(url: Any) -> str:
    """`url` for an error or a log line: password and secret query values masked."""
    return mask_url(url)


def status_message(body: bytes, content_type: str) -> str:
    """The message of a google.rpc.Status body (proto or JSON), else the body's start;
    URLs and secret `name=value` pairs in it masked."""
    return mask_text(_status_message(body, content_type))


def _status_message(body: bytes, content_type: str) -> str:
    if not body:
        return ""
    if "json" in content_type:
        try:
            data = orjson.loads(body)
            if isinstance(data, dict) and isinstance(data.get("message"), str):
                return str(data["message"])[:MAX_MESSAGE_CHARS]
        except orjson.JSONDecodeError:
            pass
    elif "protobuf" in content_type:
        st = status_pb2.Status()
        try:
            st.ParseFromString(body)
            if st.message:
                return str(st.message)[:MAX_MESSAGE_CHARS]
        except DecodeError:
            pass
    return body[:MAX_MESSAGE_CHARS].decode("utf-8", "replace")


def retryable_status(status: int) -> bool:
    """The usual rule: 429 (throttled) and every 5xx may succeed later."""
    return status == 429 or status >= 500


def error_for_status(status: int, text: str, retry_after: str | None,
                     retryable: Callable[[int], bool] = retryable_status,
                     ) -> RetryableError | PermanentError:
    """The error for a non-2xx answer: retryable (with Retry-After, throttled on
    429) when `retryable(status)`, else permanent. URLs in `text` are masked."""
    text = mask_text(text)
    if retryable(status):
        return RetryableError(text, retry_after=parse_retry_after(retry_after),
                              throttle=status == 429)
    return PermanentError(text)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str
    retry_after: str | None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def message(self) -> str:
        """The server's error message (see `status_message`), stripped."""
        return status_message(self.body, self.content_type).strip()


async def post(session: aiohttp.ClientSession, url: Any, data: bytes, *,
               where: str | None = None, **kwargs: Any) -> Response:
    """POST `data` and read the whole answer. aiohttp's connection errors and
    timeouts raise `RetryableError` "<where>: <error>" (`where` defaults to the
    URL), masked."""
    try:
        import aiohttp  # loaded with the session (`client_session`)

        async with session.post(url, data=data, **kwargs) as resp:
            return Response(resp.status, await resp.read(),
                            resp.headers.get("Content-Type", ""),
                            resp.headers.get("Retry-After"))
    except aiohttp.ClientError as exc:
        raise RetryableError(mask_text(
            f"{where if where is not None else url}: {type(exc).__name__}: {exc}")) from None


def client_session(config: ClientSettings, urls: Iterable[str], *, limit: int,
                   headers: Mapping[str, str] | None = None,
                   timeout: float | None = None) -> aiohttp.ClientSession:
    """A session for an exporter's `urls`: TLS from `config.tls` if any is https://,
    at most `limit` connections, `headers` on every request. `timeout` (total, per
    request) is None where the exporter helper's `timeout` already bounds a send."""
    import aiohttp

    uses_tls = any(str(u).startswith("https://") for u in urls)
    ssl: Any = config.tls.ssl_context() if uses_tls else False
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl, limit=limit),
                                 headers=headers, timeout=aiohttp.ClientTimeout(total=timeout),
                                 auto_decompress=True)
