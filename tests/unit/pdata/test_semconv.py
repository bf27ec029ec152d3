from __future__ import annotations

from typing import Any

import pytest

from pipeline.pdata.semconv import (
    ANY,
    CLIENT,
    GROUPS,
    RULES,
    SERVER,
    Upgrader,
    aliases,
    deprecated_names,
    kind_category,
)


def up(attrs: dict[str, Any], kind: int = ANY, mode: str = "upgrade",
       groups: tuple[str, ...] = GROUPS) -> dict[str, Any]:
    out = dict(attrs)
    Upgrader(groups, mode).upgrade_dict(out, kind)
    return out


def test_table_is_consistent() -> None:
    olds = {r.old for r in RULES}
    news = {r.new for r in RULES} | {n for r in RULES for n in r.also}
    assert olds.isdisjoint(news), "an old name maps straight to its final stable name"
    assert {r.group for r in RULES} == set(GROUPS)
    # One rule per (old name, kind category): the table is unambiguous.
    for kind in (ANY, SERVER, CLIENT):
        names = [r.old for r in RULES if kind in r.kinds]
        assert len(names) == len(set(names))


def test_kind_categories() -> None:
    assert [kind_category(k) for k in range(7)] == [ANY, ANY, SERVER, CLIENT, CLIENT, CLIENT,
                                                    ANY]


