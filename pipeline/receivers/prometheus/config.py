"""The `prometheus` receiver's config: Prometheus' own `scrape_config` keys, typed.

Keys follow Prometheus' configuration file (`job_name`, `scrape_interval`,
`static_configs`, `relabel_configs`, ...). A Prometheus key otelpipe does not
implement is a validation error that names it (`scrape_configs.0.consul_sd_configs:
a Prometheus scrape_config key otelpipe does not support`), never silently
ignored; a key Prometheus does not know is an error too (`extra inputs are not
permitted`).
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from pipeline.component import ComponentConfig
from pipeline.config.types import ByteSize, Duration

# Prometheus scrape_config keys that exist upstream but are not implemented here.
UNSUPPORTED_SCRAPE_KEYS = frozenset({
    "scrape_protocols", "fallback_scrape_protocol", "scrape_classic_histograms",
    "always_scrape_classic_histograms", "convert_classic_histograms_to_nhcb",
    "track_timestamps_staleness", "enable_compression", "oauth2", "follow_redirects",
    "enable_http2", "proxy_url", "no_proxy", "proxy_from_environment",
    "proxy_connect_header", "http_headers", "label_limit", "label_name_length_limit",
    "label_value_length_limit", "target_limit", "keep_dropped_targets",
    "native_histogram_bucket_limit", "native_histogram_min_bucket_factor",
    "metric_name_validation_scheme", "metric_name_escaping_scheme",
    "scrape_failure_log_file", "bearer_token", "bearer_token_file",
    "azure_sd_configs", "consul_sd_configs", "digitalocean_sd_configs",
    "docker_sd_configs", "dockerswarm_sd_configs", "dns_sd_configs", "ec2_sd_configs",
    "eureka_sd_configs", "gce_sd_configs", "hetzner_sd_configs", "http_sd_configs",
    "ionos_sd_configs", "kubernetes_sd_configs", "kuma_sd_configs", "lightsail_sd_configs",
    "linode_sd_configs", "marathon_sd_configs", "nerve_sd_configs", "nomad_sd_configs",
    "openstack_sd_configs", "ovhcloud_sd_configs", "puppetdb_sd_configs",
    "scaleway_sd_configs", "serverset_sd_configs", "triton_sd_configs", "uyuni_sd_configs",
    "vultr_sd_configs", "stackit_sd_configs",
})
UNSUPPORTED_GLOBAL_KEYS = frozenset({
    "evaluation_interval", "rule_query_offset", "external_labels", "query_log_file",
    "scrape_failure_log_file", "scrape_protocols", "body_size_limit", "sample_limit",
    "label_limit", "label_name_length_limit", "label_value_length_limit", "target_limit",
    "keep_dropped_targets", "metric_name_validation_scheme",
    "metric_name_escaping_scheme", "always_scrape_classic_histograms",
    "convert_classic_histograms_to_nhcb",
})
UNSUPPORTED_TOP_KEYS = frozenset({
    "rule_files", "scrape_config_files", "alerting", "remote_write", "remote_read",
    "storage", "tracing", "runtime", "otlp",
})

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RelabelAction = Literal["replace", "keep", "drop", "keepequal", "dropequal", "hashmod",
                        "labelmap", "labeldrop", "labelkeep", "lowercase", "uppercase"]


def _refuse(data: Any, unsupported: frozenset[str], where: str) -> Any:
    if isinstance(data, dict):
        bad = sorted(k for k in data if k in unsupported)
        if bad:
            raise ValueError(
                f"{', '.join(bad)}: {'a ' if len(bad) == 1 else ''}Prometheus {where} "
                f"key{'s' if len(bad) > 1 else ''} otelpipe does not support "
                "(see docs/prometheus-receiver.md)")
    return data


def go_regex(value: str) -> re.Pattern[str]:
    """A Prometheus (RE2) regex, anchored at both ends as Prometheus anchors it."""
    try:
        return re.compile(f"^(?:{value})$", re.DOTALL)
    except re.error as exc:
        raise ValueError(f"invalid regex {value!r}: {exc}") from None


class RelabelConfig(ComponentConfig):
    source_labels: list[str] = Field(default_factory=list,
                                     description="Labels whose values are joined with "
                                                 "`separator` and matched against `regex`.")
    separator: str = Field(";", description="Joins the source label values.")
    regex: str = Field("(.*)", description="RE2 regex, anchored at both ends.")
    modulus: int | None = Field(None, gt=0, description="For `hashmod`.")
    target_label: str | None = Field(None, description="Label written by replace/hashmod/"
                                                       "lowercase/uppercase.")
    replacement: str = Field("$1", description="Value written on a match ($1, ${name}).")
    action: RelabelAction = "replace"

    @field_validator("regex")
    @classmethod
    def _regex(cls, value: str) -> str:
        go_regex(value)
        return value

    @model_validator(mode="after")
    def _check(self) -> RelabelConfig:
        a = self.action
        if a in ("replace", "hashmod", "lowercase", "uppercase", "keepequal", "dropequal") \
                and not self.target_label:
            raise ValueError(f"relabel action {a} needs target_label")
        if a == "hashmod" and self.modulus is None:
            raise ValueError("relabel action hashmod needs modulus")
        if a in ("labeldrop", "labelkeep") and (self.source_labels or self.target_label):
            raise ValueError(f"relabel action {a} takes only regex")
        if a in ("hashmod", "lowercase", "uppercase", "keepequal", "dropequal") \
                and self.target_label and not LABEL_NAME.match(self.target_label):
            raise ValueError(f"invalid target_label {self.target_label!r}")
        return self


class StaticConfig(ComponentConfig):
    targets: list[str] = Field(default_factory=list, description="host:port of each target.")
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="Labels added to every target of the group.")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for k in value:
            if not LABEL_NAME.match(k):
                raise ValueError(f"invalid label name {k!r}")
        return value


class FileSDConfig(ComponentConfig):
    files: list[str] = Field(min_length=1, description="JSON or YAML files of target groups "
                                                       "(the last path element may be a glob).")
    refresh_interval: Duration = Field(300.0, gt=0, description="Re-read period; files are "
                                                                "also checked every second "
                                                                "for changes (mtime/size).")

    @field_validator("files")
    @classmethod
    def _files(cls, value: list[str]) -> list[str]:
        for f in value:
            if not re.search(r"\.(json|ya?ml)$", f):
                raise ValueError(f"file_sd file {f!r}: expected a .json, .yml or .yaml name")
            if any(c in str(Path(f).parent) for c in "*?["):
                raise ValueError(f"file_sd file {f!r}: only the last path element may be a glob")
        return value


class BasicAuth(ComponentConfig):
    username: str = ""
    username_file: str | None = None
    password: SecretStr | None = None
    password_file: str | None = None

    @model_validator(mode="after")
    def _check(self) -> BasicAuth:
        if self.password is not None and self.password_file:
            raise ValueError("basic_auth: password and password_file are mutually exclusive")
        if self.username and self.username_file:
            raise ValueError("basic_auth: username and username_file are mutually exclusive")
        return self

    def header(self) -> str:
        import base64

        user = Path(self.username_file).read_text().strip() if self.username_file \
            else self.username
        if self.password_file:
            pw = Path(self.password_file).read_text().strip()
        else:
            pw = self.password.get_secret_value() if self.password else ""
        return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()


class Authorization(ComponentConfig):
    type: str = Field("Bearer", description="Scheme of the Authorization header.")
    credentials: SecretStr | None = None
    credentials_file: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Authorization:
        if self.credentials is not None and self.credentials_file:
            raise ValueError("authorization: credentials and credentials_file are mutually "
                             "exclusive")
        if self.type.strip().lower() == "basic":
            raise ValueError("authorization type Basic: use basic_auth")
        return self

    def header(self) -> str:
        cred = Path(self.credentials_file).read_text().strip() if self.credentials_file \
            else (self.credentials.get_secret_value() if self.credentials else "")
        return f"{self.type} {cred}"


class TLSConfig(ComponentConfig):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False
    min_version: Literal["TLS12", "TLS13"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        return _refuse(data, frozenset({"ca", "cert", "key", "max_version"}), "tls_config")

    @model_validator(mode="after")
    def _check(self) -> TLSConfig:
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("tls_config: cert_file and key_file must be given together")
        for key in ("ca_file", "cert_file", "key_file"):
            p = getattr(self, key)
            if p and not Path(p).is_file():
                raise ValueError(f"tls_config.{key} {p!r} does not exist or is not a file")
        return self

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.min_version == "TLS13":
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        else:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


class ScrapeConfig(ComponentConfig):
    job_name: str = Field(min_length=1, description="The `job` label (-> service.name).")
    scrape_interval: Duration | None = Field(None, gt=0, description="Default: global, 1m.")
    scrape_timeout: Duration | None = Field(None, gt=0,
                                            description="Default: global, 10s (at most the "
                                                        "interval).")
    metrics_path: str = "/metrics"
    scheme: Literal["http", "https"] = "http"
    params: dict[str, list[str]] = Field(default_factory=dict,
                                         description="URL query parameters.")
    honor_labels: bool = Field(False, description="Scraped labels win over target labels "
                                                  "(else they become exported_<name>).")
    honor_timestamps: bool = Field(True, description="Use the timestamps the target sends.")
    static_configs: list[StaticConfig] = Field(default_factory=list)
    file_sd_configs: list[FileSDConfig] = Field(default_factory=list)
    basic_auth: BasicAuth | None = None
    authorization: Authorization | None = None
    tls_config: TLSConfig | None = None
    relabel_configs: list[RelabelConfig] = Field(default_factory=list,
                                                 description="Applied to targets.")
    metric_relabel_configs: list[RelabelConfig] = Field(
        default_factory=list, description="Applied to every scraped series.")
    sample_limit: int = Field(0, ge=0, description="More samples (after metric relabelling) "
                                                   "fail the scrape; 0 = no limit.")
    body_size_limit: ByteSize = Field(0, ge=0, description="A larger (uncompressed) body "
                                                           "fails the scrape; 0 = no limit.")

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        return _refuse(data, UNSUPPORTED_SCRAPE_KEYS, "scrape_config")

    @model_validator(mode="after")
    def _check(self) -> ScrapeConfig:
        if self.basic_auth is not None and self.authorization is not None:
            raise ValueError("basic_auth and authorization are mutually exclusive")
        if not self.metrics_path.startswith("/"):
            raise ValueError("metrics_path must start with /")
        return self


class GlobalConfig(ComponentConfig):
    scrape_interval: Duration = Field(60.0, gt=0)
    scrape_timeout: Duration = Field(10.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        return _refuse(data, UNSUPPORTED_GLOBAL_KEYS, "global")


class PromConfig(ComponentConfig):
    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    scrape_configs: list[ScrapeConfig] = Field(min_length=1)

    model_config = {"extra": "forbid", "frozen": True, "populate_by_name": True}

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        return _refuse(data, UNSUPPORTED_TOP_KEYS, "configuration")

    @model_validator(mode="after")
    def _check(self) -> PromConfig:
        names = [s.job_name for s in self.scrape_configs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate job_name {', '.join(dup)}")
        for s in self.scrape_configs:
            interval = s.scrape_interval or self.global_.scrape_interval
            timeout = s.scrape_timeout or min(self.global_.scrape_timeout, interval)
            if timeout > interval:
                raise ValueError(f"job {s.job_name}: scrape_timeout ({timeout:g}s) greater "
                                 f"than scrape_interval ({interval:g}s)")
        return self

    def interval(self, s: ScrapeConfig) -> float:
        return s.scrape_interval or self.global_.scrape_interval

    def timeout(self, s: ScrapeConfig) -> float:
        return s.scrape_timeout or min(self.global_.scrape_timeout, self.interval(s))


class PrometheusReceiverConfig(ComponentConfig):
    config: PromConfig = Field(description="A Prometheus configuration: `global` and "
                                           "`scrape_configs`.")
    max_series_per_target: int = Field(
        1_000_000, gt=0,
        description="Series state kept per target (start times, staleness); past it the "
                    "scrape fails like an exceeded sample_limit.")

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, data: Any) -> Any:
        return _refuse(data, frozenset({"target_allocator", "api_server", "use_start_time_metric",
                                        "start_time_metric_regex", "trim_metric_suffixes",
                                        "report_extra_scrape_metrics"}),
                       "receiver")
