"""Cloud-Optimized GeoTIFFs assembled from blocks compressed beforehand.

GDAL's COG driver compresses every block itself, once all the pixels are there: on a full
scene that encode was a serial step after the tiles. madrone's writer compresses each block
as soon as a tile completes it (``encode_block``: the predictor GDAL applies, checked equal to
GDAL's in the tests, then libzstd or libdeflate through imagecodecs) and this module lays the
blocks out as a COG (``write_cog``):

    header, GDAL's structural metadata (LAYOUT=IFDS_BEFORE_DATA, BLOCK_ORDER=ROW_MAJOR,
    BLOCK_LEADER=SIZE_AS_UINT4, BLOCK_TRAILER=LAST_4_BYTES_REPEATED: GDAL reports such a
    file as LAYOUT=COG and reads a block in one request), every IFD (full resolution first,
    then the overviews, each with its out-of-line values), the blocks: the smallest overview
    first, the full resolution last, each level row-major, each with its leader and trailer.

The georeferencing, metadata and nodata tags are GDAL's own, read from a template GDAL
writes for the grid without any block (``template_tags``). Classic TIFF unless the file
would pass 4 GiB, then BigTIFF.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# TIFF tags written by this module; the template gives the GeoTIFF and GDAL ones.
NEW_SUBFILE_TYPE, IMAGE_WIDTH, IMAGE_LENGTH, BITS_PER_SAMPLE, COMPRESSION = 254, 256, 257, 258, 259
PHOTOMETRIC, SAMPLES_PER_PIXEL, PLANAR_CONFIG, PREDICTOR = 262, 277, 284, 317
TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS, SAMPLE_FORMAT = 322, 323, 324, 325, 339
GEO_TAGS = (33550, 33922, 34264, 34735, 34736, 34737)  # pixel scale, tiepoint, matrix, keys
GDAL_METADATA, GDAL_NODATA = 42112, 42113
COMPRESSION_CODES = {"ZSTD": 50000, "DEFLATE": 8}

SHORT, LONG, LONG8 = 3, 4, 16
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
               16: 8, 17: 8, 18: 8}  # fmt: skip
_FORMATS = {SHORT: "H", LONG: "I", LONG8: "Q"}
_GHOST = (
    b"LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nBLOCK_LEADER=SIZE_AS_UINT4\n"
    b"BLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n"
)
_LEADER = _TRAILER = 4  # bytes around each block: its size before, its last 4 bytes after


@dataclass(frozen=True)
class Field:
    """One TIFF field: its type, its number of values and their little-endian bytes."""

    kind: int
    count: int
    data: bytes

    @classmethod
    def numbers(cls, kind: int, values: Sequence[int]) -> Field:
        return cls(kind, len(values), struct.pack(f"<{len(values)}{_FORMATS[kind]}", *values))


@dataclass(frozen=True)
class Level:
    """One resolution of the COG: its size and, row-major, where each compressed block is:
    (file descriptor, offset, size)."""

    height: int
    width: int
    blocks: Sequence[tuple[int, int, int]]


def encode_block(values: np.ndarray, compress: str, level: int) -> bytes:
    """One block as GDAL's GTiff driver stores it with PREDICTOR=YES: the floating-point
    predictor (3) for float data, horizontal differencing (2) for integers, then the codec."""
    import imagecodecs

    values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
    if values.dtype.kind == "f":
        predicted = imagecodecs.floatpred_encode(values, axis=-1)
    else:
        predicted = imagecodecs.delta_encode(values, axis=-1)
    if compress == "ZSTD":
        return imagecodecs.zstd_encode(predicted, level=level)
    return imagecodecs.deflate_encode(predicted, level=level)  # zlib-wrapped, as TIFF's 8


def predictor_for(dtype: np.dtype) -> int:
    return 3 if np.dtype(dtype).kind == "f" else 2


def template_tags(path: str) -> dict[int, Field]:
    """The georeferencing, GDAL metadata and nodata fields of a GeoTIFF's first IFD."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] != b"II":
        raise ValueError(f"{path}: not a little-endian TIFF")
    big = struct.unpack_from("<H", data, 2)[0] == 43
    if big:
        (offset,) = struct.unpack_from("<Q", data, 8)
        (count,) = struct.unpack_from("<Q", data, offset)
        entry, start, inline = "<HHQ", offset + 8, 8
    else:
        (offset,) = struct.unpack_from("<I", data, 4)
        (count,) = struct.unpack_from("<H", data, offset)
        entry, start, inline = "<HHI", offset + 2, 4
    step = struct.calcsize(entry) + inline
    fields = {}
    for position in range(start, start + count * step, step):
        tag, kind, n = struct.unpack_from(entry, data, position)
        if tag not in (*GEO_TAGS, GDAL_METADATA, GDAL_NODATA):
            continue
        size = _TYPE_SIZES[kind] * n
        at = position + struct.calcsize(entry)
        if size > inline:
            (at,) = struct.unpack_from("<Q" if big else "<I", data, at)
        fields[tag] = Field(kind, n, data[at : at + size])
    return fields


