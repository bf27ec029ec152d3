"""Protobuf message classes declared at run time (projections), for quick experiments.

A *projection* is a message type declaring only the fields a component reads,
so upb skips the rest without building Python objects (counting the spans of a
100-span request through one costs ~3 µs instead of a full ~40 µs parse).

Schemas that otelpipe ships belong in `proto/` as ordinary `.proto` files with
code generated into `pipeline.proto` (scripts/gen-proto.sh): the foreign wire
formats (Prometheus remote write, Loki push) and the projections of pdata and
the Loki exporter live there. The redmetrics and logmetrics connectors and the
semconv processor still call this builder; their schemas are generated too
(`pipeline.proto.otelpipe.{redmetrics,logmetrics,semconv}_pb2`, checked field
for field against these declarations by tests/unit/proto), so switching them is
an import.

```python
types = build_projection("otelpipe_example.proto", {
    "Span": [("name", 5, "bytes"), ("attributes", 9, "attrmap")],
    "ScopeSpans": [("spans", 2, "repeated Span")],
})
ScopeSpans = types["ScopeSpans"]
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

FieldDecl = tuple[str, int, str]
"""(field name, field number, type): see `build_projection`."""

_T = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "bytes": _T.TYPE_BYTES, "string": _T.TYPE_STRING, "bool": _T.TYPE_BOOL,
    "int32": _T.TYPE_INT32, "int64": _T.TYPE_INT64, "uint32": _T.TYPE_UINT32,
    "uint64": _T.TYPE_UINT64, "fixed64": _T.TYPE_FIXED64, "double": _T.TYPE_DOUBLE,
}


def build_projection(file_name: str, messages: Mapping[str, Sequence[FieldDecl]], *,
                     package: str | None = None, syntax: str = "proto3") -> dict[str, Any]:
    """Message classes, by name, for the declared messages (one private pool per call).

    `messages` maps a message name to (field, number, type) triples; type is a
    scalar type name (`SCALARS`: `bytes`, `string`, `int32`, `fixed64`, `double` …)
    or another declared message's name, prefixed with `repeated ` for repeated
    fields, or `attrmap`: a `map<string, bytes>` over a repeated `KeyValue` field
    (a map entry has KeyValue's wire form: key = 1, value = 2), so
    `field.get(key)` returns one attribute's serialized `AnyValue` without
    touching the others (duplicate keys: the last wins). With `syntax="proto2"`
    string map keys are not UTF-8 checked at parse time (`get` by key never
    decodes stored keys). Undeclared fields are skipped by the parser.
    `package` defaults to `otelpipe.<file name without .proto>`.
    """
    if package is None:
        package = "otelpipe." + file_name.replace("/", "_").removesuffix(".proto")
    fdp = descriptor_pb2.FileDescriptorProto(name=file_name, package=package, syntax=syntax)
    for name, fields in messages.items():
        m = fdp.message_type.add(name=name)
        for fname, number, type_name in fields:
            if type_name == "attrmap":
                _add_attrmap(m, package, name, fname, number)
                continue
            repeated = type_name.startswith("repeated ")
            type_name = type_name.removeprefix("repeated ")
            f = m.field.add(name=fname, number=number)
            f.label = _T.LABEL_REPEATED if repeated else _T.LABEL_OPTIONAL
            if type_name in SCALARS:
                f.type = SCALARS[type_name]
            elif type_name in messages:
                f.type = _T.TYPE_MESSAGE
                f.type_name = f".{package}.{type_name}"
            else:
                raise ValueError(f"{name}.{fname}: unknown type {type_name!r}")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{package}.{name}")) for name in messages}


def _add_attrmap(m: descriptor_pb2.DescriptorProto, package: str, message: str,
                 fname: str, number: int) -> None:
    entry = m.nested_type.add(name=fname.title().replace("_", "") + "Entry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_T.TYPE_STRING, label=_T.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=_T.TYPE_BYTES, label=_T.LABEL_OPTIONAL)
    m.field.add(name=fname, number=number, type=_T.TYPE_MESSAGE, label=_T.LABEL_REPEATED,
                type_name=f".{package}.{message}.{entry.name}")
