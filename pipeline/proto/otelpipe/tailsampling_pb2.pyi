from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnvScope(_message.Message):
    __slots__ = ("scope", "spans", "schema_url")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_URL_FIELD_NUMBER: _ClassVar[int]
    scope: bytes
    spans: _containers.RepeatedScalarFieldContainer[bytes]
    schema_url: bytes
    def __init__(self, scope: _Optional[bytes] = ..., spans: _Optional[_Iterable[bytes]] = ..., schema_url: _Optional[bytes] = ...) -> None: ...

class EnvResource(_message.Message):
    __slots__ = ("resource", "scopes", "schema_url")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_URL_FIELD_NUMBER: _ClassVar[int]
    resource: bytes
    scopes: _containers.RepeatedCompositeFieldContainer[EnvScope]
    schema_url: bytes
    def __init__(self, resource: _Optional[bytes] = ..., scopes: _Optional[_Iterable[_Union[EnvScope, _Mapping]]] = ..., schema_url: _Optional[bytes] = ...) -> None: ...

class Envelopes(_message.Message):
    __slots__ = ("resources",)
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[EnvResource]
    def __init__(self, resources: _Optional[_Iterable[_Union[EnvResource, _Mapping]]] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: int
    def __init__(self, code: _Optional[int] = ...) -> None: ...

class Span(_message.Message):
    __slots__ = ("trace_id", "trace_state", "start", "end", "status")
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_STATE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    trace_id: bytes
    trace_state: bytes
    start: int
    end: int
    status: bytes
    def __init__(self, trace_id: _Optional[bytes] = ..., trace_state: _Optional[bytes] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., status: _Optional[bytes] = ...) -> None: ...

class SpanAttributes(_message.Message):
    __slots__ = ("attributes",)
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.ScalarMap[str, bytes]
    def __init__(self, attributes: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class FactsScope(_message.Message):
    __slots__ = ("spans",)
    SPANS_FIELD_NUMBER: _ClassVar[int]
    spans: _containers.RepeatedCompositeFieldContainer[Span]
    def __init__(self, spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ...) -> None: ...

class Resource(_message.Message):
    __slots__ = ("attributes",)
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.ScalarMap[str, bytes]
    def __init__(self, attributes: _Optional[_Mapping[str, bytes]] = ...) -> None: ...

class FactsResource(_message.Message):
    __slots__ = ("resource", "scopes")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    scopes: _containers.RepeatedCompositeFieldContainer[FactsScope]
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ..., scopes: _Optional[_Iterable[_Union[FactsScope, _Mapping]]] = ...) -> None: ...

class SpanFacts(_message.Message):
    __slots__ = ("resources",)
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[FactsResource]
    def __init__(self, resources: _Optional[_Iterable[_Union[FactsResource, _Mapping]]] = ...) -> None: ...
