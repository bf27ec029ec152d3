from __future__ import annotations

from typing import Any

import pytest
import yaml

from pipeline.component import ComponentID, Kind, Signal
from pipeline.config.model import Config, build_json_schema, validate_config
from pipeline.config.types import parse_duration
from pipeline.errors import ConfigError
from pipeline.exporters.file import FileConfig
from pipeline.processors.batch import BatchConfig
from tests.unit.config.registry import test_registry


def validate(text: str) -> Config:
    return validate_config(yaml.safe_load(text), test_registry())


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        validate(text)
    return exc.value.problems


VALID = """
receivers: {anyrecv: {}, logsrecv: {}}
processors: {batch: {timeout: 50ms}, memory_limiter: {limit_mib: 100}}
exporters: {nop: {}, file/t: {path: /tmp/x.jsonl}}
connectors: {forward: {}}
extensions: {health: {endpoint: "127.0.0.1:0"}}
service:
  extensions: [health]
  shutdown_timeout: 3s
  pipelines:
    traces: {receivers: [anyrecv], processors: [memory_limiter, batch],
             exporters: [nop, forward]}
    traces/2: {receivers: [forward], exporters: [file/t]}
    logs: {receivers: [anyrecv, logsrecv], processors: [batch], exporters: [nop]}
"""


def test_valid_config_is_typed() -> None:
    cfg = validate(VALID)
    assert cfg.warnings == []
    assert cfg.extensions == (ComponentID("health"),)
    assert cfg.service.shutdown_timeout == 3.0
    batch = cfg.components[Kind.PROCESSOR][ComponentID("batch")]
    assert isinstance(batch, BatchConfig)
    assert (batch.timeout, batch.send_batch_size) == (0.05, 8192)
    assert cfg.components[Kind.EXPORTER][ComponentID("file", "t")] == FileConfig(
        path="/tmp/x.jsonl")
    p = cfg.pipelines["traces"]
    assert (p.signal, p.receivers, p.processors, p.exporters) == (
        Signal.TRACES, (ComponentID("anyrecv"),),
        (ComponentID("memory_limiter"), ComponentID("batch")),
        (ComponentID("nop"), ComponentID("forward")))
    assert cfg.pipelines["traces/2"].signal is Signal.TRACES
    assert cfg.pipelines["logs"].signal is Signal.LOGS


def test_every_component_problem_with_its_key_path() -> None:
    assert problems("""
receivers:
  otlpp: {}
  anyrecv: {}
processors:
  batch: {send_batch_sise: 10, send_batch_size: abc}
  memory_limiter: {}
exporters:
  file: {}
  file/b: {path: x, rotation: {max_megabyte: 1}}
  debugg: {}
extensions:
  health: {endpoint: 13133}
service:
  pipelines:
    traces: {receivers: [anyrecv], exporters: [file/b]}
""") == [
        'receivers.otlpp: unknown receiver type "otlpp"',
        "processors.batch.send_batch_size: input should be a valid integer, unable to parse "
        "string as an integer",
        'processors.batch.send_batch_sise: unknown key (did you mean "send_batch_size"?)',
        "processors.memory_limiter: set exactly one of limit_mib or limit_percentage",
        "exporters.file.path: field required",
        'exporters.file/b.rotation.max_megabyte: unknown key (did you mean "max_megabytes"?)',
        'exporters.debugg: unknown exporter type "debugg" (did you mean "debug"?)',
        "extensions.health.endpoint: expected host:port",
    ]


def test_pipeline_problems() -> None:
    assert problems("""
receivers: {logsrecv: {}, anyrecv: {}}
processors: {batch: {}}
exporters: {nop: {}, file/b: {path: x}}
extensions: {health: {}}
service:
  extensions: [healthh]
  pipelines:
    traces:
      receivers: [logsrecv, nope]
      processors: [batch, batch]
      exporters: [file/b, nop/x]
    logs:
      receivers: [anyrecv]
      exporters: [file/c]
    tracez:
      receivers: [anyrecv]
      exporters: [nop]
""") == [
        'service.pipelines.traces.receivers[0]: receiver "logsrecv" does not support traces '
        "(it supports logs)",
        'service.pipelines.traces.receivers[1]: "nope" is not defined under receivers or '
        "connectors",
        'service.pipelines.traces.processors[1]: "batch" is listed twice',
        'service.pipelines.traces.exporters[1]: "nop/x" is not defined under exporters or '
        'connectors (did you mean "nop"?)',
        'service.pipelines.logs.exporters[0]: "file/c" is not defined under exporters or '
        'connectors (did you mean "file/b"?)',
        "service.pipelines.tracez: a pipeline id is traces, logs or metrics, optionally "
        'followed by /name (did you mean "traces"?)',
        'service.extensions[0]: extension "healthh" is not defined under extensions '
        '(did you mean "health"?)',
    ]


