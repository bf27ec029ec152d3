"""Deprecated semantic-convention attribute names and their stable successors.

The one table of renames, used by the `semconv` processor (which rewrites
attributes) and by the `redmetrics` / `logmetrics` connectors (whose dimensions
that name a stable attribute also match its deprecated names).

Sources: the semantic-conventions migration guides (HTTP v1.20 → v1.23 stable,
database v1.24 → v1.31, messaging, RPC) and the schema files' `rename_attributes`
(for older hops such as `net.peer.ip` → `net.sock.peer.addr` → `network.peer.address`,
each old name maps straight to its final stable name). Where the messaging guide
and the 1.22 schema file disagree (`messaging.message.payload_size_bytes`) the
guide wins.

A `Rule` maps one old name to its new name(s), within one `group` (`http`, `url`,
`network`, `db`, `rpc`, `messaging`, `resource`), on some kinds of item:
`ANY` (log records, data points, resources, internal spans), `SERVER` (server
spans) and `CLIENT` (client, producer and consumer spans) — `net.peer.name` names
the server on a client span but the client on a server span. Most rules are plain
renames (the value is kept); a few convert the value (`http.target` splits into
`url.path` + `url.query`, `http.host` into `server.address` + `server.port`,
`net.transport` `ip_tcp` becomes `tcp`, a gRPC status code becomes its name).

Precedence: a stable name already present wins (the old one is dropped in
`upgrade` mode); among several old names for one new name the first in `RULES`
wins (e.g. `http.host`, then `net.host.name`, then `http.server_name` for
`server.address`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from pipeline.pdata.anyvalue import any_value_to_python
from pipeline.pdata.wire import ld

__all__ = [
    "ANY",
    "CLIENT",
    "GROUPS",
    "KINDS",
    "RULES",
    "SERVER",
    "Group",
    "Rule",
    "Upgrader",
    "aliases",
    "deprecated_names",
    "kind_category",
]

Group = Literal["http", "url", "network", "db", "rpc", "messaging", "resource"]
GROUPS: tuple[Group, ...] = ("http", "url", "network", "db", "rpc", "messaging", "resource")

ANY, SERVER, CLIENT = 0, 1, 2
KINDS = (ANY, SERVER, CLIENT)
_ALL = frozenset(KINDS)

Convert = Callable[[Any], list[tuple[str, Any]] | None]
"""old value → [(new key, new value), ...]; None: the value does not convert (the old
attribute is then left alone)."""


def kind_category(span_kind: int) -> int:
    """SERVER for a server span (kind 2), CLIENT for client/producer/consumer (3-5),
    ANY otherwise (internal, unspecified, and every non-span item)."""
    if span_kind == 2:
        return SERVER
    if 3 <= span_kind <= 5:
        return CLIENT
    return ANY


@dataclass(frozen=True)
class Rule:
    old: str
    new: str
    group: str
    kinds: frozenset[int] = _ALL
    convert: Convert | None = None  # None: a plain rename, the value is kept
    also: tuple[str, ...] = ()  # further names `convert` may write

    @property
    def plain(self) -> bool:
        return self.convert is None


# Value converters --------------------------------------------------------------------

def _split_target(v: Any) -> list[tuple[str, Any]] | None:
    """`http.target` (`/path?query`) → url.path, url.query (split at the first `?`)."""
    if not isinstance(v, str):
        return None
    path, sep, query = v.partition("?")
    out: list[tuple[str, Any]] = [("url.path", path)]
    if sep and query:
        out.append(("url.query", query))
    return out


def _split_host(v: Any) -> list[tuple[str, Any]] | None:
    """`http.host` (`host[:port]`, `[v6]:port`) → server.address (+ server.port)."""
    if not isinstance(v, str) or not v:
        return None
    host, port = v, ""
    if v.startswith("["):
        end = v.find("]")
        if end > 0:
            host, rest = v[1:end], v[end + 1:]
            port = rest[1:] if rest.startswith(":") else ""
    elif v.count(":") == 1:
        host, _, port = v.partition(":")
    out: list[tuple[str, Any]] = [("server.address", host)]
    if port.isdigit() and 0 < int(port) < 65536:
        out.append(("server.port", int(port)))
    return out


def _mapped(new: str, table: Mapping[Any, Any]) -> Convert:
    def convert(v: Any) -> list[tuple[str, Any]]:
        return [(new, table.get(v, v))]
    return convert


def _as_text(new: str) -> Convert:
    def convert(v: Any) -> list[tuple[str, Any]] | None:
        if isinstance(v, bool) or not isinstance(v, str | int):
            return None
        return [(new, str(v))]
    return convert


_GRPC_CODES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
               "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
               "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
               "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")


def _grpc_status(v: Any) -> list[tuple[str, Any]] | None:
    """`rpc.grpc.status_code` (int) → rpc.response.status_code (its name: 0 → "OK")."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return [("rpc.response.status_code",
                 _GRPC_CODES[v] if 0 <= v < len(_GRPC_CODES) else str(v))]
    if isinstance(v, str):
        return [("rpc.response.status_code", v)]
    return None


