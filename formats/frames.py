"""The frames around a zstd body: the seal and the signature (zstd skippable frames, so
`zstd -d` still reads the body), the skippable-frame rule, and the two pieces of the
zstd frame itself a reader walks to find where the body's frame ends.

    SEAL_FRAME      ::= u32 0x184D2A5B, u32 8, "SEAL", u32 crc32c      (1.1+, zstd only)
    SIGNATURE_FRAME ::= u32 0x184D2A5A, u32 36, "HMS1", u8 hmac_sha256[32]
    SKIPPABLE_FRAME ::= u32 0x184D2A50..0x184D2A5F, u32 frame_size, u8 data[frame_size]

The zstd frame layout is RFC 8878, section 3.1.1:

    Frame_Header  ::= u32 Magic_Number (0xFD2FB528), u8 Frame_Header_Descriptor,
                      [u8 Window_Descriptor], [Dictionary_ID 0-4], [Frame_Content_Size 0-8]
    Block_Header  ::= u24 (bit 0 Last_Block, bits 1-2 Block_Type, bits 3-23 Block_Size)
"""

from construct import Bytes, Const, Int8ul, Int24ul, Int32ul, Struct

SKIPPABLE_MAGIC = 0x184D2A50  # the skippable-frame magics: 0x184D2A50 | nibble (RFC 8878)
SKIPPABLE_MAGIC_MASK = 0xFFFFFFF0
SEAL_MAGIC = SKIPPABLE_MAGIC | 0xB
SIGNATURE_MAGIC = SKIPPABLE_MAGIC | 0xA
SEALED_SINCE = (1, 1)  # the format version whose zstd bodies end with a seal

SkippableFrameHeader = Struct(
    "magic" / Int32ul,
    "frame_size" / Int32ul,
)

SealFrame = Struct(
    "magic" / Const(SEAL_MAGIC, Int32ul),
    "frame_size" / Const(8, Int32ul),
    "tag" / Const(b"SEAL"),
    "crc32c" / Int32ul,
)

SignatureFrame = Struct(
    "magic" / Const(SIGNATURE_MAGIC, Int32ul),
    "frame_size" / Const(36, Int32ul),
    "tag" / Const(b"HMS1"),
    "hmac" / Bytes(32),
)

# RFC 8878 3.1.1: the magic and the descriptor byte; the optional fields that follow
# have the sizes the descriptor's bits name (ZSTD_DESCRIPTOR_* below)
ZstdFrameStart = Struct(
    "magic" / Int32ul,
    "descriptor" / Int8ul,
)
ZSTD_MAGIC = 0xFD2FB528
ZSTD_RESERVED_BIT = 0x08
ZSTD_CHECKSUM_FLAG = 0x04
ZSTD_SINGLE_SEGMENT = 0x20
ZSTD_DICT_ID_SIZES = (0, 1, 2, 4)  # by descriptor bits 0-1
ZSTD_CONTENT_SIZE_SIZES = (0, 2, 4, 8)  # by bits 6-7 (0 means 1 byte when single segment)
ZstdBlockHeader = Int24ul
ZSTD_BLOCK_RLE, ZSTD_BLOCK_RESERVED = 1, 3
ZSTD_CONTENT_CHECKSUM_SIZE = 4
