"""Read the files inside a Qt resource archive (`.rcc`, as written by `rcc -binary`).

Only what extracting files needs: the header, the tree of nodes, the UTF-16 names and the data
blobs. Layout (all integers big-endian):

    header  "qres", version (1..3), tree offset, data offset, names offset[, flags if version >= 3]
    node    name offset (4), flags (2: 1 zlib, 2 directory, 4 zstd), then
              directory: child count (4), index of the first child node (4)
              file:      territory (2), language (2), data offset (4)
            and, from version 2 on, a last-modified time (8)
    name    length in UTF-16 units (2), hash (4), UTF-16-BE text
    data    length (4), bytes; zlib data is qCompress's: uncompressed size (4) + zlib stream

Node 0 is the root directory. A damaged archive raises `RccError` (a ValueError) saying what is
wrong; zstd-compressed files need the `zstandard` module (or Python 3.14's `compression.zstd`)
and are otherwise skipped with a warning, or raise if `skip_unsupported=False`.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

MAGIC = b"qres"
FLAG_COMPRESSED = 0x01
FLAG_DIRECTORY = 0x02
FLAG_COMPRESSED_ZSTD = 0x04
MAX_DEPTH = 64


class RccError(ValueError):
    """The bytes are not a readable Qt resource archive."""


class RccUnsupported(RccError):
    """A file uses a compression this Python cannot decode (zstd without a zstd module)."""


def _zstd_decompressor() -> Callable[[bytes], bytes] | None:
    try:  # Python 3.14+
        from compression import zstd  # type: ignore[import-not-found]

        return zstd.decompress
    except ImportError:
        pass
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        return None

    def decompress(blob: bytes) -> bytes:
        # max_output_size: frames written without a content size still decode
        return zstandard.ZstdDecompressor().decompress(blob, max_output_size=1 << 30)

    return decompress


class RccArchive:
    """A parsed archive; `files()` yields (path, bytes) for every file in it."""

    def __init__(self, blob: bytes, name: str = "<rcc>") -> None:
        self.blob = bytes(blob)
        self.name = name
        if len(self.blob) < 20:
            raise RccError(f"{name}: too short for a Qt resource archive ({len(self.blob)} bytes)")
        if self.blob[:4] != MAGIC:
            raise RccError(f"{name}: not a Qt resource archive (no 'qres' magic)")
        self.version, self.tree_offset, self.data_offset, self.names_offset = struct.unpack_from(
            ">4I", self.blob, 4
        )
        if not 1 <= self.version <= 3:
            raise RccError(f"{name}: unsupported rcc format version {self.version}")
        self.node_size = 14 if self.version == 1 else 22
        for label, offset in (
            ("tree", self.tree_offset),
            ("data", self.data_offset),
            ("names", self.names_offset),
        ):
            if offset > len(self.blob):
                raise RccError(
                    f"{name}: {label} offset {offset} lies past the end "
                    f"({len(self.blob)} bytes): truncated archive?"
                )
        self.node_count = (len(self.blob) - self.tree_offset) // self.node_size
        if self.node_count < 1:
            raise RccError(f"{name}: no room for the root node: truncated archive?")
        flags = self._node(0)[1]
        if not flags & FLAG_DIRECTORY:
            raise RccError(f"{name}: the root node is not a directory")

    @classmethod
    def open(cls, path: str | Path) -> RccArchive:
        path = Path(path)
        return cls(path.read_bytes(), name=str(path))

    # -- low-level readers, each checking its bounds ------------------------------------------
    def _unpack(self, fmt: str, offset: int, what: str) -> tuple:
        size = struct.calcsize(fmt)
        if offset < 0 or offset + size > len(self.blob):
            raise RccError(
                f"{self.name}: {what} at byte {offset} runs past the end "
                f"({len(self.blob)} bytes): truncated or damaged archive"
            )
        return struct.unpack_from(fmt, self.blob, offset)

    def _node(self, index: int) -> tuple[int, int, int, int]:
        """(name offset, flags, a, b): a, b = child count, first child or 0, data offset."""
        if not 0 <= index < self.node_count:
            raise RccError(
                f"{self.name}: node {index} is outside the tree "
                f"({self.node_count} nodes): damaged archive"
            )
        offset = self.tree_offset + index * self.node_size
        name_offset, flags = self._unpack(">IH", offset, f"node {index}")
        if flags & FLAG_DIRECTORY:
            count, first = self._unpack(">II", offset + 6, f"node {index}")
            return name_offset, flags, count, first
        (data_offset,) = self._unpack(">I", offset + 10, f"node {index}")
        return name_offset, flags, 0, data_offset

    def _name(self, name_offset: int) -> str:
        offset = self.names_offset + name_offset
        (length,) = self._unpack(">H", offset, "a name")
        raw_offset = offset + 6
        if raw_offset + 2 * length > len(self.blob):
            raise RccError(
                f"{self.name}: a name at byte {offset} runs past the end: truncated archive"
            )
        try:
            return self.blob[raw_offset : raw_offset + 2 * length].decode("utf-16-be")
        except UnicodeDecodeError as error:
            raise RccError(f"{self.name}: undecodable name at byte {offset}: {error}") from None

    def _data(self, data_offset: int, flags: int, path: str) -> bytes:
        offset = self.data_offset + data_offset
        (length,) = self._unpack(">I", offset, f"the data of {path}")
        start = offset + 4
        if start + length > len(self.blob):
            raise RccError(
                f"{self.name}: the data of {path} ({length} bytes at {start}) runs past "
                f"the end ({len(self.blob)} bytes): truncated archive"
            )
        raw = self.blob[start : start + length]
        if flags & FLAG_COMPRESSED_ZSTD:
            decompress = _zstd_decompressor()
            if decompress is None:
                raise RccUnsupported(
                    f"{self.name}: {path} is zstd-compressed and no zstd module is "
                    "importable (pip install zstandard)"
                )
            try:
                return decompress(raw)
            except Exception as error:  # noqa: BLE001 - zstd modules raise their own types
                raise RccError(f"{self.name}: cannot decompress {path} (zstd): {error}") from None
        if flags & FLAG_COMPRESSED:
            if len(raw) < 4:
                raise RccError(f"{self.name}: compressed data of {path} is shorter than its header")
            (expected,) = struct.unpack_from(">I", raw, 0)
            try:
                out = zlib.decompress(raw[4:])
            except zlib.error as error:
                raise RccError(f"{self.name}: cannot decompress {path} (zlib): {error}") from None
            if len(out) != expected:
                raise RccError(
                    f"{self.name}: {path} decompressed to {len(out)} bytes, "
                    f"the header says {expected}"
                )
            return out
        return raw

    # -- public API -----------------------------------------------------------------------------
    def entries(self) -> Iterator[tuple[str, int, int]]:
        """(path, flags, data offset) of every file, depth first, without reading the data."""
        seen = {0}
        stack: list[tuple[int, str, int]] = [(0, "", 0)]
        while stack:
            index, prefix, depth = stack.pop()
            _, _, count, first = self._node(index)
            if depth > MAX_DEPTH:
                raise RccError(
                    f"{self.name}: directories nested deeper than {MAX_DEPTH}: damaged archive"
                )
            if count > self.node_count or first + count > self.node_count:
                raise RccError(
                    f"{self.name}: directory node {index} lists {count} children from "
                    f"node {first}, past the {self.node_count} nodes: damaged archive"
                )
            children = []
            for child in range(first, first + count):
                if child in seen:
                    raise RccError(f"{self.name}: node {child} is reached twice: damaged archive")
                seen.add(child)
                name_offset, flags, _, data_offset = self._node(child)
                path = f"{prefix}/{self._name(name_offset)}" if prefix else self._name(name_offset)
                children.append((child, path, flags, data_offset))
            # push in reverse so that files come out in the archive's (sorted) order
            for child, path, flags, _offset in reversed(children):
                if flags & FLAG_DIRECTORY:
                    stack.append((child, path, depth + 1))
            for _child, path, flags, data_offset in children:
                if not flags & FLAG_DIRECTORY:
                    yield path, flags, data_offset

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.entries()]

    def read(self, path: str) -> bytes:
        """The bytes of one file; KeyError if the archive has no such file."""
        for entry, flags, data_offset in self.entries():
            if entry == path:
                return self._data(data_offset, flags, entry)
        raise KeyError(f"{self.name}: no file {path!r}")

    def files(
        self, want: Callable[[str], bool] | None = None, skip_unsupported: bool = True
    ) -> Iterator[tuple[str, bytes]]:
        """(path, bytes) of every file (or those whose path `want` accepts).

        zstd files without a zstd module: skipped with one warning per archive when
        `skip_unsupported`, else `RccUnsupported` is raised.
        """
        skipped = []
        for path, flags, data_offset in list(self.entries()):
            if want is not None and not want(path):
                continue
            try:
                yield path, self._data(data_offset, flags, path)
            except RccUnsupported:
                if not skip_unsupported:
                    raise
                skipped.append(path)
        if skipped:
            warnings.warn(
                f"{self.name}: skipped {len(skipped)} zstd-compressed files "
                f"(e.g. {skipped[0]}): install `zstandard` to read them",
                stacklevel=2,
            )


def read_rcc(
    path: str | Path, want: Callable[[str], bool] | None = None
) -> Iterator[tuple[str, bytes]]:
    """(path inside the archive, bytes) for the files of the .rcc at `path`."""
    yield from RccArchive.open(path).files(want)


if __name__ == "__main__":  # python -m captioner.scenes.rcc FILE.rcc: list the files
    import sys

    for arg in sys.argv[1:]:
        archive = RccArchive.open(arg)
        for entry, flags, _ in archive.entries():
            print(f"{arg}\t{entry}\t{flags}")
