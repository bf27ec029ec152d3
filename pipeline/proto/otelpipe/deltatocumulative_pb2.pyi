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

class Scope(_message.Message):
    __slots__ = ("attributes",)
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, attributes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class NumberPoint(_message.Message):
    __slots__ = ("attributes",)
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    attributes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, attributes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class HistogramPoint(_message.Message):
    __slots__ = ("bucket_counts", "explicit_bounds", "attributes")
    BUCKET_COUNTS_FIELD_NUMBER: _ClassVar[int]
    EXPLICIT_BOUNDS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    bucket_counts: bytes
    explicit_bounds: bytes
    attributes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, bucket_counts: _Optional[bytes] = ..., explicit_bounds: _Optional[bytes] = ..., attributes: _Optional[_Iterable[bytes]] = ...) -> None: ...

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
    __slots__ = ("sum", "histogram", "exponential_histogram")
    SUM_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    EXPONENTIAL_HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    sum: Numbers
    histogram: Histograms
    exponential_histogram: ExpHistograms
    def __init__(self, sum: _Optional[_Union[Numbers, _Mapping]] = ..., histogram: _Optional[_Union[Histograms, _Mapping]] = ..., exponential_histogram: _Optional[_Union[ExpHistograms, _Mapping]] = ...) -> None: ...

class ScopeMetrics(_message.Message):
    __slots__ = ("scope", "metrics")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    metrics: _containers.RepeatedCompositeFieldContainer[Metric]
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., metrics: _Optional[_Iterable[_Union[Metric, _Mapping]]] = ...) -> None: ...

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
