"""Targets of a scrape job: `static_configs` and `file_sd_configs` groups, turned
into labelled targets by `relabel_configs`, as Prometheus does it.

A file_sd file holds a list of `{targets: [...], labels: {...}}` groups (JSON or
YAML). Files are checked every second (path set from the glob, mtime, size)
and re-read when anything changed, and re-read every `refresh_interval`
anyway. A file that cannot be read or parsed keeps its previous groups (and
the error is logged), as Prometheus does.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from pipeline.receivers.prometheus.config import LABEL_NAME, FileSDConfig, PromConfig, ScrapeConfig
from pipeline.receivers.prometheus.relabel import Rule, relabel


@dataclass(frozen=True)
class Group:
    targets: tuple[str, ...]
    labels: tuple[tuple[str, str], ...] = ()
    source: str = ""


@dataclass
class Target:
    """A target after relabelling: its final labels and the URL they make."""

    labels: dict[str, str]
    url: str
    key: str = field(default="")

    @property
    def job(self) -> str:
        return self.labels.get("job", "")

    @property
    def instance(self) -> str:
        return self.labels.get("instance", "")

    @property
    def scheme(self) -> str:
        return self.labels.get("__scheme__", "http")

    @property
    def public_labels(self) -> dict[str, str]:
        return {k: v for k, v in self.labels.items() if not k.startswith("__")}

    def offset(self, interval: float) -> float:
        """This target's phase within the interval: scrapes spread by target hash."""
        h = int.from_bytes(hashlib.sha256(self.key.encode()).digest()[:8], "big")
        return (h % 1_000_000) / 1_000_000 * interval


def parse_groups(data: Any, source: str) -> list[Group]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise ValueError("expected a list of {targets, labels} groups")
    out = []
    for i, g in enumerate(data):
        if not isinstance(g, dict):
            raise ValueError(f"group {i}: expected a mapping")
        unknown = set(g) - {"targets", "labels"}
        if unknown:
            raise ValueError(f"group {i}: unknown keys {sorted(unknown)}")
        targets = g.get("targets") or []
        labels = g.get("labels") or {}
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise ValueError(f"group {i}: targets must be a list of strings")
        if not isinstance(labels, dict):
            raise ValueError(f"group {i}: labels must be a mapping")
        for k, v in labels.items():
            if not isinstance(k, str) or not LABEL_NAME.match(k):
                raise ValueError(f"group {i}: invalid label name {k!r}")
            if not isinstance(v, str):
                raise ValueError(f"group {i}: label {k} must be a string")
        out.append(Group(tuple(targets), tuple(sorted(labels.items())), f"{source}:{i}"))
    return out


class FileSD:
    """The groups of one file_sd_config, re-read on change."""

    def __init__(self, cfg: FileSDConfig, log: logging.Logger, base_dir: str = ""):
        self.cfg = cfg
        self.log = log
        self.base_dir = base_dir
        self._stamp: tuple[tuple[str, int, int], ...] | None = None
        self._groups: dict[str, list[Group]] = {}
        self._last_read = 0.0

    def _paths(self) -> list[str]:
        out: list[str] = []
        for pattern in self.cfg.files:
            path = pattern if os.path.isabs(pattern) or not self.base_dir \
                else os.path.join(self.base_dir, pattern)
            out.extend(sorted(glob.glob(path)))
        return out

    def _stamps(self, paths: list[str]) -> tuple[tuple[str, int, int], ...]:
        out = []
        for p in paths:
            try:
                st = os.stat(p)
            except OSError:
                continue
            out.append((p, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def poll(self, now: float) -> bool:
        """Re-read the files when they changed (or refresh_interval passed); True when
        the groups changed."""
        paths = self._paths()
        stamp = self._stamps(paths)
        if stamp == self._stamp and now - self._last_read < self.cfg.refresh_interval:
            return False
        self._stamp = stamp
        self._last_read = now
        groups: dict[str, list[Group]] = {}
        for p in paths:
            try:
                with open(p, "rb") as f:
                    raw = f.read(16 * 1024 * 1024)
                data = json.loads(raw) if p.endswith(".json") else yaml.safe_load(raw)
                groups[p] = parse_groups(data, p)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                self.log.warning("file_sd: cannot use file, keeping its previous targets",
                            extra={"file": p, "error": str(exc)[:300]})
                if p in self._groups:
                    groups[p] = self._groups[p]
        changed = groups != self._groups
        self._groups = groups
        return changed

    @property
    def groups(self) -> list[Group]:
        return [g for p in sorted(self._groups) for g in self._groups[p]]


def build_targets(job: ScrapeConfig, top: PromConfig, groups: list[Group],
                  rules: list[Rule]) -> list[Target]:
    """Prometheus' target labels: group labels, __address__, the job defaults, then
    relabel_configs; `instance` defaults to __address__."""
    out: dict[str, Target] = {}
    for g in groups:
        for addr in g.targets:
            labels: dict[str, str] = {
                "job": job.job_name,
                "__scheme__": job.scheme,
                "__metrics_path__": job.metrics_path,
                "__scrape_interval__": f"{top.interval(job):g}s",
                "__scrape_timeout__": f"{top.timeout(job):g}s",
            }
            for name, values in job.params.items():
                if values:
                    labels[f"__param_{name}"] = values[0]
            labels.update(dict(g.labels))
            labels["__address__"] = addr
            final = relabel(labels, rules) if rules else labels
            if final is None or not final.get("__address__"):
                continue
            final.setdefault("instance", final["__address__"])
            t = Target(final, _url(final, job), "")
            t.key = json.dumps(sorted(final.items()))
            out[t.key] = t
    return list(out.values())


def _url(labels: dict[str, str], job: ScrapeConfig) -> str:
    from urllib.parse import urlencode

    scheme = labels.get("__scheme__", job.scheme)
    path = labels.get("__metrics_path__", job.metrics_path)
    params: dict[str, list[str]] = {k: list(v) for k, v in job.params.items()}
    for k, v in labels.items():
        if k.startswith("__param_"):
            params[k[len("__param_"):]] = [v]
    query = urlencode([(k, v) for k, vs in params.items() for v in vs])
    return f"{scheme}://{labels['__address__']}{path}" + (f"?{query}" if query else "")
