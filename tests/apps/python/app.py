"""The Python real app: plain Flask, no OpenTelemetry code at all.

Run under the distro's auto-instrumentation (scripts/apps.sh python PORT):
    opentelemetry-instrument python app.py PORT
Routes: /ok (200), /boom (500), /slow (200 after ~300 ms), /users/<id> (200).
Each request logs one line through the standard logging module; with
OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED=true it becomes an OTLP log record
inside the request's span.
"""

import logging
import sys
import time

from flask import Flask

app = Flask(__name__)
log = logging.getLogger("realapp")
log.setLevel(logging.INFO)


@app.get("/ok")
def ok() -> str:
    log.info("ok handled")
    return "ok"


@app.get("/boom")
def boom() -> tuple[str, int]:
    log.error("boom handled")
    return "boom", 500


@app.get("/slow")
def slow() -> str:
    time.sleep(0.3)
    log.info("slow handled")
    return "slow"


@app.get("/users/<user_id>")
def user(user_id: str) -> str:
    log.info("user %s handled", user_id)
    return f"user {user_id}"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