@pytest.mark.parametrize(("old", "new"), [
    ({"http.method": "GET", "http.status_code": 500, "http.user_agent": "curl/8",
      "http.request_content_length": 10, "http.response_content_length": 20,
      "http.flavor": "2.0", "http.resend_count": 1, "http.client_ip": "10.0.0.9"},
     {"http.request.method": "GET", "http.response.status_code": 500,
      "user_agent.original": "curl/8", "http.request.body.size": 10,
      "http.response.body.size": 20, "network.protocol.version": "2",
      "http.request.resend_count": 1, "client.address": "10.0.0.9"}),
    ({"http.host": "shop.example:8443", "http.server_name": "shop"},
     {"server.address": "shop.example", "server.port": 8443}),
    ({"http.host": "[::1]:8080"}, {"server.address": "::1", "server.port": 8080}),
    ({"http.host": "shop.example"}, {"server.address": "shop.example"}),
    ({"http.server_name": "shop"}, {"server.address": "shop"}),
])
def test_http_group(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert up(old, SERVER, groups=("http",)) == new


@pytest.mark.parametrize(("old", "new"), [
    ({"http.target": "/a/b?x=1&y=2", "http.scheme": "https",
      "http.url": "https://h/a/b?x=1&y=2"},
     {"url.path": "/a/b", "url.query": "x=1&y=2", "url.scheme": "https",
      "url.full": "https://h/a/b?x=1&y=2"}),
    ({"http.target": "/a"}, {"url.path": "/a"}),
    ({"http.target": "/a?"}, {"url.path": "/a"}),
    ({"http.target": 7}, {"http.target": 7}),  # not text: left as it is
])
def test_url_group(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert up(old, groups=("url",)) == new


def test_network_group_depends_on_the_span_kind() -> None:
    peer = {"net.peer.name": "db.internal", "net.peer.port": 5432,
            "net.sock.peer.addr": "10.1.2.3", "net.sock.peer.port": 40000,
            "net.transport": "ip_tcp", "net.protocol.name": "http",
            "net.protocol.version": "1.1"}
    common = {"network.peer.address": "10.1.2.3", "network.peer.port": 40000,
              "network.transport": "tcp", "network.protocol.name": "http",
              "network.protocol.version": "1.1"}
    assert up(peer, CLIENT) == {"server.address": "db.internal", "server.port": 5432,
                                **common}
    assert up(peer, SERVER) == {"client.address": "db.internal", "client.port": 5432,
                                **common}
    assert up(peer, ANY) == up(peer, CLIENT)
    host = {"net.host.name": "api", "net.host.port": 8080, "net.sock.host.addr": "10.0.0.1",
            "net.sock.host.port": 8080, "net.peer.ip": "10.9.9.9"}
    assert up(host, SERVER) == {"server.address": "api", "server.port": 8080,
                                "network.local.address": "10.0.0.1",
                                "network.local.port": 8080,
                                "network.peer.address": "10.9.9.9",
                                "client.address": "10.9.9.9"}
    # On a client span net.host.* (the local host) has no stable successor: kept.
    assert up(host, CLIENT) == {"net.host.name": "api", "net.host.port": 8080,
                                "network.local.address": "10.0.0.1",
                                "network.local.port": 8080,
                                "network.peer.address": "10.9.9.9"}


def test_client_address_precedence_on_server_spans() -> None:
    got = up({"net.sock.peer.addr": "10.0.0.2", "http.client_ip": "203.0.113.5"}, SERVER)
    assert got == {"client.address": "203.0.113.5", "network.peer.address": "10.0.0.2"}


@pytest.mark.parametrize(("old", "new"), [
    ({"db.statement": "SELECT 1", "db.operation": "SELECT", "db.system": "postgresql",
      "db.name": "shop", "db.sql.table": "orders"},
     {"db.query.text": "SELECT 1", "db.operation.name": "SELECT",
      "db.system.name": "postgresql", "db.namespace": "shop",
      "db.collection.name": "orders"}),
    ({"db.redis.database_index": 3, "db.mongodb.collection": "c"},
     {"db.namespace": "3", "db.collection.name": "c"}),
    ({"db.cassandra.keyspace": "ks", "db.cassandra.table": "t",
      "db.cassandra.consistency_level": "one"},
     {"db.namespace": "ks", "db.collection.name": "t", "cassandra.consistency.level": "one"}),
])
def test_db_group(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert up(old, CLIENT, groups=("db",)) == new


@pytest.mark.parametrize(("old", "new"), [
    ({"rpc.system": "grpc", "rpc.grpc.status_code": 0, "rpc.method": "Get",
      "rpc.service": "shop.Cart"},
     {"rpc.system.name": "grpc", "rpc.response.status_code": "OK", "rpc.method": "Get",
      "rpc.service": "shop.Cart"}),
    ({"rpc.grpc.status_code": 14}, {"rpc.response.status_code": "UNAVAILABLE"}),
    ({"rpc.grpc.status_code": 99}, {"rpc.response.status_code": "99"}),
    ({"rpc.system": "apache_dubbo"}, {"rpc.system.name": "dubbo"}),
    ({"message.type": "SENT", "message.id": 1},
     {"rpc.message.type": "SENT", "rpc.message.id": 1}),
])
def test_rpc_group(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert up(old, CLIENT, groups=("rpc",)) == new


@pytest.mark.parametrize(("old", "new"), [
    ({"messaging.destination": "orders", "messaging.message_id": "m1",
      "messaging.operation": "publish", "messaging.kafka.partition": 3,
      "messaging.kafka.consumer_group": "g", "messaging.kafka.message.offset": 42},
     {"messaging.destination.name": "orders", "messaging.message.id": "m1",
      "messaging.operation.type": "send", "messaging.destination.partition.id": "3",
      "messaging.consumer.group.name": "g", "messaging.kafka.offset": 42}),
    ({"messaging.operation": "process", "messaging.rocketmq.message_tag": "t"},
     {"messaging.operation.type": "process", "messaging.rocketmq.message.tag": "t"}),
])
def test_messaging_group(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert up(old, CLIENT, groups=("messaging",)) == new


def test_resource_group() -> None:
    assert up({"deployment.environment": "prod", "service.name": "a"}) == {
        "service.name": "a", "deployment.environment.name": "prod"}


def test_stable_name_wins_and_the_old_goes() -> None:
    got = up({"http.status_code": 200, "http.response.status_code": 500, "http.method": "GET"})
    assert got == {"http.response.status_code": 500, "http.request.method": "GET"}


def test_duplicate_mode_keeps_the_old_names() -> None:
    attrs = {"http.method": "GET", "http.target": "/a?b=1", "http.request.method": "POST"}
    assert up(attrs, mode="duplicate") == {
        "http.method": "GET", "http.target": "/a?b=1", "http.request.method": "POST",
        "url.path": "/a", "url.query": "b=1"}


def test_groups_limit_the_rules() -> None:
    attrs = {"http.method": "GET", "http.target": "/a", "db.statement": "SELECT 1",
             "net.peer.name": "h"}
    assert up(attrs, CLIENT, groups=("db",)) == {
        "http.method": "GET", "http.target": "/a", "db.query.text": "SELECT 1",
        "net.peer.name": "h"}
    with pytest.raises(ValueError, match="unknown group"):
        Upgrader(["http", "grpc"])


def test_nothing_old_is_left_alone() -> None:
    u = Upgrader()
    attrs = {"http.request.method": "GET", "http.route": "/a"}
    assert not u.upgrade_dict(attrs)
    assert attrs == {"http.request.method": "GET", "http.route": "/a"}


def test_aliases_are_plain_renames_by_kind() -> None:
    assert aliases("http.response.status_code") == ("http.status_code",)
    assert aliases("http.request.method") == ("http.method",)
    assert aliases("db.collection.name") == ("db.sql.table", "db.cassandra.table",
                                             "db.mongodb.collection", "db.cosmosdb.container")
    assert aliases("server.address", CLIENT) == ("http.server_name", "net.peer.name")
    assert aliases("server.address", SERVER) == ("net.host.name", "http.server_name")
    assert aliases("client.address", SERVER) == ("http.client_ip", "net.peer.name")
    assert aliases("url.path") == ()  # http.target converts: not an alias
    assert aliases("network.transport") == ()  # values change (ip_tcp → tcp)
    assert deprecated_names("url.path") == ("http.target",)
    assert deprecated_names("server.port") == ("http.host", "net.host.port", "net.peer.port")



def test_upgrade_serialized_keeps_value_bytes_and_order() -> None:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

    def ser(key: str, **value: Any) -> bytes:
        out: bytes = KeyValue(key=key, value=AnyValue(**value)).SerializeToString()
        return out

    long_key = "app." + "k" * 200  # a two-byte length: parsed, not sliced
    value_first = (b"\x12" + bytes([len(ser("", int_value=7)) - 2])
                   + AnyValue(int_value=7).SerializeToString() + b"\x0a\x10http.status_code")
    kvs = [ser("http.method", string_value="GET"), ser(long_key, bool_value=True),
           value_first, ser("http.target", string_value="/a?b")]
    assert KeyValue.FromString(value_first).key == "http.status_code"
    out = Upgrader().upgrade_serialized(kvs, SERVER)
    assert out is not None
    got = [KeyValue.FromString(kv) for kv in out]
    assert [(kv.key, kv.value.WhichOneof("value")) for kv in got] == [
        ("http.request.method", "string_value"), (long_key, "bool_value"),
        ("http.response.status_code", "int_value"), ("url.path", "string_value"),
        ("url.query", "string_value")]
    assert out[0].endswith(kvs[0][len("\x0a\x0bhttp.method"):])  # value bytes reused
    assert got[2].value.int_value == 7
    assert Upgrader().upgrade_serialized([ser(long_key, int_value=1)]) is None
