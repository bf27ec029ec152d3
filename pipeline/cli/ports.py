"""The ports otelpipe listens on and the environment variables of the shipped configs:
one table for `otelpipe run --help` and the README's "Ports and overrides" section
(tests/unit/test_docs.py checks the README, the components' defaults and
`configs/*.yaml` against it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Port:
    port: int
    serves: str
    component: str
    variable: str

    @property
    def default(self) -> str:
        return f"localhost:{self.port}"


@dataclass(frozen=True)
class Override:
    variable: str
    default: str
    meaning: str
    configs: tuple[str, ...]


PORTS = (
    Port(4317, "OTLP gRPC", "`otlp` receiver, `protocols.grpc`",
         "OTELPIPE_OTLP_GRPC_ENDPOINT"),
    Port(4318, "OTLP HTTP (`/v1/traces`, `/v1/logs`, `/v1/metrics`)",
         "`otlp` receiver, `protocols.http`", "OTELPIPE_OTLP_HTTP_ENDPOINT"),
    Port(8081, "JSON / plain-text logs (`POST /logs`)", "`jsonlogs` receiver",
         "OTELPIPE_JSONLOGS_ENDPOINT"),
    Port(13133, "`/health*`, `/metrics`, `/status`", "`health` extension",
         "OTELPIPE_HEALTH_ENDPOINT"),
    Port(8889, "Prometheus scrape endpoint (`/metrics`)", "`prometheus` exporter",
         "OTELPIPE_PROMETHEUS_ENDPOINT"),
)
"""Every listener with a default port. The default is `localhost:<port>` for the
component and for the embedded default config; the variable sets it in the embedded
default and in `configs/*.yaml` (whose own default is `0.0.0.0:<port>`)."""

OVERRIDES = (
    Override("OTELPIPE_DATA_DIR", "./otelpipe-data", "where the `file` exporters write",
             ("default.yaml", "filelog.yaml", "gateway-kafka.yaml", "logstruct.yaml",
              "workers.yaml")),
    Override("KAFKA_BROKERS", "localhost:9092", "the Kafka bootstrap broker",
             ("agent-kafka.yaml", "gateway-kafka.yaml")),
    Override("OTELPIPE_KAFKA_GROUP", "otelpipe-gateway", "the gateways' consumer group",
             ("gateway-kafka.yaml",)),
    Override("OTELPIPE_LOG_GLOB", "/var/log/app/*.log", "the files to tail",
             ("filelog.yaml",)),
    Override("OTELPIPE_STATE_DIR", "./otelpipe-state", "filelog checkpoints",
             ("filelog.yaml",)),
    Override("OTELPIPE_SERVICE_NAME", "app", "`service.name` of tailed logs",
             ("filelog.yaml",)),
    Override("OTELPIPE_PG_PRIMARY", "postgresql://postgres@127.0.0.1:55432/postgres",
             "replication lag: the primary", ("red-metrics.yaml", "slo.yaml")),
    Override("OTELPIPE_PG_REPLICA", "postgresql://postgres@127.0.0.1:55433/postgres",
             "replication lag: the replica", ("red-metrics.yaml", "slo.yaml")),
    Override("OTELPIPE_API_HEALTH_URL", "http://127.0.0.1:8000/health",
             "the URL `httpcheck` probes", ("slo.yaml",)),
    Override("OTELPIPE_SLO_STATE", "./otelpipe-slo-state.json", "SLO engine state",
             ("slo.yaml",)),
    Override("OTELPIPE_SLO_ALERTS_FILE", "./otelpipe-slo-alerts.jsonl",
             "where alert records are written", ("slo.yaml",)),
    Override("OTELPIPE_RUNBOOK_URL", "docs/runbook.md", "base of the alerts' `runbook_url`",
             ("slo.yaml",)),
    Override("OTELPIPE_TAIL_SAMPLING_DIR", "./otelpipe-tail-sampling",
             "where `tail_sampling` keeps waiting traces (`storage: disk`)",
             ("tail-sampling-slo.yaml",)),
    Override("OTELPIPE_JAEGER_ENDPOINT", "127.0.0.1:14317",
             "the Jaeger OTLP/gRPC endpoint (sampled) traces go to",
             ("tail-sampling-slo.yaml", "workers.yaml")),
    Override("OTELPIPE_WORKERS", "auto",
             "processes sharing the ports (`service.workers`: a number, or `auto`: one per "
             "CPU it may use, capped by its cgroup CPU quota)", ("workers.yaml",)),
)
"""The other variables the shipped configs read (`${env:VAR:-default}`)."""


def _plain(text: str) -> str:
    return text.replace("`", "")


def run_epilog() -> str:
    """The `otelpipe run --help` epilog."""
    lines = ["ports: each listener binds to localhost:<port> unless its endpoint says",
             "otherwise; the variable sets host:port (e.g. 0.0.0.0:4317) in the embedded",
             "default and configs/*.yaml (whose own default is 0.0.0.0:<port>):"]
    lines += [f"  {p.port:<6} {p.variable:<29} {_plain(p.component)}" for p in PORTS]
    lines.append("other variables of the shipped configs (see the README):")
    lines += [f"  {o.variable:<29} {_plain(o.meaning)}" for o in OVERRIDES]
    return "\n".join(lines)


def markdown() -> str:
    """The README's tables."""
    rows = ["| port | serves | component | default | override |",
            "| --- | --- | --- | --- | --- |"]
    rows += [f"| {p.port} | {p.serves} | {p.component} | `{p.default}` | `{p.variable}` |"
             for p in PORTS]
    rows += ["", "| variable | default | what | read by `configs/…` |",
             "| --- | --- | --- | --- |"]
    rows += [f"| `{o.variable}` | `{o.default}` | {o.meaning} | "
             f"{', '.join(f'`{c}`' for c in o.configs)} |" for o in OVERRIDES]
    return "\n".join(rows) + "\n"
