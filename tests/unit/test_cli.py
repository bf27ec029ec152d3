"""`otelpipe validate | components | schema | version`, run through the real CLI."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pipeline import __version__, cli
from pipeline.component import Kind
from pipeline.registry import Registry, default_registry


@pytest.fixture
def registry() -> Registry:
    """The real registry: every built-in module plus installed plugins."""
    return default_registry()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def validate(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
             ) -> tuple[int, str, str]:
    return run_cli(capsys, "validate", "-c", str(write(tmp_path, text)))


RECEIVERS = """
receivers:
  otlp: {protocols: {grpc: {endpoint: "127.0.0.1:4317"}}}
  jsonlogs: {endpoint: "127.0.0.1:8081"}
"""


def test_valid_config(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = validate(capsys, tmp_path, RECEIVERS + """
processors: {batch: {}, memory_limiter: {limit_mib: 200}}
exporters: {nop: {}, file: {path: out.jsonl}}
service:
  pipelines:
    traces: {receivers: [otlp], processors: [memory_limiter, batch], exporters: [nop]}
    logs: {receivers: [otlp, jsonlogs], processors: [batch], exporters: [file]}
""")
    assert (code, out, err) == (0, "configuration is valid: 2 pipelines (logs, traces)\n", "")


def test_embedded_default_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "validate") == (
        0, "configuration is valid: 3 pipelines (logs, metrics, traces)\n", "")


def test_broken_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = write(tmp_path, "receivers:\n  otlp: {\nexporters: {}\n")
    code, out, err = run_cli(capsys, "validate", "-c", str(path))
    assert (code, out) == (2, "")
    assert err == ("invalid configuration (1 problem):\n"
                   f"  error: {path}:4:1: invalid YAML: while parsing a flow mapping, "
                   "expected ',' or '}', but got '<stream end>'\n")
    path = write(tmp_path, "receivers:\n  otlp: {}\n bad: 1\n")
    code, out, err = run_cli(capsys, "validate", "-c", str(path))
    assert (code, out) == (2, "")
    assert err == ("invalid configuration (1 problem):\n"
                   f"  error: {path}:3:2: invalid YAML: while parsing a block mapping, "
                   "expected <block end>, but found '<block mapping start>'\n")


def test_every_problem_listed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = validate(capsys, tmp_path, RECEIVERS + """
processors:
  bacth: {}
  batch: {send_batch_sise: 5, timeout: forever}
exporters:
  file: {}
  nop: {}
service:
  pipelines:
    traces: {receivers: [jsonlogs, otlp/x], processors: [batch], exporters: [nop]}
""")
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        "invalid configuration (6 problems):",
        '  error: processors.bacth: unknown processor type "bacth" (did you mean "batch"?)',
        "  error: processors.batch.timeout: invalid duration 'forever': expected a number of "
        "seconds or e.g. 5s, 200ms, 1m30s",
        '  error: processors.batch.send_batch_sise: unknown key (did you mean '
        '"send_batch_size"?)',
        "  error: exporters.file.path: field required",
        '  error: service.pipelines.traces.receivers[0]: receiver "jsonlogs" does not support '
        "traces (it supports logs)",
        '  error: service.pipelines.traces.receivers[1]: "otlp/x" is not defined under '
        'receivers or connectors (did you mean "otlp"?)',
    ]


def test_wrong_type(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = validate(capsys, tmp_path, RECEIVERS + """
exporters: {file: {path: x, rotation: {max_backups: many}}}
service: {pipelines: {logs: {receivers: [jsonlogs], exporters: [file]}}}
""")
    assert code == 2
    assert err.splitlines() == [
        "invalid configuration (1 problem):",
        "  error: exporters.file.rotation.max_backups: input should be a valid integer, "
        "unable to parse string as an integer"]


def test_cycle(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = validate(capsys, tmp_path, RECEIVERS + """
connectors: {forward/a: {}, forward/b: {}}
service:
  pipelines:
    logs: {receivers: [jsonlogs], exporters: [forward/a]}
    logs/1: {receivers: [forward/a, forward/b], exporters: [forward/b]}
""")
    assert code == 2
    assert err.splitlines() == [
        "invalid configuration (1 problem):",
        "  error: service.pipelines: cycle through connectors: logs/1 -> [forward/b] -> logs/1"]


def test_connector_on_one_side(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = validate(capsys, tmp_path, RECEIVERS + """
exporters: {nop: {}}
connectors: {forward: {}}
service:
  pipelines:
    logs: {receivers: [jsonlogs], exporters: [nop, forward]}
""")
    assert code == 2
    assert err.splitlines() == [
        "invalid configuration (1 problem):",
        "  error: connectors.forward: a connector must be used as a receiver of some "
        "pipeline too"]


def test_unused_is_a_warning(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = validate(capsys, tmp_path, RECEIVERS + """
exporters: {nop: {}, debug: {}}
service:
  pipelines:
    logs: {receivers: [jsonlogs], exporters: [nop]}