def _also_client(v: Any) -> list[tuple[str, Any]]:
    """Peer socket address on a server span: network.peer.address, and client.address
    when nothing better (`http.client_ip`, `net.peer.name`) gave one."""
    return [("network.peer.address", v), ("client.address", v)]


_S, _C = frozenset({SERVER}), frozenset({ANY, CLIENT})
_AS = frozenset({ANY, SERVER})
_HTTP_VERSION = _mapped("network.protocol.version", {"2.0": "2", "3.0": "3"})


def _r(old: str, new: str, group: str, kinds: frozenset[int] = _ALL,
       convert: Convert | None = None, also: tuple[str, ...] = ()) -> Rule:
    return Rule(old, new, group, kinds, convert, also)


def _many(olds: Iterable[str], new: str, group: str) -> list[Rule]:
    return [Rule(o, new, group) for o in olds]


RULES: tuple[Rule, ...] = (
    # HTTP (migration guide v1.20 → v1.23, plus <= v1.19 names)
    _r("http.method", "http.request.method", "http"),
    _r("http.status_code", "http.response.status_code", "http"),
    _r("http.request_content_length", "http.request.body.size", "http"),
    _r("http.response_content_length", "http.response.body.size", "http"),
    _r("http.user_agent", "user_agent.original", "http"),
    _r("http.resend_count", "http.request.resend_count", "http"),
    _r("http.retry_count", "http.request.resend_count", "http"),
    _r("http.flavor", "network.protocol.version", "http", convert=_HTTP_VERSION),
    _r("http.client_ip", "client.address", "http"),
    _r("http.host", "server.address", "http", convert=_split_host, also=("server.port",)),
    # URL
    _r("http.url", "url.full", "url"),
    _r("http.target", "url.path", "url", convert=_split_target, also=("url.query",)),
    _r("http.scheme", "url.scheme", "url"),
    # Network (net.* → server.* / client.* / network.*)
    _r("net.host.name", "server.address", "network", _AS),
    _r("net.host.port", "server.port", "network", _AS),
    _r("http.server_name", "server.address", "http"),
    _r("net.peer.name", "server.address", "network", _C),
    _r("net.peer.name", "client.address", "network", _S),
    _r("net.peer.port", "server.port", "network", _C),
    _r("net.peer.port", "client.port", "network", _S),
    _r("net.sock.peer.addr", "network.peer.address", "network", _C),
    _r("net.sock.peer.addr", "network.peer.address", "network", _S, _also_client,
       ("client.address",)),
    _r("net.peer.ip", "network.peer.address", "network", _C),
    _r("net.peer.ip", "network.peer.address", "network", _S, _also_client,
       ("client.address",)),
    _r("net.sock.peer.port", "network.peer.port", "network"),
    _r("server.socket.address", "network.peer.address", "network"),
    _r("server.socket.port", "network.peer.port", "network"),
    _r("net.sock.host.addr", "network.local.address", "network"),
    _r("net.host.ip", "network.local.address", "network"),
    _r("net.sock.host.port", "network.local.port", "network"),
    _r("net.protocol.name", "network.protocol.name", "network"),
    _r("net.app.protocol.name", "network.protocol.name", "network"),
    _r("net.protocol.version", "network.protocol.version", "network"),
    _r("net.app.protocol.version", "network.protocol.version", "network"),
    _r("net.transport", "network.transport", "network",
       convert=_mapped("network.transport", {"ip_tcp": "tcp", "ip_udp": "udp"})),
    _r("net.host.connection.type", "network.connection.type", "network"),
    _r("net.host.connection.subtype", "network.connection.subtype", "network"),
    _r("net.host.carrier.name", "network.carrier.name", "network"),
    _r("net.host.carrier.mcc", "network.carrier.mcc", "network"),
    _r("net.host.carrier.mnc", "network.carrier.mnc", "network"),
    _r("net.host.carrier.icc", "network.carrier.icc", "network"),
    # Database (migration guide v1.24 → v1.31; schema 1.25, 1.27, 1.30)
    _r("db.statement", "db.query.text", "db"),
    _r("db.operation", "db.operation.name", "db"),
    _r("db.system", "db.system.name", "db"),
    _r("db.name", "db.namespace", "db"),
    _r("db.cassandra.keyspace", "db.namespace", "db"),
    _r("db.hbase.namespace", "db.namespace", "db"),
    _r("db.elasticsearch.cluster.name", "db.namespace", "db"),
    _r("db.redis.database_index", "db.namespace", "db", convert=_as_text("db.namespace")),
    *_many(("db.sql.table", "db.cassandra.table", "db.mongodb.collection",
            "db.cosmosdb.container"), "db.collection.name", "db"),
    _r("db.cosmosdb.status_code", "db.response.status_code", "db",
       convert=_as_text("db.response.status_code")),
    _r("db.cassandra.coordinator.dc", "cassandra.coordinator.dc", "db"),
    _r("db.cassandra.coordinator.id", "cassandra.coordinator.id", "db"),
    _r("db.cassandra.consistency_level", "cassandra.consistency.level", "db"),
    _r("db.cassandra.idempotence", "cassandra.query.idempotent", "db"),
    _r("db.cassandra.page_size", "cassandra.page.size", "db"),
    _r("db.cassandra.speculative_execution_count", "cassandra.speculative_execution.count",
       "db"),
    _r("db.cosmosdb.client_id", "azure.client.id", "db"),
    _r("db.cosmosdb.connection_mode", "azure.cosmosdb.connection.mode", "db"),
    _r("db.cosmosdb.consistency_level", "azure.cosmosdb.consistency.level", "db"),
    _r("db.cosmosdb.request_charge", "azure.cosmosdb.operation.request_charge", "db"),
    _r("db.cosmosdb.request_content_length", "azure.cosmosdb.request.body.size", "db"),
    _r("db.cosmosdb.regions_contacted", "azure.cosmosdb.operation.contacted_regions", "db"),
    _r("db.cosmosdb.sub_status_code", "azure.cosmosdb.response.sub_status_code", "db"),
    _r("db.elasticsearch.node.name", "elasticsearch.node.name", "db"),
    _r("db.client.connections.state", "db.client.connection.state", "db"),
    _r("db.client.connections.pool.name", "db.client.connection.pool.name", "db"),
    # RPC (schema 1.25, 1.39; migration guide: rpc.grpc.status_code becomes a string)
    _r("rpc.system", "rpc.system.name", "rpc",
       convert=_mapped("rpc.system.name", {"apache_dubbo": "dubbo",
                                           "connect_rpc": "connectrpc"})),
    _r("rpc.grpc.status_code", "rpc.response.status_code", "rpc", convert=_grpc_status),
    _r("rpc.connect_rpc.error_code", "rpc.response.status_code", "rpc"),
    _r("rpc.jsonrpc.request_id", "jsonrpc.request.id", "rpc"),
    _r("rpc.jsonrpc.version", "jsonrpc.protocol.version", "rpc"),
    _r("message.type", "rpc.message.type", "rpc"),
    _r("message.id", "rpc.message.id", "rpc"),
    _r("message.compressed_size", "rpc.message.compressed_size", "rpc"),
    _r("message.uncompressed_size", "rpc.message.uncompressed_size", "rpc"),
    # Messaging (migration guide, from v1.16 onwards)
    _r("messaging.destination", "messaging.destination.name", "messaging"),
    _r("messaging.temp_destination", "messaging.destination.temporary", "messaging"),
    _r("messaging.message_id", "messaging.message.id", "messaging"),
    _r("messaging.conversation_id", "messaging.message.conversation_id", "messaging"),
    *_many(("messaging.client_id", "messaging.consumer_id", "messaging.consumer.id",
            "messaging.kafka.client_id", "messaging.rocketmq.client_id"),
           "messaging.client.id", "messaging"),
    *_many(("messaging.kafka.consumer_group", "messaging.kafka.consumer.group",
            "messaging.rocketmq.client_group", "messaging.eventhubs.consumer.group"),
           "messaging.consumer.group.name", "messaging"),
    _r("messaging.kafka.message_key", "messaging.kafka.message.key", "messaging"),
    _r("messaging.kafka.message.offset", "messaging.kafka.offset", "messaging"),
    *[_r(o, "messaging.destination.partition.id", "messaging",
         convert=_as_text("messaging.destination.partition.id"))
      for o in ("messaging.kafka.partition", "messaging.kafka.destination.partition")],
    _r("messaging.kafka.tombstone", "messaging.kafka.message.tombstone", "messaging"),
    *_many(("messaging.message_payload_size_bytes", "messaging.message.payload_size_bytes"),
           "messaging.message.envelope.size", "messaging"),
    *_many(("messaging.message_payload_compressed_size_bytes",
            "messaging.message.payload_compressed_size_bytes"),
           "messaging.message.body.size", "messaging"),
    _r("messaging.operation", "messaging.operation.type", "messaging",
       convert=_mapped("messaging.operation.type", {"publish": "send",
                                                    "deliver": "process"})),
    _r("messaging.rabbitmq.routing_key", "messaging.rabbitmq.destination.routing_key",
       "messaging"),
    *[_r(f"messaging.rocketmq.message_{f}", f"messaging.rocketmq.message.{f}", "messaging")
      for f in ("type", "tag", "keys", "group", "delay_time_level", "delivery_timestamp")],
    _r("messaging.servicebus.destination.subscription_name",
       "messaging.destination.subscription.name", "messaging"),
    _r("messaging.protocol", "network.protocol.name", "messaging"),
    _r("messaging.protocol_version", "network.protocol.version", "messaging"),
    # Resource-level conventions (schema 1.24, 1.27)
    _r("deployment.environment", "deployment.environment.name", "resource"),
    _r("telemetry.auto.version", "telemetry.distro.version", "resource"),
)


