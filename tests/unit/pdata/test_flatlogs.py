"""Record groups as flat JSON objects: the same objects as the OTLP path gives."""

from __future__ import annotations

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from pipeline.pdata.flatlogs import dumps_flat, flat_group_records
from pipeline.pdata.logrecords import encode_groups
from pipeline.pdata.otlpjson import flat_log_records
from tests.unit.pdata.test_logrecords import groups_sample


def test_flat_records_equal_otlp_path() -> None:
    groups = groups_sample()
    req = ExportLogsServiceRequest()
    req.ParseFromString(encode_groups(groups))
    assert orjson.dumps(list(flat_group_records(groups))) == \
        orjson.dumps(list(flat_log_records(req)))
    assert dumps_flat(groups) == b"".join(orjson.dumps(r) + b"\n"
                                          for r in flat_log_records(req))