""")
    assert code == 0
    assert out == "configuration is valid: 1 pipeline (logs)\n"
    assert err.splitlines() == [
        "  warning: receivers.otlp: defined but not used by any pipeline",
        "  warning: exporters.debug: defined but not used by any pipeline"]


def test_several_files_and_env(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    base = write(tmp_path, RECEIVERS + """
exporters: {file: {path: "${env:OTELPIPE_TEST_DIR}/x"}}
service: {pipelines: {logs: {receivers: [jsonlogs], exporters: [file]}}}
""", "base.yaml")
    over = write(tmp_path, "receivers: {otlp: {protocols: {grpc: {endpoint: '127.0.0.1:1'}}}}\n"
                 "service: {pipelines: {logs: {receivers: [otlp]}}}\n", "over.yaml")
    monkeypatch.delenv("OTELPIPE_TEST_DIR", raising=False)
    code, _, err = run_cli(capsys, "validate", "-c", str(base), "-c", str(over))
    assert (code, err.splitlines()) == (2, [
        "invalid configuration (1 problem):",
        "  error: exporters.file.path: environment variable OTELPIPE_TEST_DIR is not set "
        "(write ${env:OTELPIPE_TEST_DIR:-default} to give a default)"])
    monkeypatch.setenv("OTELPIPE_TEST_DIR", str(tmp_path))
    # the second file replaced the receivers list: jsonlogs is now unused
    assert run_cli(capsys, "validate", "-c", str(base), "-c", str(over)) == (
        0, "configuration is valid: 1 pipeline (logs)\n",
        "  warning: receivers.jsonlogs: defined but not used by any pipeline\n")


def test_run_with_invalid_config_exits_2(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    path = write(tmp_path, "service: {}\n")
    assert run_cli(capsys, "run", "-c", str(path)) == (
        2, "", "error: service.pipelines: field required\n")


def test_components_lists_types_and_signals(capsys: pytest.CaptureFixture[str],
                                            registry: Registry) -> None:
    code, out, _ = run_cli(capsys, "components")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "receivers:"
    by_type = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert by_type["jsonlogs"].split()[:2] == ["jsonlogs", "logs"]
    assert by_type["otlp"].split()[:4] == ["otlp", "logs,", "metrics,", "traces"]
    assert by_type["batch"].split()[:4] == ["batch", "logs,", "metrics,", "traces"]
    assert by_type["forward"].split()[:4] == ["forward", "logs->logs,", "metrics->metrics,",
                                              "traces->traces"]
    health = by_type["health"]  # `health (alias …)  -  description`: no signals
    after_name = health.split(")", 1)[1] if "(alias" in health else health.split(None, 1)[1]
    assert after_name.split()[0] == "-"
    for section in ("processors:", "exporters:", "connectors:", "extensions:"):
        assert section in lines
    assert len([line for line in lines if line.startswith("  ")]) == len(registry.factories())


def test_components_json(capsys: pytest.CaptureFixture[str], registry: Registry) -> None:
    code, out, _ = run_cli(capsys, "components", "--json")
    rows = orjson.loads(out)
    assert code == 0
    jsonlogs = registry.get(*_kind_type("receiver", "jsonlogs"))
    assert jsonlogs is not None
    assert {"kind": "receiver", "type": "jsonlogs", "signals": "logs",
            "description": jsonlogs.description} in rows
    assert {(r["kind"], r["type"]) for r in rows} >= {
        ("processor", "batch"), ("processor", "memory_limiter"), ("exporter", "file"),
        ("exporter", "nop"), ("exporter", "debug"), ("connector", "forward"),
        ("receiver", "otlp")}
    assert any(r["kind"] == "extension" and r["type"].startswith("health") for r in rows)


def _kind_type(kind: str, type_: str) -> tuple[Kind, str]:
    return Kind(kind), type_


def test_schema_is_a_json_schema_of_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "schema")
    assert code == 0
    schema = orjson.loads(out)
    assert schema["required"] == ["service"]
    assert "^otlp(/.+)?$" in schema["properties"]["receivers"]["patternProperties"]
    assert "^file(/.+)?$" in schema["properties"]["exporters"]["patternProperties"]
    assert set(schema["$defs"]["PipelineModel"]["properties"]) == {
        "receivers", "processors", "exporters"}
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    from pipeline.config.loader import load_config
    assert list(validator.iter_errors(load_config([], env={}))) == []
    bad = {"processors": {"batch": {"send_batch_sise": 1}}, "service": {"pipelines": {}}}
    errors = sorted(e.message for e in validator.iter_errors(bad))
    assert errors == ["{'send_batch_sise': 1} is not valid under any of the given schemas",
                      "{} should be non-empty"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "version") == (0, f"otelpipe {__version__}\n", "")


def test_validate_reports_pipeline_problems_alongside_invalid_settings(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A component with bad settings still takes part in the signal, connector and cycle
    checks, so one run of `validate` lists every problem."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "receivers:\n  jsonlogs: {unknown_key: 1}\n"
        "exporters:\n  file: {}\n"
        "connectors:\n  forward/a:\n"
        "service:\n  pipelines:\n"
        "    traces: {receivers: [jsonlogs], exporters: [file]}\n"
        "    traces/loop: {receivers: [forward/a], exporters: [forward/a]}\n")
    assert cli.main(["validate", "-c", str(cfg)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "invalid configuration (4 problems):",
        "  error: receivers.jsonlogs.unknown_key: unknown key",
        "  error: exporters.file.path: field required",
        '  error: service.pipelines.traces.receivers[0]: receiver "jsonlogs" does not support '
        "traces (it supports logs)",
        "  error: service.pipelines: cycle through connectors: traces/loop -> [forward/a] -> "
        "traces/loop",
    ]


SEVEN_MISTAKES = """
receivers:
  otlp: {protocols: {http: {endpoint: "127.0.0.1:4318"}}}
  otlpp: {}
