"""The reader caps of FORMAT.md "Limits": what a reader holds, whatever a blob claims.

Save refuses to write past a cap (no reader would take the blob); readers and
RestoreFromBuffer refuse past one as the bytes come. Callers read them from this module
at call time (`limits.MAX_...`), so a test may lower one."""

MAX_HEADER_SIZE = 4096  # FileHeader.header_size, trailer included
MAX_CHUNK_LENGTH = 32 * 1024 * 1024  # ChunkHeader.length: refused before allocating
MAX_WINDOW_SIZE = 1 << 23  # 8 MiB: a zstd frame needing a larger decoder window is refused
MAX_SKIPPED_CHUNKS = 65536  # unknown optional chunks a reader skips in one blob
MAX_SKIPPED_BYTES = 32 << 20  # and their data, in bytes
MAX_PACKETS_PER_CHANNEL = 1 << 18  # packet objects in use a channel may hold; also pending
# incoming packets of a channel or a guest (PENDING_INCOMING entries)
MAX_GPADLS_PER_CHANNEL = 1 << 16  # GPADLs one channel may hold
MAX_GUESTS = 1 << 12  # guest channels of a scenario chunk
