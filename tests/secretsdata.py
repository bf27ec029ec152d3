"""A backend that leaks: it answers every request with a status and a body quoting
the URL it was called with and the Authorization header it got, as careless
backends do. Tests point exporters at it with credentials in the URL and check
that no secret comes back in an error, a log line or a sender's answer."""

from __future__ import annotations

import base64
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiohttp import web

from tests.support import free_port

USER = "alice"
PASSWORD = "pw-S3cr3t"  # a test secret, searched for in outputs
API_KEY = "KEY-S3cr3t"
SECRETS = (PASSWORD, API_KEY)


def basic(user: str = USER, password: str = PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def leaked(text: str | bytes) -> list[str]:
    """The secrets (also base64 of the basic credentials) found in `text`."""
    s = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return [x for x in (*SECRETS, basic()[6:]) if x in s]


@dataclass
class LeakyBackend:
    status: int = 400
    url: str = ""  # http://127.0.0.1:<port>
    port: int = 0
    authorizations: list[str | None] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def answer(self, path_qs: str, authorization: str | None) -> tuple[int, bytes]:
        self.authorizations.append(authorization)
        self.paths.append(path_qs)
        body = (f"bad request to http://{USER}:{PASSWORD}@127.0.0.1:{self.port}{path_qs} "
                f"(Authorization: {authorization}; api_key={API_KEY})")
        return self.status, body.encode()

    def with_credentials(self, path: str = "") -> str:
        """This backend's URL with userinfo (and `path`)."""
        return f"http://{USER}:{PASSWORD}@127.0.0.1:{self.port}{path}"


@asynccontextmanager
async def leaky_backend(status: int = 400) -> AsyncIterator[LeakyBackend]:
    """A LeakyBackend on the running event loop (for exporters in unit tests)."""
    backend = LeakyBackend(status)

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        status, body = backend.answer(request.path_qs, request.headers.get("Authorization"))
        return web.Response(status=status, body=body, content_type="text/plain")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    backend.port = free_port()
    backend.url = f"http://127.0.0.1:{backend.port}"
    await web.TCPSite(runner, "127.0.0.1", backend.port).start()
    try:
        yield backend
    finally:
        await runner.cleanup()


@contextmanager
def leaky_backend_thread(status: int = 400) -> Iterator[LeakyBackend]:
    """A LeakyBackend in a thread (for a real `otelpipe run` in e2e tests)."""
    backend = LeakyBackend(status)

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(n)
            status, body = backend.answer(self.path, self.headers.get("Authorization"))
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET = do_HEAD = _any

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    backend.port = server.server_address[1]
    backend.url = f"http://127.0.0.1:{backend.port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield backend
    finally:
        server.shutdown()
        server.server_close()


def assert_no_secret(*texts: str | bytes) -> None:
    for text in texts:
        assert leaked(text) == [], f"a secret leaked into: {text!r}"