def aliases(stable: str, kind: int = ANY) -> tuple[str, ...]:
    """Deprecated names whose value *is* the value of `stable` (plain renames only, in
    precedence order) on an item of this kind category."""
    return tuple(r.old for r in RULES
                 if r.new == stable and r.plain and kind in r.kinds)


def deprecated_names(stable: str) -> tuple[str, ...]:
    """Every old name that becomes `stable` (or part of it) on some item, renamed or
    converted: what to tell someone whose data lacks `stable`."""
    out: list[str] = []
    for r in RULES:
        if (r.new == stable or stable in r.also) and r.old not in out:
            out.append(r.old)
    return tuple(out)


def _key_field(key: bytes) -> bytes:
    """The serialized key field of a KeyValue (tag 0x0a, length, UTF-8 key)."""
    return ld(b"\x0a", key)


def _key_of(kv: bytes) -> bytes:
    """The UTF-8 key of a serialized KeyValue that does not start with a short key
    field (a long key, another field order, an empty KeyValue)."""
    key: str = KeyValue.FromString(kv).key if kv else ""
    return key.encode()


def _renamed(kv: bytes, key: bytes) -> bytes:
    """A serialized KeyValue with another key: the new key field, then the old bytes
    after the key field (encoders write the key first); re-encoded otherwise."""
    if kv[0] == 0x0A and kv[1] < 0x80:
        return _key_field(key) + kv[2 + kv[1]:]
    pb = KeyValue.FromString(kv)
    pb.key = key.decode()
    out: bytes = pb.SerializeToString()
    return out


