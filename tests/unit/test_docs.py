"""Docs that run: every ```yaml snippet of README.md and docs/*.md is checked.

What a snippet is comes from an HTML comment on the line right before its fence
(CONTRIBUTING.md, "Snippets in the docs"):

- no marker: a whole config, loaded and validated as `otelpipe validate` does;
- `<!-- snippet: fragment -->`: top-level sections of a config; the test completes it
  (undefined components a pipeline names get their defaults, unused components get a
  pipeline, extensions are enabled) and validates the result;
- `<!-- snippet: fragment at PATH -->` / `... at PATH with {FLOW YAML} -->`: a piece
  that goes at PATH (dotted keys, a number indexes a list), merged into the given
  base, then completed as above;
- `<!-- snippet: slo -->`: an SLO definitions file, through the SLO loader;
- `<!-- snippet: skip REASON -->`: not checked, for the reason given.

`${env:…}` references resolve against a test environment: their default if they have
one, else a placeholder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.component import Kind
from pipeline.config.loader import load_config, merge, parse_yaml
from pipeline.config.model import SECTIONS, validate_config
from pipeline.errors import ConfigError
from pipeline.registry import default_registry

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(?P<kind>\S+)\s*(?P<arg>.*?)\s*-->\s*$")
ANY_MARKER = re.compile(r"<!--\s*snippet\b")
AT = re.compile(r"^(?:at\s+(?P<path>[\w./-]+))?\s*(?:with\s+(?P<base>.+))?$")
MISSING_FILE = re.compile(r"'(?P<path>/[^']+)' does not exist or is not a file")
ENV_REF = re.compile(r"\$\{env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")
PLACEHOLDER = "docs-test-value"
MINIMAL: dict[tuple[Kind, str], dict[str, Any]] = {
    (Kind.RECEIVER, "otlp"): {"protocols": {"grpc": {}}}}
"""What a component the completion adds needs beyond its defaults."""
HINT = ("mark it in the markdown (CONTRIBUTING.md, 'Snippets in the docs'): "
        "<!-- snippet: fragment [at PATH [with {...}]] -->, <!-- snippet: slo -->, "
        "or <!-- snippet: skip REASON -->")


@dataclass(frozen=True)
class Snippet:
    doc: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: str | None  # the marker line's kind + arg, None without one

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}"


def fenced_blocks(path: Path) -> list[Snippet]:
    lines = path.read_text(encoding="utf-8").splitlines()
    doc = str(path.relative_to(ROOT))
    found: list[Snippet] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        body = "\n".join(line[len(indent):] if line.startswith(indent) else line.lstrip()
                         for line in lines[i + 1:end]) + "\n"
        marker = MARKER.match(lines[i - 1]) if i > 0 else None
        found.append(Snippet(doc, i + 1, m["lang"].lower(), body,
                             f"{marker['kind']} {marker['arg']}".strip() if marker else None))
        i = end + 1
    return found


ALL_BLOCKS = [b for path in DOCS for b in fenced_blocks(path)]
YAML_SNIPPETS = [b for b in ALL_BLOCKS if b.lang in ("yaml", "yml")]


def test_the_docs_have_yaml_snippets() -> None:
    assert len(YAML_SNIPPETS) >= 25
    assert {s.doc for s in YAML_SNIPPETS} >= {"docs/security.md", "docs/kafka.md"}


def test_every_marker_precedes_a_yaml_fence() -> None:
    """A marker that lost its snippet (or sits before some other block, or is
    misspelt) would silently stop checking anything."""
    stray: list[str] = []
    for path in DOCS:
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            if not ANY_MARKER.search(line):
                continue
            nxt = FENCE.match(lines[n + 1]) if n + 1 < len(lines) else None
            if not MARKER.match(line) or nxt is None or nxt["lang"] not in ("yaml", "yml"):
                stray.append(f"{path.relative_to(ROOT)}:{n + 1}: {line.strip()}")
    assert stray == []


def test_unlabelled_blocks_are_not_yaml_configs() -> None:
    """A config in a fence without `yaml` would escape the check below."""
    unlabelled = []
    for block in ALL_BLOCKS:
        if block.lang:
            continue
        try:
            data = yaml.safe_load(block.text)
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and set(data) & {*SECTIONS, "service", "slos"}:
            unlabelled.append(block.id)
    assert unlabelled == [], "label these fences ```yaml"


# ---------------------------------------------------------------------------- checks


def test_env(*texts: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for text in texts:
        for m in ENV_REF.finditer(text):
            env.setdefault(m["name"], m["default"] if m["default"] is not None
                           else PLACEHOLDER)
    return env


test_env.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def validate_file(path: Path, env: dict[str, str], snippet: str) -> list[str]:
    """What `otelpipe validate -c path` reports, with `env` as the environment, less
    the files (certificates, CA bundles) the snippet names by an absolute path that
    this machine does not have."""
    try:
        validate_config(load_config([path], env=env), default_registry())
    except ConfigError as exc:
        return [p for p in exc.problems
                if not ((m := MISSING_FILE.search(p)) and m["path"] in snippet)]
    return []


def put(tree: dict[str, Any], path: list[str], value: Any) -> None:
    """Merge `value` into `tree` at `path` (a numeric segment indexes a list)."""
    node: Any = tree
    for i, key in enumerate(path):
        last = i == len(path) - 1
        nxt_is_index = not last and path[i + 1].isdigit()
        slot: int | str = key
        if isinstance(node, list):
            slot = int(key)
            while len(node) <= slot:
                node.append({})
            current = node[slot]
        else:
            current = node.get(key)
        if last:
            new = merge(current, value) if isinstance(current, dict) and isinstance(
                value, dict) else value
            node[slot] = new
            return
        if current is None:
            current = [] if nxt_is_index else {}
            node[slot] = current
        node = current


def parse_piece(text: str, source: str) -> Any:
    """A snippet's value through the real parser (bounds and the flow-`${env:}` hint
    included), whatever its top level is: nested under a key."""
    wrapped = "_:\n" + "".join(f"  {line}\n" for line in text.splitlines())
    return parse_yaml(wrapped, source)["_"]


class Completion:
    """A minimal valid config around the components a fragment defines or names: a
    name a pipeline uses but nothing defines gets its defaults (under `connectors` when
    it is a connector type), an unused component gets a pipeline (`otlp` in, `nop`
    out), a connector gets both sides, extensions are enabled."""

    def __init__(self, raw: dict[str, Any]):
        self.raw = raw
        self.registry = default_registry()
        self.service: dict[str, Any] = raw.setdefault("service", {})
        self.pipelines: dict[str, Any] = self.service.setdefault("pipelines", {})

    def named(self, role: str) -> set[str]:
        return {cid for p in self.pipelines.values() for cid in p.get(role, [])}

    def add(self, signal: str, receivers: list[str], processors: list[str],
            exporters: list[str]) -> None:
        self.pipelines[f"{signal}/docs{len(self.pipelines) + 1}"] = {
            "receivers": receivers, "processors": processors, "exporters": exporters}

    def define_named(self) -> None:
        for role, kind in (("receivers", Kind.RECEIVER), ("processors", Kind.PROCESSOR),
                           ("exporters", Kind.EXPORTER)):
            for cid in sorted(self.named(role)):
                if cid in (self.raw.get(role) or {}) or cid in (self.raw.get("connectors")
                                                               or {}):
                    continue
                type_ = cid.split("/")[0]
                if self.registry.get(kind, type_) is None and \
                        self.registry.get(Kind.CONNECTOR, type_):
                    self.raw.setdefault("connectors", {})[cid] = {}
                else:
                    self.raw.setdefault(role, {})[cid] = dict(MINIMAL.get((kind, cid), {}))

    def use(self, section: str, kind: Kind, cid: str) -> None:
        factory = self.registry.get(kind, cid.split("/")[0])
        if factory is None or kind is Kind.EXTENSION:
            return
        if kind is Kind.CONNECTOR:
            a, b = sorted(factory.connector_pairs)[0]
            if cid not in self.named("exporters"):
                self.add(a.value, ["otlp"], [], [cid])
            if cid not in self.named("receivers"):
                self.add(b.value, [cid], [], ["nop"])
            return
        if cid in self.named(section):
            return
        signal = sorted(s.value for s in factory.signals)[0]
        self.add(signal, [cid] if kind is Kind.RECEIVER else ["otlp"],
                 [cid] if kind is Kind.PROCESSOR else [],
                 [cid] if kind is Kind.EXPORTER else ["nop"])

    def run(self) -> dict[str, Any]:
        self.define_named()
        for section, kind in SECTIONS.items():
            for cid in list(self.raw.get(section) or {}):
                self.use(section, kind, cid)
        if not self.pipelines:  # extensions only
            self.add("traces", ["otlp"], [], ["nop"])
        if "otlp" in self.named("receivers"):
            self.raw.setdefault("receivers", {}).setdefault(
                "otlp", MINIMAL[(Kind.RECEIVER, "otlp")])
        if "nop" in self.named("exporters"):
            self.raw.setdefault("exporters", {}).setdefault("nop", {})
        self.service["extensions"] = list(dict.fromkeys(
            [*self.service.get("extensions", []), *(self.raw.get("extensions") or {})]))
        return self.raw


def check_fragment(snippet: Snippet, arg: str, tmp_path: Path) -> list[str]:
    source = snippet.id
    try:
        value = parse_piece(snippet.text, source)
        if arg:
            at = AT.match(arg)
            assert at, f"{source}: fragment marker: expected '[at PATH] [with {{...}}]', " \
                       f"got {arg!r}"
            path = at["path"].split(".") if at["path"] else []
            raw: dict[str, Any] = {}
            if at["base"]:
                base = parse_piece(at["base"], f"{source} marker")
                raw = base if not path else raw
                if path:
                    put(raw, path, base)
            if path:
                put(raw, path, value)
            else:
                assert isinstance(value, dict), f"{source}: a fragment without 'at' is a mapping"
                raw = merge(raw, value)
        else:
            assert isinstance(value, dict), f"{source}: a fragment without 'at' is a mapping"
            raw = value
    except ConfigError as exc:  # a YAML error: at its line of the markdown
        return [re.sub(rf"^{re.escape(source)}:(\d+):(\d+)",
                       lambda m: f"{snippet.doc}:{snippet.line + int(m[1]) - 1}:"
                                 f"{int(m[2]) - 2}", p) for p in exc.problems]
    path = tmp_path / "fragment.yaml"
    path.write_text(yaml.safe_dump(Completion(raw).run(), sort_keys=False))
    return validate_file(path, test_env(snippet.text, arg), snippet.text)


def check_slo(snippet: Snippet) -> list[str]:
    from pipeline.slo.loader import parse_yaml_text
    from pipeline.slo.model import SLODefinitionError

    try:
        slos = parse_yaml_text(snippet.text, snippet.id)
    except SLODefinitionError as exc:
        return exc.problems
    return [] if slos else [f"{snippet.id}: no SLOs"]


def check(snippet: Snippet, tmp_path: Path) -> list[str]:
    """The problems of a snippet as its marker says to check it."""
    kind, _, arg = (snippet.marker or "config").partition(" ")
    if kind == "fragment":
        return check_fragment(snippet, arg, tmp_path)
    if kind == "slo":
        return check_slo(snippet)
    assert kind == "config", f"{snippet.id}: unknown snippet marker {kind!r}"
    path = tmp_path / "config.yaml"
    path.write_text(snippet.text)
    problems = [re.sub(rf"^{re.escape(str(path))}:(\d+)",
                       lambda m: f"{snippet.doc}:{snippet.line + int(m[1])}", p)
                for p in validate_file(path, test_env(snippet.text), snippet.text)]
    return [*problems, f"not a whole config? {HINT}"] if problems else []


@pytest.mark.parametrize("snippet", YAML_SNIPPETS, ids=[s.id for s in YAML_SNIPPETS])
def test_yaml_snippet(snippet: Snippet, tmp_path: Path) -> None:
    kind, _, reason = (snippet.marker or "").partition(" ")
    if kind == "skip":  # another tool's YAML: it must still be YAML
        assert len(reason.split()) >= 2, f"{snippet.id}: a skip marker gives its reason"
        assert list(yaml.safe_load_all(snippet.text)), f"{snippet.id}: empty ({reason})"
        return
    assert check(snippet, tmp_path) == []


# ------------------------------------------------------------- the checker checks


def test_an_unmarked_piece_fails(tmp_path: Path) -> None:
    snippet = Snippet("x.md", 1, "yaml", "exporters:\n  nop: {}\n", None)
    assert check(snippet, tmp_path)[-1].startswith("not a whole config?")


def test_yaml_errors_point_at_the_markdown(tmp_path: Path) -> None:
    text = "exporters:\n  otlp: {auth: {bearer_token: ${env:T}}}\n"
    [fragment] = check(Snippet("x.md", 10, "yaml", text, "fragment"), tmp_path)
    assert fragment.startswith("x.md:12:31: invalid YAML: ${env:T} inside a flow mapping")
    [config, _] = check(Snippet("x.md", 10, "yaml", text, None), tmp_path)
    assert config.startswith("x.md:12:31: invalid YAML: ${env:T} inside a flow mapping")


def test_a_fragment_is_completed_and_its_mistakes_still_fail(tmp_path: Path) -> None:
    good = Snippet("x.md", 1, "yaml", "exporters:\n  otlp/x: {endpoint: 'h:4317'}\n",
                   "fragment")
    assert check_fragment(good, "", tmp_path) == []
    bad = Snippet("x.md", 1, "yaml", "exporters:\n  otlp/x: {endpont: 'h:4317'}\n",
                  "fragment")
    assert any("endpont" in p for p in check_fragment(bad, "", tmp_path))


def test_a_nested_fragment_goes_where_its_marker_says(tmp_path: Path) -> None:
    snippet = Snippet("x.md", 1, "yaml", "when: {matches: '^x'}\n", "fragment at …")
    arg = "at processors.logstruct.parsers.0 with {type: regex, pattern: '(?P<message>.*)'}"
    assert check_fragment(snippet, arg, tmp_path) == []
    wrong = "at processors.logstruct.parsers.0 with {type: regex}"
    assert check_fragment(snippet, wrong, tmp_path) != []


# ------------------------------------------------------------- ports and overrides

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def config_env_refs() -> dict[str, dict[str, str | None]]:
    """variable -> {config file name: its default}, over configs/*.yaml."""
    found: dict[str, dict[str, str | None]] = {}
    for path in CONFIGS:
        for m in ENV_REF.finditer(path.read_text(encoding="utf-8")):
            found.setdefault(m["name"], {})[path.name] = m["default"]
    return found


def test_the_readme_lists_every_port_and_override() -> None:
    from pipeline.cli.ports import markdown

    assert markdown() in (ROOT / "README.md").read_text(encoding="utf-8")


def test_run_help_lists_every_port_and_override(capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli import main
    from pipeline.cli.ports import OVERRIDES, PORTS

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for p in PORTS:
        assert re.search(rf"^  {p.port} +{p.variable} ", out, re.MULTILINE), p
    for o in OVERRIDES:
        assert re.search(rf"^  {o.variable} ", out, re.MULTILINE), o


def test_the_ports_are_the_components_defaults() -> None:
    from pipeline.cli.ports import PORTS

    registry = default_registry()

    def endpoint(kind: Kind, type_: str, raw: dict[str, Any], *attrs: str) -> str:
        factory = registry.get(kind, type_)
        assert factory is not None
        value: Any = factory.config_model.model_validate(raw)
        for attr in (*attrs, "endpoint"):
            value = getattr(value, attr)
        return str(value)

    otlp: dict[str, Any] = {"protocols": {"grpc": {}, "http": {}}}
    actual = {
        "OTELPIPE_OTLP_GRPC_ENDPOINT": endpoint(Kind.RECEIVER, "otlp", otlp, "protocols",
                                                "grpc"),
        "OTELPIPE_OTLP_HTTP_ENDPOINT": endpoint(Kind.RECEIVER, "otlp", otlp, "protocols",
                                                "http"),
        "OTELPIPE_JSONLOGS_ENDPOINT": endpoint(Kind.RECEIVER, "jsonlogs", {}),
        "OTELPIPE_HEALTH_ENDPOINT": endpoint(Kind.EXTENSION, "health", {}),
        "OTELPIPE_PROMETHEUS_ENDPOINT": endpoint(Kind.EXPORTER, "prometheus", {}),
    }
    assert {p.variable: p.default for p in PORTS} == actual


def test_the_tables_name_every_variable_of_the_shipped_configs() -> None:
    from pipeline.cli.ports import OVERRIDES, PORTS

    refs = config_env_refs()
    assert set(refs) == {p.variable for p in PORTS} | {o.variable for o in OVERRIDES}
    for o in OVERRIDES:
        assert refs[o.variable] == dict.fromkeys(o.configs, o.default), o.variable
    for p in PORTS:
        for name, default in refs[p.variable].items():
            host = "localhost" if name == "default.yaml" else "0.0.0.0"
            assert default == f"{host}:{p.port}", (p.variable, name)
