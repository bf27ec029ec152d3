"""From a file's bytes to UTF-8 lines: codecs (BOMs, UTF-16/32 byte order), line
splitting aligned to the code unit, cuts at character boundaries, decoding with
replacement; and hand encoding of single OTLP pieces.

Records. A batch is a `LogGroup.from_lines` (pdata/logrecords.py): the lines, the
file's attributes and the observed time. Processors that want records get Python
`LogRecord`s built on demand; an exporter that wants OTLP gets the lines encoded by
hand (`b"".join(prefix(len(line)), line, tail ...)`: no per-record objects). The
`encode_*` helpers below encode single pieces (tests use them).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from pipeline.pdata.logrecords import encode_lines
from pipeline.pdata.wire import varint
from pipeline.receivers.filelog.config import AttrValue

# ---------------------------------------------------------------------------------------
# Codecs and lines


@dataclass(frozen=True)
class Codec:
    name: str  # Python codec name
    nl: bytes  # newline in this encoding
    bom: bytes
    utf8: bool

    @property
    def unit(self) -> int:
        return len(self.nl)


_BOMS = {"utf-8": codecs.BOM_UTF8, "utf-16-le": codecs.BOM_UTF16_LE,
         "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-le": codecs.BOM_UTF32_LE,
         "utf-32-be": codecs.BOM_UTF32_BE}


def resolve_codec(name: str, head: bytes = b"") -> Codec:
    """The codec of a file; `utf-16`/`utf-32` pick the byte order from a BOM in `head`."""
    n = codecs.lookup(name).name
    if n == "utf-8-sig":
        n = "utf-8"
    if n in ("utf-16", "utf-32"):
        be = codecs.BOM_UTF16_BE if n == "utf-16" else codecs.BOM_UTF32_BE
        n = f"{n}-be" if head.startswith(be) else f"{n}-le"
    nl = "\n".encode(n)
    return Codec(n, nl, _BOMS.get(n, b""), n == "utf-8")


def utf8_cut(data: bytes, limit: int) -> int:
    """Largest cut <= limit not inside a UTF-8 sequence (never 0)."""
    cut = limit
    while cut > limit - 3 and cut > 1 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut


def split_lines(buf: bytes, nl: bytes) -> tuple[list[bytes], bytes, bytes]:
    """(complete lines without newline, the text they span, the unterminated rest)."""
    if len(nl) == 1:
        end = buf.rfind(nl)
        if end < 0:
            return [], b"", buf
        complete = buf[:end]
        return complete.split(nl), complete, buf[end + 1:]
    unit = len(nl)
    lines: list[bytes] = []
    start = 0
    pos = buf.find(nl)
    while pos >= 0:
        if (pos - start) % unit:  # a newline byte pattern across two characters
            pos = buf.find(nl, pos + 1)
            continue
        lines.append(buf[start:pos])
        start = pos + unit
        pos = buf.find(nl, start)
    return lines, b"", buf[start:]


def valid_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def decode(codec: Codec, raw: bytes) -> tuple[bytes, bool]:
    """UTF-8 bytes of a raw line (without `\\r`), and whether bytes were replaced."""
    bad = False
    if codec.utf8:
        try:
            raw.decode()
            body = raw
        except UnicodeDecodeError:
            body = raw.decode("utf-8", "replace").encode()
            bad = True
    else:
        try:
            text = raw.decode(codec.name)
        except UnicodeDecodeError:
            text = raw.decode(codec.name, "replace")
            bad = True
        body = text.encode()
    if body[-1:] == b"\r":
        body = body[:-1]
    return body, bad


def pieces(codec: Codec, raw: bytes, limit: int) -> list[bytes]:
    """A raw line cut into pieces of at most `limit` bytes (at character boundaries)."""
    unit = codec.unit
    out = []
    while len(raw) > limit:
        cut = utf8_cut(raw, limit) if codec.utf8 else limit - limit % unit
        out.append(raw[:cut])
        raw = raw[cut:]
    out.append(raw)
    return out


# ---------------------------------------------------------------------------------------
# OTLP pieces


def _any_value(v: AttrValue) -> AnyValue:
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    return AnyValue(string_value=str(v))


def encode_attribute(key: str, value: AttrValue) -> bytes:
    """`LogRecord.attributes` (field 6) entry, serialized."""
    kv: bytes = KeyValue(key=key, value=_any_value(value)).SerializeToString()
    return b"\x32" + varint(len(kv)) + kv


def encode_records(bodies: list[bytes], extras: list[bytes] | None, attrs: bytes,
                   observed: int) -> bytes:
    """Serialized `ScopeLogs.log_records` of UTF-8 bodies; `extras[i]` adds attributes."""
    return encode_lines(bodies, extras, attrs, observed)


def wrap_request(records: bytes, resource: bytes) -> bytes:
    """An ExportLogsServiceRequest with one ResourceLogs and one (unnamed) ScopeLogs."""
    head = b"\x12" + varint(len(records))
    rl_len = len(resource) + len(head) + len(records)
    return b"".join((b"\x0a", varint(rl_len), resource, head, records))
