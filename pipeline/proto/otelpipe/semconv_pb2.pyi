from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Resource(_message.Message):
    __slots__ = ("attributes",)
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, attributes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("attributes",)
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, attributes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Span(_message.Message):
    __slots__ = ("kind", "attributes", "events")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    kind: int
    attributes: _containers.RepeatedScalarFieldContainer[bytes]
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, kind: _Optional[int] = ..., attributes: _Optional[_Iterable[bytes]] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class ScopeSpans(_message.Message):
    __slots__ = ("spans",)
    SPANS_FIELD_NUMBER: _ClassVar[int]
    spans: _containers.RepeatedCompositeFieldContainer[Span]
    def __init__(self, spans: _Optional[_Iterable[_Union[Span, _Mapping]]] = ...) -> None: ...

class ResourceSpans(_message.Message):
    __slots__ = ("resource", "scopes")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    scopes: _containers.RepeatedCompositeFieldContainer[ScopeSpans]
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ..., scopes: _Optional[_Iterable[_Union[ScopeSpans, _Mapping]]] = ...) -> None: ...

class TracesRequest(_message.Message):
    __slots__ = ("resources",)
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[ResourceSpans]
    def __init__(self, resources: _Optional[_Iterable[_Union[ResourceSpans, _Mapping]]] = ...) -> None: ...

class LogRecord(_message.Message):
    __slots__ = ("attributes",)
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, attributes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ScopeLogs(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[LogRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[LogRecord, _Mapping]]] = ...) -> None: ...

class ResourceLogs(_message.Message):
    __slots__ = ("resource", "scopes")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    scopes: _containers.RepeatedCompositeFieldContainer[ScopeLogs]
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ..., scopes: _Optional[_Iterable[_Union[ScopeLogs, _Mapping]]] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("resources",)
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[ResourceLogs]
    def __init__(self, resources: _Optional[_Iterable[_Union[ResourceLogs, _Mapping]]] = ...) -> None: ...

class NumberPoint(_message.Message):
    __slots__ = ("attributes",)
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, attributes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class HistogramPoint(_message.Message):
    __slots__ = ("attributes",)
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, attributes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ExpHistogramPoint(_message.Message):
    __slots__ = ("attributes",)
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, attributes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Numbers(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[NumberPoint]
    def __init__(self, points: _Optional[_Iterable[_Union[NumberPoint, _Mapping]]] = ...) -> None: ...

class Histograms(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[HistogramPoint]
    def __init__(self, points: _Optional[_Iterable[_Union[HistogramPoint, _Mapping]]] = ...) -> None: ...

class ExpHistograms(_message.Message):
    __slots__ = ("points",)
    POINTS_FIELD_NUMBER: _ClassVar[int]
    points: _containers.RepeatedCompositeFieldContainer[ExpHistogramPoint]
    def __init__(self, points: _Optional[_Iterable[_Union[ExpHistogramPoint, _Mapping]]] = ...) -> None: ...

class Metric(_message.Message):
    __slots__ = ("gauge", "sum", "histogram", "exponential_histogram", "summary")
    GAUGE_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    EXPONENTIAL_HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    gauge: Numbers
    sum: Numbers
    histogram: Histograms
    exponential_histogram: ExpHistograms
    summary: Numbers
    def __init__(self, gauge: _Optional[_Union[Numbers, _Mapping]] = ..., sum: _Optional[_Union[Numbers, _Mapping]] = ..., histogram: _Optional[_Union[Histograms, _Mapping]] = ..., exponential_histogram: _Optional[_Union[ExpHistograms, _Mapping]] = ..., summary: _Optional[_Union[Numbers, _Mapping]] = ...) -> None: ...

class ScopeMetrics(_message.Message):
    __slots__ = ("metrics",)
    METRICS_FIELD_NUMBER: _ClassVar[int]
    metrics: _containers.RepeatedCompositeFieldContainer[Metric]
    def __init__(self, metrics: _Optional[_Iterable[_Union[Metric, _Mapping]]] = ...) -> None: ...

class ResourceMetrics(_message.Message):
    __slots__ = ("resource", "scopes")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    resource: Resource
    scopes: _containers.RepeatedCompositeFieldContainer[ScopeMetrics]
    def __init__(self, resource: _Optional[_Union[Resource, _Mapping]] = ..., scopes: _Optional[_Iterable[_Union[ScopeMetrics, _Mapping]]] = ...) -> None: ...

class MetricsRequest(_message.Message):
    __slots__ = ("resources",)
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[ResourceMetrics]
    def __init__(self, resources: _Optional[_Iterable[_Union[ResourceMetrics, _Mapping]]] = ...) -> None: ...
