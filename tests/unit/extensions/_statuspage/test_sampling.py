"""The tail sampling section of the status page: read from the host's processors by
shape, passed to /status.json, rendered escaped."""

from __future__ import annotations

from pipeline.component import (
    ComponentEntry,
    ComponentID,
    Kind,
    Signal,
)
from pipeline.extensions._statuspage.render import render_html
from pipeline.extensions._statuspage.sampling import read_sampling, render_sampling
from pipeline.processors.tail_sampling.config import TailSamplingConfig
from pipeline.processors.tail_sampling.processor import TailSamplingProcessor
from tests.support import Sink, processor_settings
from tests.unit.extensions._statuspage.hosts import EntriesHost
from tests.unit.processors.tail_sampling.spans import S, batch


async def test_read_and_render_a_tail_sampling_processor() -> None:
    cfg = TailSamplingConfig.model_validate({"policies": [
        {"name": "errors<b>", "type": "status_code",
         "status_code": {"status_codes": ["ERROR"]}}]})
    proc = TailSamplingProcessor(processor_settings(
        "tail_sampling/gw", next_consumer=Sink(), signal=Signal.TRACES), cfg)
    await proc.consume(batch([S(1, status="ERROR"), S(2), S(3)]))
    await proc.decide_due(float("inf"))
    await proc.consume(batch([S(9)]))
    pid = ComponentID.parse("tail_sampling/gw")
    host = EntriesHost([ComponentEntry(Kind.PROCESSOR, pid, proc, "traces"),
                  ComponentEntry(Kind.PROCESSOR, pid, proc, "traces")])  # once
    items = read_sampling(host)
    assert len(items) == 1
    s = items[0]
    assert (s["processor"], s["pipeline"]) == ("tail_sampling/gw", "traces")
    assert (s["traces_sampled"], s["traces_not_sampled"], s["traces_in_memory"]) == (1, 2, 1)
    assert s["policies"] == [{"name": "errors<b>", "sampled": 1, "not_sampled": 2}]
    html = render_sampling(items)
    assert '<section class="card sampling" data-processor="tail_sampling/gw"' in html
    assert "errors&lt;b&gt;" in html
    assert "<b>errors" not in html
    assert '<b class="sampled">1</b>' in html
    assert "33.3%" in html
    page = render_html({"status": "healthy", "sampling": items}, 0.0)
    assert "<h2>Tail sampling</h2>" in page


def test_no_processor_no_section() -> None:
    assert read_sampling(None) == []
    assert render_sampling([]) == ""
    assert "Tail sampling" not in render_html({"status": "healthy"}, 0.0)


