"""SLO definitions from YAML: a file of OpenSLO v1 documents (`pipeline.slo.openslo`)
and/or native `slos:` documents (`pipeline.slo.native`), with every problem reported
by file, document and key (`SLODefinitionError`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline.slo.model import SLO, SLODefinitionError, check_unique
from pipeline.slo.native import parse_native
from pipeline.slo.openslo import OpenSLODocuments


def parse_documents(docs: Iterable[Any], source: str = "<input>") -> list[SLO]:
    """SLOs from YAML documents: OpenSLO v1 documents and/or native `slos:` documents."""
    problems: list[str] = []
    out: list[SLO] = []
    openslo = OpenSLODocuments()
    for n, raw in enumerate((d for d in docs if d is not None), 1):
        where = f"{source}: document {n}"
        if not isinstance(raw, Mapping):
            problems.append(f"{where}: expected a mapping, got {type(raw).__name__}")
        elif "slos" in raw and "apiVersion" not in raw:
            out.extend(_native_document(raw, where, problems))
        else:
            openslo.add(raw, where, problems)
    out.extend(openslo.slos(problems))
    if not problems:
        check_unique(out, problems)
    if problems:
        raise SLODefinitionError(problems)
    return out


def _native_document(raw: Mapping[str, Any], where: str, problems: list[str]) -> list[SLO]:
    extra = sorted(set(raw) - {"slos"})
    if extra:
        problems.append(f"{where}: unknown key(s) {', '.join(extra)} next to slos")
    items = raw["slos"]
    if not isinstance(items, list):
        problems.append(f"{where}: slos must be a list")
        return []
    try:
        return parse_native(items, f"{where}: slos")
    except SLODefinitionError as exc:
        problems.extend(exc.problems)
        return []


def parse_yaml_text(text: str, source: str = "<input>") -> list[SLO]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SLODefinitionError([f"{source}: invalid YAML{at}: "
                                  f"{getattr(exc, 'problem', None) or exc}"]) from None
    if not docs:
        raise SLODefinitionError([f"{source}: no SLO definitions"])
    return parse_documents(docs, source)


def load_slo_file(path: str | Path) -> list[SLO]:
    """SLOs from a YAML file (OpenSLO multi-doc, or a native `slos:` document)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SLODefinitionError([f"{p}: cannot read: {exc.strerror or exc}"]) from None
    return parse_yaml_text(text, str(p))