def test_pipeline_of_invalid_component_reports_only_the_component() -> None:
    assert problems("""
receivers: {anyrecv: {}}
exporters: {file: {}}
service:
  pipelines:
    traces: {receivers: [anyrecv], exporters: [file]}
""") == ["exporters.file.path: field required"]


def test_unknown_key_in_pipeline_and_service() -> None:
    assert problems("""
receivers: {anyrecv: {}}
exporters: {nop: {}}
service:
  pipeline: {}
  pipelines:
    traces: {receivers: [anyrecv], exporter: [nop]}
""") == [
        "service.pipelines.traces.exporters: field required",
        'service.pipelines.traces.exporter: unknown key (did you mean "exporters"?)',
        'service.pipeline: unknown key (did you mean "pipelines"?)',
    ]


def test_unknown_top_level_key_and_missing_service() -> None:
    assert problems("receiver: {}\nexporters: {nop: {}}\n") == [
        'receiver: unknown top-level key (did you mean "receivers"?)',
        "service: field required (it lists the pipelines to run)",
    ]


def test_empty_pipelines_and_wrong_types() -> None:
    assert problems("""
receivers: [anyrecv]
exporters: {nop: 5}
service: {pipelines: {}, shutdown_timeout: soon}
""") == [
        "receivers: expected a mapping of component ids to settings",
        "exporters.nop: expected a mapping of settings, got int",
        "service.pipelines: dictionary should have at least 1 item after validation, not 0",
        "service.shutdown_timeout: invalid duration 'soon': expected a number of seconds or "
        "e.g. 5s, 200ms, 1m30s",
    ]


def test_empty_receivers_list() -> None:
    assert problems("""
exporters: {nop: {}}
service: {pipelines: {traces: {receivers: [], exporters: [nop]}}}
""") == ["service.pipelines.traces.receivers: list should have at least 1 item after "
         "validation, not 0"]


def test_invalid_component_id() -> None:
    assert problems("""
exporters: {"nop/": {}}
service: {pipelines: {traces: {receivers: [anyrecv], exporters: [nop]}}}
""")[0] == "exporters.nop/: invalid component id 'nop/': expected type[/name]"


def test_cycle_through_connectors() -> None:
    assert problems("""
receivers: {anyrecv: {}}
exporters: {nop: {}}
connectors: {forward/a: {}, forward/b: {}}
service:
  pipelines:
    traces/in: {receivers: [anyrecv], exporters: [forward/a]}
    traces/mid: {receivers: [forward/a], exporters: [forward/b, nop]}
    traces/back: {receivers: [forward/b], exporters: [forward/a]}
""") == ["service.pipelines: cycle through connectors: traces/mid -> [forward/b] -> "
         "traces/back -> [forward/a] -> traces/mid"]


def test_connector_feeding_its_own_pipeline() -> None:
    assert problems("""
receivers: {anyrecv: {}}
connectors: {forward: {}}
service:
  pipelines:
    logs: {receivers: [anyrecv, forward], exporters: [forward]}
""") == ["service.pipelines: cycle through connectors: logs -> [forward] -> logs"]


def test_connector_used_on_one_side_only() -> None:
    assert problems("""
receivers: {anyrecv: {}}
exporters: {nop: {}}
connectors: {forward: {}, forward/r: {}}
service:
  pipelines:
    traces: {receivers: [anyrecv], exporters: [forward, nop]}
    logs: {receivers: [forward/r], exporters: [nop]}
""") == [
        "connectors.forward: a connector must be used as a receiver of some pipeline too",
        "connectors.forward/r: a connector must be used as an exporter of some pipeline too",
    ]