def _text(key: bytes) -> str:
    return key.decode("utf-8", "replace")


def _serialized(key: str, v: Any) -> bytes:
    pb = KeyValue(key=key)
    _set_value(pb, v)
    out: bytes = pb.SerializeToString()
    return out


def _set_value(kv: Any, v: Any) -> None:
    value = kv.value
    if isinstance(v, bool):
        value.bool_value = v
    elif isinstance(v, int):
        value.int_value = v
    elif isinstance(v, float):
        value.double_value = v
    else:
        value.string_value = str(v)


Op = tuple[int, str, Any]
"""(index of the old attribute, new key or "", value or _KEEP): one step of a plan."""
_KEEP = object()  # the new attribute takes the old one's value as it is
_MISSING: Any = object()
_CACHE_LIMIT = 10_000
Shape = tuple[tuple[tuple[int, int, Rule, bytes], ...], frozenset[bytes]]
"""(rank, attribute index, rule, new name) of the rules that apply, in precedence order;
the keys (UTF-8)."""


class Upgrader:
    """Rewrites deprecated names to stable ones, for some groups, in one of two modes:
    `upgrade` (rename; the old name goes) or `duplicate` (add the stable names, keep
    the old ones).

    `old_names` is the set of names any rule starts from: an item whose keys are
    disjoint from it is left alone.
    """

    def __init__(self, groups: Iterable[str] = GROUPS, mode: str = "upgrade"):
        wanted = set(groups)
        unknown = wanted - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown group(s): {', '.join(sorted(unknown))}")
        if mode not in ("upgrade", "duplicate"):
            raise ValueError("mode is upgrade or duplicate")
        self.duplicate = mode == "duplicate"
        rules = [r for r in RULES if r.group in wanted]
        # Per kind category: old name → (rank, rule); rank orders precedence.
        self.by_kind: list[dict[str, tuple[int, Rule]]] = []
        for kind in KINDS:
            table: dict[str, tuple[int, Rule]] = {}
            for rank, r in enumerate(rules):
                if kind in r.kinds and r.old not in table:
                    table[r.old] = (rank, r)
            self.by_kind.append(table)
        self.old_names = frozenset(r.old for r in rules)
        self._shapes: dict[tuple[tuple[bytes, ...], int], Shape | None] = {}
        self._renamed: dict[tuple[bytes, bytes], bytes] = {}
        self._conversions: dict[tuple[int, bytes], list[tuple[bytes, bytes]] | None] = {}

    def plan(self, keys: list[str], value: Callable[[int], Any], kind: int = ANY
             ) -> list[Op]:
        """The steps that upgrade attributes with these keys (in order); `value(i)` is
        the Python value of attribute i (asked only for converting rules)."""
        table = self.by_kind[kind]
        hits = sorted((table[k][0], i, table[k][1]) for i, k in enumerate(keys) if k in table)
        if not hits:
            return []
        present = set(keys)
        dup = self.duplicate
        ops: list[Op] = []
        for _, i, rule in hits:
            if rule.convert is None:
                if rule.new not in present:
                    present.add(rule.new)
                    ops.append((i, rule.new, _KEEP))
                elif not dup:
                    ops.append((i, "", None))
                continue
            out = rule.convert(value(i))
            if out is None:
                continue  # not convertible: left as it is
            for new, v in out:
                if new not in present:
                    present.add(new)
                    ops.append((i, new, v))
            if not dup:
                ops.append((i, "", None))
        return ops

    def upgrade_serialized(self, kvs: list[bytes], kind: int = ANY) -> list[bytes] | None:
        """The upgraded attributes of an item, as serialized KeyValues (the form a
        projection reads them in and a parser takes back); None if nothing changes.

        Works on UTF-8 keys sliced out of the bytes. Renamed attributes keep their
        serialized value bytes (a new key field in front); only converting rules decode
        a value. Items of one instrumentation share their key sequence: what to do with
        it is worked out once per sequence (`_shape`), and renamed or converted
        KeyValues are remembered by their bytes (bounded caches)."""
        try:
            keys = tuple([kv[2:2 + kv[1]] if kv[0] == 0x0A and kv[1] < 0x80 else _key_of(kv)
                          for kv in kvs])
        except IndexError:  # an empty KeyValue
            keys = tuple([_key_of(kv) for kv in kvs])
        shape = self._shapes.get((keys, kind), _MISSING)
        if shape is _MISSING:
            shape = self._shape(keys, kind)
        if shape is None:
            return None
        hits, present0 = shape
        out: list[bytes | None] = list(kvs)
        dup = self.duplicate
        present = set(present0)
        renamed = self._renamed
        for rank, i, rule, new in hits:
            kv = kvs[i]
            if rule.convert is None:
                if new not in present:
                    present.add(new)
                    renamed_kv = renamed.get((kv, new))
                    if renamed_kv is None:
                        renamed_kv = renamed[(kv, new)] = _renamed(kv, new)
                    if dup:
                        out.append(renamed_kv)
                    else:
                        out[i] = renamed_kv
                elif not dup:
                    out[i] = None
                continue
            converted = self._converted(rank, rule, kv)
            if converted is None:
                continue  # not convertible: left as it is
            for new_key, new_kv in converted:
                if new_key not in present:
                    present.add(new_key)
                    out.append(new_kv)
            if not dup:
                out[i] = None
        if len(renamed) > _CACHE_LIMIT:
            renamed.clear()
        return [kv for kv in out if kv is not None]

    def _shape(self, keys: tuple[bytes, ...], kind: int) -> Shape | None:
        """The rules that apply to an item with these keys, in precedence order, and the
        keys as a set; None if nothing would change. Cached."""
        table = self.by_kind[kind]
        texts = [_text(k) for k in keys]
        found = sorted((table[t][0], i, table[t][1])
                       for i, t in enumerate(texts) if t in table)
        shape: Shape | None = None
        if found:
            hits = tuple((rank, i, rule, rule.new.encode()) for rank, i, rule in found)
            shape = (hits, frozenset(keys))
            if all(r.convert is None for _, _, r, _ in hits) and self.duplicate and all(
                    new in shape[1] for _, _, _, new in hits):
                shape = None  # duplicate mode, every stable name already there
        if len(self._shapes) > _CACHE_LIMIT:
            self._shapes.clear()
        self._shapes[(keys, kind)] = shape
        return shape

    def _converted(self, rank: int, rule: Rule, kv: bytes) -> list[tuple[bytes, bytes]] | None:
        """What a converting rule makes of one serialized KeyValue: (new key, serialized
        new KeyValue) pairs, or None if the value does not convert. Cached by bytes."""
        cache = self._conversions
        got = cache.get((rank, kv), _MISSING)
        if got is not _MISSING:
            return got  # type: ignore[no-any-return]
        assert rule.convert is not None
        out = rule.convert(any_value_to_python(KeyValue.FromString(kv).value))
        result = None if out is None else [(new.encode(), _serialized(new, v)) for new, v in out]
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        cache[(rank, kv)] = result
        return result

    def upgrade_dict(self, attrs: dict[str, Any], kind: int = ANY) -> bool:
        """Upgrade a dict of Python attribute values in place; True if it changed."""
        if self.old_names.isdisjoint(attrs):
            return False
        keys = list(attrs)
        ops = self.plan(keys, lambda i: attrs[keys[i]], kind)
        if not ops:
            return False
        drop: set[str] = set()
        for i, new, v in ops:
            old = keys[i]
            if not new:
                drop.add(old)
            else:
                attrs[new] = attrs[old] if v is _KEEP else v
                if not self.duplicate:
                    drop.add(old)
        for k in drop:
            attrs.pop(k, None)
        return True
