"""What both engines share: the directory per exporter and its lock, the engine choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config.retry import ExporterSettings
from pipeline.exporterhelper.diskqueue import make_store, queue_directory
from pipeline.exporterhelper.diskqueue.segment import SegmentLogStore
from tests.unit.exporterhelper.diskqueue.helpers import ENGINES, make_queue


@pytest.mark.parametrize("engine", ENGINES)
async def test_one_process_per_directory(tmp_path: Path, engine: str) -> None:
    q = make_queue(tmp_path, engine)
    await q.open()
    q2 = make_queue(tmp_path, engine)
    with pytest.raises(OSError, match="in use by another process"):
        await q2.open()
    await q.close()


def test_queue_directory_per_exporter_id(tmp_path: Path) -> None:
    assert queue_directory(tmp_path, "otlp/jaeger") == tmp_path / "otlp%2Fjaeger"
    assert queue_directory(tmp_path, "otlp") == tmp_path / "otlp"


def test_segment_store_is_the_default_engine() -> None:
    s = ExporterSettings.model_validate({"sending_queue": {"storage": "disk",
                                                           "directory": "/tmp/x"}})
    assert s.sending_queue.engine == "segment"
    assert isinstance(make_store("segment", Path("/tmp/x"), True, 1), SegmentLogStore)