def test_connector_between_signals_it_cannot_convert() -> None:
    assert problems("""
receivers: {anyrecv: {}}
exporters: {nop: {}}
connectors: {forward: {}}
service:
  pipelines:
    traces: {receivers: [anyrecv], exporters: [forward]}
    logs: {receivers: [forward], exporters: [nop]}
""") == [
        'service.pipelines.traces.exporters: connector "forward" cannot take traces into any '
        "pipeline it feeds (supported: logs->logs, metrics->metrics, traces->traces)",
        'service.pipelines.logs.receivers: connector "forward" cannot emit logs from the '
        "pipelines that feed it (supported: logs->logs, metrics->metrics, traces->traces)",
    ]


def test_unused_components_are_warnings() -> None:
    cfg = validate("""
receivers: {anyrecv: {}, logsrecv: {}}
processors: {batch: {}}
exporters: {nop: {}, debug: {}}
connectors: {forward: {}}
extensions: {health: {}}
service:
  pipelines:
    traces: {receivers: [anyrecv], exporters: [nop]}
""")
    assert cfg.warnings == [
        "receivers.logsrecv: defined but not used by any pipeline",
        "processors.batch: defined but not used by any pipeline",
        "exporters.debug: defined but not used by any pipeline",
        "connectors.forward: defined but not used by any pipeline",
        "extensions.health: defined but not listed in service.extensions",
    ]


def test_secret_values_are_not_echoed() -> None:
    out = problems("""
receivers: {anyrecv: {}}
exporters: {file: {path: x, format: "hunter2-secret"}}
service: {pipelines: {traces: {receivers: [anyrecv], exporters: [file]}}}
""")
    assert out == ["exporters.file.format: input should be 'otlp_json' or 'json'"]


def test_memory_limiter_spike_must_be_below_limit() -> None:
    base = ("receivers: {anyrecv: {}}\nexporters: {nop: {}}\n"
            "service: {pipelines: {traces: {receivers: [anyrecv], exporters: [nop]}}}\n")
    assert problems("processors: {memory_limiter: {limit_mib: 100, spike_limit_mib: 100}}\n"
                    + base) == [
        "processors.memory_limiter: spike limit must be below the hard limit"]
    assert problems("processors: {memory_limiter: {limit_mib: 100, limit_percentage: 50}}\n"
                    + base) == [
        "processors.memory_limiter: set exactly one of limit_mib or limit_percentage"]
    assert problems("processors: {memory_limiter: {limit_percentage: 50, "
                    "spike_limit_percentage: 60}}\n" + base) == [
        "processors.memory_limiter: spike limit must be below the hard limit"]


def test_batch_max_size_not_below_size() -> None:
    assert problems("""
processors: {batch: {send_batch_size: 100, send_batch_max_size: 10}}
service: {pipelines: {traces: {receivers: [anyrecv], exporters: [nop]}}}
""")[0] == "processors.batch: send_batch_max_size must be 0 or at least send_batch_size"


@pytest.mark.parametrize(("text", "seconds"), [
    (5, 5.0), (0.25, 0.25), ("0", 0.0), ("200ms", 0.2), ("1m30s", 90.0), ("1.5h", 5400.0),
    ("10us", 1e-5), ("2d", 172800.0)])
def test_parse_duration(text: Any, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "5 s", "s", "-1", -1, True, "1m 30s", "", None])
def test_parse_duration_rejects(text: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_json_schema_structure() -> None:
    reg = test_registry()
    schema = build_json_schema(reg)
    assert schema["required"] == ["service"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"receivers", "processors", "exporters", "connectors",
                                         "extensions", "service"}
    procs = schema["properties"]["processors"]
    assert procs["additionalProperties"] is False
    assert set(procs["patternProperties"]) == {"^batch(/.+)?$", "^memory_limiter(/.+)?$"}
    batch_ref = procs["patternProperties"]["^batch(/.+)?$"]["anyOf"][0]["$ref"]
    assert batch_ref == "#/$defs/BatchConfig"
    batch = schema["$defs"]["BatchConfig"]
    assert set(batch["properties"]) == set(BatchConfig.model_fields)
    assert batch["additionalProperties"] is False
    assert set(schema["$defs"]["FileConfig"]["properties"]) == set(FileConfig.model_fields)
    assert schema["$defs"]["FileConfig"]["required"] == ["path"]
    assert schema["properties"]["service"] == {"$ref": "#/$defs/ServiceModel"}
    assert schema["$defs"]["ServiceModel"]["required"] == ["pipelines"]
    for f in reg.factories():
        section = schema["properties"][f.kind.section]["patternProperties"]
        assert f"^{f.type}(/.+)?$" in section