def write_cog(
    path: str,
    levels: Sequence[Level],
    dtype: np.dtype,
    compress: str,
    block: int,
    tags: dict[int, Field],
    bigtiff: bool | None = None,
) -> None:
    """Write a COG of ``levels`` (full resolution first, then the overviews by size),
    copying each level's compressed blocks from where they are; ``tags`` go to the full
    resolution's IFD (GDAL_NODATA to every IFD). BigTIFF when ``bigtiff``, or when None
    and the file would pass 4 GiB."""
    dtype = np.dtype(dtype)
    ifds = [_fields(level, i, dtype, compress, block, tags) for i, level in enumerate(levels)]
    data_size = sum(_LEADER + size + _TRAILER for level in levels for _, _, size in level.blocks)
    big = bool(bigtiff)
    classic = 8 + 43 + len(_GHOST) + sum(_ifd_size(f, False) for f in ifds) + data_size
    if bigtiff is None:
        big = classic >= 2**32
    header = (16 if big else 8) + 43 + len(_GHOST)
    header += header % 2
    # Where each IFD goes, then each level's blocks: smallest overview first.
    ifd_offsets, position = [], header
    for fields in ifds:
        ifd_offsets.append(position)
        position += _ifd_size(fields, big)
    block_offsets: list[list[int]] = [[] for _ in levels]
    for index in reversed(range(len(levels))):
        for _, _, size in levels[index].blocks:
            block_offsets[index].append(position + _LEADER)
            position += _LEADER + size + _TRAILER
    offset_kind = LONG8 if big else LONG
    with open(path, "wb") as out:
        out.write(_header(big, ifd_offsets[0]))
        for index, fields in enumerate(ifds):
            fields[TILE_OFFSETS] = Field.numbers(offset_kind, block_offsets[index])
            fields[TILE_BYTE_COUNTS] = Field.numbers(
                offset_kind, [size for _, _, size in levels[index].blocks]
            )
            following = ifd_offsets[index + 1] if index + 1 < len(ifds) else 0
            out.seek(ifd_offsets[index])
            out.write(_ifd_bytes(fields, ifd_offsets[index], following, big))
        out.flush()
        target = out.fileno()
        for index in reversed(range(len(levels))):
            for (source, offset, size), at in zip(
                levels[index].blocks, block_offsets[index], strict=True
            ):
                write_all(target, struct.pack("<I", size), at - _LEADER)
                _copy(source, offset, size, target, at)
                last = os.pread(source, min(size, _TRAILER), offset + size - min(size, _TRAILER))
                write_all(target, last.rjust(_TRAILER, b"\0"), at + size)


def _header(big: bool, first_ifd: int) -> bytes:
    if big:
        start = b"II" + struct.pack("<HHHQ", 43, 8, 0, first_ifd)
    else:
        start = b"II" + struct.pack("<HI", 42, first_ifd)
    ghost = b"GDAL_STRUCTURAL_METADATA_SIZE=%06d bytes\n" % len(_GHOST) + _GHOST
    text = start + ghost
    return text + b"\0" * (len(text) % 2)


