"""The Authenticator on its own: credential checks, token-file reloads, rate-limited
warnings. (Over real sockets, through the otlp and jsonlogs receivers:
tests/unit/receivers/test_receiver_auth.py.)"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pipeline.config.tls import ServerAuthSettings
from pipeline.receiverhelper.auth import INVALID, MISSING, Authenticator
from tests.support import receiver_settings

TOKEN = "s3cr3t-t0ken-value"


def test_authenticator_rate_limit_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    settings = receiver_settings("otlp")
    auth = Authenticator(ServerAuthSettings(bearer_token=TOKEN), settings, "http",
                         clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="otelpipe")
    for t in (100.0, 101.0, 109.9, 110.0, 110.5):
        now[0] = t
        auth.rejected(MISSING, "10.0.0.1")
    logged = [r.__dict__["suppressed"] for r in caplog.records]
    assert logged == [0, 2]


def test_authenticator_checks(tmp_path: Path) -> None:
    settings = receiver_settings("otlp")
    f = tmp_path / "tokens"
    f.write_text("# rotated weekly\nfile-token-1\n\n  file-token-2  \n")
    auth = Authenticator(ServerAuthSettings.model_validate(
        {"bearer_token_file": str(f), "basic": {"username": "u", "password": "p w"}}),
        settings, "http")
    assert auth.check("Bearer file-token-1") is None
    assert auth.check("Bearer file-token-2") is None
    assert auth.check("Basic dTpwIHc=") is None  # u:p w
    assert auth.check("basic dTpwIHc=") is None
    assert auth.check("Basic dTpwdw==") == INVALID
    assert auth.check("Bearer # rotated weekly") == INVALID
    assert auth.check("Bearer ünïcode") == INVALID
    assert auth.check("") == MISSING
    assert auth.check(None) == MISSING
    # The file is re-read when it changes; the old tokens stop working.
    f.write_text("file-token-3\n")
    os.utime(f, (1, 1))
    assert auth.reload_if_changed()
    assert auth.check("Bearer file-token-3") is None
    assert auth.check("Bearer file-token-1") == INVALID
    assert not auth.reload_if_changed()
