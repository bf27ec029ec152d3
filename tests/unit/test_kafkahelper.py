"""Kafka settings and helpers: importing them loads no Kafka client; errors map onto
the pipeline's retryable / permanent split."""

from __future__ import annotations

import subprocess
import sys

from aiokafka import errors as kerrors

from pipeline.kafkahelper import describe, is_permanent


def test_settings_and_helpers_do_not_import_aiokafka() -> None:
    code = ("import sys, pipeline.config.kafka, pipeline.kafkahelper; "
            "print('aiokafka' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_error_mapping() -> None:
    assert is_permanent(kerrors.MessageSizeTooLargeError())
    assert is_permanent(kerrors.InvalidTopicError())
    assert not is_permanent(kerrors.KafkaConnectionError())
    assert describe(ValueError()) == "ValueError"
    assert describe(TimeoutError("no answer")) == "TimeoutError: no answer"