def _fields(
    level: Level, index: int, dtype: np.dtype, compress: str, block: int, tags: dict[int, Field]
) -> dict[int, Field]:
    fields = {
        IMAGE_WIDTH: Field.numbers(LONG, [level.width]),
        IMAGE_LENGTH: Field.numbers(LONG, [level.height]),
        BITS_PER_SAMPLE: Field.numbers(SHORT, [dtype.itemsize * 8]),
        COMPRESSION: Field.numbers(SHORT, [COMPRESSION_CODES[compress]]),
        PHOTOMETRIC: Field.numbers(SHORT, [1]),
        SAMPLES_PER_PIXEL: Field.numbers(SHORT, [1]),
        PLANAR_CONFIG: Field.numbers(SHORT, [1]),
        PREDICTOR: Field.numbers(SHORT, [predictor_for(dtype)]),
        TILE_WIDTH: Field.numbers(SHORT, [block]),
        TILE_LENGTH: Field.numbers(SHORT, [block]),
        SAMPLE_FORMAT: Field.numbers(SHORT, [3 if dtype.kind == "f" else 1]),
        # Placeholders of the right length; the offsets are known once laid out.
        TILE_OFFSETS: Field.numbers(LONG, [0] * len(level.blocks)),
        TILE_BYTE_COUNTS: Field.numbers(LONG, [0] * len(level.blocks)),
    }
    if index:
        fields[NEW_SUBFILE_TYPE] = Field.numbers(LONG, [1])  # a reduced-resolution image
        fields.update({tag: tags[tag] for tag in (GDAL_NODATA,) if tag in tags})
    else:
        fields.update(tags)
    return fields


def _ifd_size(fields: dict[int, Field], big: bool) -> int:
    inline = 8 if big else 4
    size = (8 + 20 * len(fields) + 8) if big else (2 + 12 * len(fields) + 4)
    for tag, field in fields.items():
        length = _length(tag, field, big)
        if length > inline:
            size += length + length % 2
    return size


def _length(tag: int, field: Field, big: bool) -> int:
    """Bytes of a field's values; the tile offsets and counts are LONG8 in a BigTIFF."""
    if tag in (TILE_OFFSETS, TILE_BYTE_COUNTS):
        return field.count * (8 if big else 4)
    return len(field.data)


def _ifd_bytes(fields: dict[int, Field], at: int, following: int, big: bool) -> bytes:
    """An IFD at offset ``at``: its entries sorted by tag, then the values too long to be
    inline, each on an even offset."""
    inline = 8 if big else 4
    entries = (8 if big else 2) + (20 if big else 12) * len(fields) + (8 if big else 4)
    head = [struct.pack("<Q" if big else "<H", len(fields))]
    tail: list[bytes] = []
    extra = at + entries
    for tag in sorted(fields):
        field = fields[tag]
        if len(field.data) != _length(tag, field, big):
            raise ValueError(f"TIFF tag {tag}: {len(field.data)} bytes for {field.count} values")
        if big:
            head.append(struct.pack("<HHQ", tag, field.kind, field.count))
        else:
            head.append(struct.pack("<HHI", tag, field.kind, field.count))
        if len(field.data) <= inline:
            head.append(field.data.ljust(inline, b"\0"))
        else:
            head.append(struct.pack("<Q" if big else "<I", extra))
            padded = field.data + b"\0" * (len(field.data) % 2)
            tail.append(padded)
            extra += len(padded)
    head.append(struct.pack("<Q" if big else "<I", following))
    return b"".join(head + tail)


def write_all(fd: int, data: bytes | np.ndarray, offset: int) -> None:
    """Write all of ``data`` at ``offset``: a short write (a full disk) is retried, and an
    error raised, rather than leaving part of a block on disk as if it were whole."""
    view = memoryview(data).cast("B")
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(f"writing {len(view) - done} bytes at offset {offset + done}")
        done += n


def _copy(source: int, offset: int, size: int, target: int, at: int) -> None:
    """Copy ``size`` bytes between files, in the kernel where it can."""
    done = 0
    while done < size:
        try:
            n = os.copy_file_range(source, target, size - done, offset + done, at + done)
        except (AttributeError, OSError):
            n = os.pwrite(target, os.pread(source, size - done, offset + done), at + done)
        if n <= 0:
            raise OSError(f"copying a COG block: {size - done} bytes left at offset {at}")
        done += n