processors:
  batch: {timeout: 5 minutes, send_batch_size: lots}
  logstruct: {auto: true}
exporters:
  debug: {verbosty: basic}
connectors:
  forward: {}
service:
  shutdown_timeout: soon
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch, logstruct]
      exporters: [debug, otlphttp, forward]
"""


def test_validate_reports_every_mistake_in_one_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid service setting (here `shutdown_timeout`) used to stop the pipeline
    checks: the undefined exporter, the processor of the wrong signal and the one-sided
    connector showed only once it was fixed."""
    code, _, err = validate(capsys, tmp_path, SEVEN_MISTAKES)
    assert code == 2
    assert err.splitlines() == [
        "invalid configuration (8 problems):",
        '  error: receivers.otlpp: unknown receiver type "otlpp" (did you mean "otlp"?)',
        "  error: processors.batch.send_batch_size: input should be a valid integer, "
        "unable to parse string as an integer",
        "  error: processors.batch.timeout: invalid duration '5 minutes': expected a number "
        "of seconds or e.g. 5s, 200ms, 1m30s",
        '  error: exporters.debug.verbosty: unknown key (did you mean "verbosity"?)',
        "  error: service.shutdown_timeout: invalid duration 'soon': expected a number of "
        "seconds or e.g. 5s, 200ms, 1m30s",
        '  error: service.pipelines.traces.processors[1]: processor "logstruct" does not '
        "support traces (it supports logs)",
        '  error: service.pipelines.traces.exporters[1]: "otlphttp" is not defined under '
        "exporters or connectors",
        "  error: connectors.forward: a connector must be used as a receiver of some "
        "pipeline too",
    ]


def test_validate_checks_the_references_of_an_invalid_pipeline_and_pipeline_id(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = validate(capsys, tmp_path, RECEIVERS + """
exporters: {debug: {}}
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [debug, nope], processor: [batch]}
    trace/x: {receivers: [otlp], exporters: [nada]}
""")
    assert code == 2
    assert err.splitlines()[1:] == [
        '  error: service.pipelines.traces.processor: unknown key (did you mean '
        '"processors"?)',
        "  error: service.pipelines.traces.exporters[1]: \"nope\" is not defined under "
        "exporters or connectors",
        "  error: service.pipelines.trace/x: a pipeline id is traces, logs or metrics, "
        'optionally followed by /name (did you mean "traces"?)',
        '  error: service.pipelines.trace/x.exporters[0]: "nada" is not defined under '
        "exporters or connectors",
    ]


NATIVE_SLOS = """
slos:
  - name: api-availability
    service: api
    objective: 99.9
    window: 30d
    sli: {type: availability, source: httpcheck, match: {http.url: "http://127.0.0.1/"}}
"""


def test_validate_accepts_a_native_slo_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/slo.md: a file with a `slos:` list is an SLO definitions file."""
    assert validate(capsys, tmp_path, NATIVE_SLOS) == (
        0, "SLO definitions are valid: 1 SLO (api-availability)\n", "")
    code, _, err = validate(capsys, tmp_path, NATIVE_SLOS.replace("99.9", "120"))
    assert code == 2
    assert "slos[0].objective: input should be less than 100" in err


def test_a_config_with_slos_under_a_connector_is_still_a_config(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = validate(capsys, tmp_path, "slos: []\nservice: {}\n")
    assert code == 2
    assert "slos: unknown top-level key" in err
