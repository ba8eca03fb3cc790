"""Primitives shared by the grammars: GUIDs and external data descriptions.

    GUID          ::= 16 bytes, Windows byte order (u32 LE, u16 LE, u16 LE, 8 bytes)
    EXTERNAL_DATA ::= u16 kind, KIND_BODY
    KIND_BODY     ::= kind 0: nothing
                    | kind 9 (GPA direct): u32 range_count, { u32 byte_count,
                      u32 byte_offset, u32 pfn_count, u64 pfn[pfn_count] }
                    | kind 7 (transfer pages) or 8 (GPADL): u32 handle,
                      u8 sender_owns_set, u32 range_count, { u32 byte_count, u32 byte_offset }
"""

from construct import (
    Adapter,
    Bytes,
    BytesIOWithOffsets,
    Enum,
    Error,
    Int8ul,
    Int16ul,
    Int32ul,
    Int64ul,
    MappingError,
    Pass,
    Prefixed,
    PrefixedArray,
    Struct,
    Subconstruct,
    Switch,
    ValidationError,
    this,
)

from . import version_tuple


class GuidAdapter(Adapter):
    """16 bytes in Windows GUID byte order <-> the canonical lowercase string."""

    def _decode(self, obj, context, path):
        import uuid

        return str(uuid.UUID(bytes_le=bytes(obj)))

    def _encode(self, obj, context, path):
        import uuid

        return uuid.UUID(obj).bytes_le


Guid = GuidAdapter(Bytes(16))


class StrictEnum(Enum):
    """An Enum that refuses values it has no name for, parsed or compiled."""

    def _decode(self, obj, context, path):
        try:
            return self.decmapping[obj]
        except KeyError:
            raise MappingError(f"unknown value {obj!r}", path=path) from None

    def _emitparse(self, code):
        fname = f"factory_{code.allocateId()}"
        code.append(f"{fname} = {self.decmapping!r}")
        code.append(f"""
            def strict_{fname}(x):
                try:
                    return {fname}[x]
                except KeyError:
                    raise MappingError("unknown value %r" % (x,)) from None
        """)
        return f"strict_{fname}({self.subcon._compileparse(code)})"


class StrictPrefixed(Prefixed):
    """Prefixed that refuses bytes its structure leaves unread inside the length."""

    def _parse(self, stream, context, path):
        length = self.lengthfield._parsereport(stream, context, path)
        substream = BytesIOWithOffsets.from_reading(stream, length, path)
        obj = self.subcon._parsereport(substream, context, path)
        left = len(substream.read())
        if left:
            raise ValidationError(f"{left} bytes left over in a {length}-byte field", path=path)
        return obj

    def _emitparse(self, code):
        raise NotImplementedError  # compiled grammars link to _parse above


class StrictFlagAdapter(Adapter):
    """A u8 that must be 0 or 1: any other byte is refused, not read as true."""

    def _decode(self, obj, context, path):
        if obj not in (0, 1):
            raise ValidationError(f"flag byte {obj} is neither 0 nor 1", path=path)
        return bool(obj)

    def _encode(self, obj, context, path):
        return int(bool(obj))


StrictFlag = StrictFlagAdapter(Int8ul)


class Since(Subconstruct):
    """A field a later minor version appended: `Since("1.1", "name" / Int32ul)`.

    Blobs of an earlier minor end before it, so parsing at the end of the data gives
    `default`; building `None` writes nothing (an earlier minor's bytes). Only the last
    fields of a structure whose end the reader knows can be marked: a chunk's structure,
    a length-prefixed structure or FileHeader (see FORMAT.md "Versioning"; `vmbtool
    compat` checks it). `vmbtool.schema` reads `since` from here.
    """

    def __init__(self, since: str, subcon, default=None):
        try:
            version_tuple(since)
        except ValueError:
            raise ValueError(f"Since: version {since!r} is not <major>.<minor>") from None
        super().__init__(subcon)
        self.name = subcon.name
        self.since = since
        self.default = default

    def _parse(self, stream, context, path):
        position = stream.tell()
        if not stream.read(1):
            return self.default
        stream.seek(position)
        return self.subcon._parsereport(stream, context, path)

    def _build(self, obj, stream, context, path):
        if obj is None:
            return None
        return self.subcon._build(obj, stream, context, path)


ExternalKind = StrictEnum(Int16ul, none=0, transfer_pages=7, data_using_gpadl=8, gpa_direct=9)

GpaRange = Struct(
    "byte_count" / Int32ul,
    "byte_offset" / Int32ul,
    "pfns" / PrefixedArray(Int32ul, Int64ul),
)

ByteRange = Struct("byte_count" / Int32ul, "byte_offset" / Int32ul)

_EXTERNAL_BODIES = {
    "none": Pass,
    "gpa_direct": Struct("ranges" / PrefixedArray(Int32ul, GpaRange)),
    "transfer_pages": Struct(
        "handle" / Int32ul,
        "sender_owns_set" / StrictFlag,
        "ranges" / PrefixedArray(Int32ul, ByteRange),
    ),
    "data_using_gpadl": Struct(
        "handle" / Int32ul,
        "sender_owns_set" / StrictFlag,
        "ranges" / PrefixedArray(Int32ul, ByteRange),
    ),
}

ExternalData = Struct(
    "kind" / ExternalKind,
    # keyed by name and by number: compiled builders switch on the built integer
    "body" / Switch(
        this.kind,
        {**_EXTERNAL_BODIES,
         **{ExternalKind.encmapping[name]: body for name, body in _EXTERNAL_BODIES.items()}},
        default=Error,
    ),
)
