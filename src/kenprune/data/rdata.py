"""Read character data from an R package's lazy-load database (`data/Rdata.rdb` + `Rdata.rdx`), without R.

The format (R's `serialize`, XDR big-endian, format versions 2 and 3):
- `Rdata.rdx` is gzip (or zlib) of a serialized named list: `variables` maps each object's name to an
  integer pair (offset, length) into `Rdata.rdb`;
- each `.rdb` entry is a 4-byte big-endian uncompressed length followed by a zlib stream of one
  serialized object.
A serialized object starts with `X\\n`, three integers (format version, writer and minimum reader
versions) and, in version 3, the native encoding's name; then items: an integer of flags (type in
the low byte, bit 8 object, bit 9 has attributes, bit 10 has tag, references' index in the high
bits) and the type's payload. This reader knows the types a data package's vectors use (strings,
lists, integers, doubles, logicals, pairlists of attributes, symbols, references) and refuses the
rest with its type number; it never evaluates anything.
"""
from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NIL, SYM, LIST, CHAR, LGL, INT, REAL, STR, VEC, EXPR, RAW = 254, 1, 2, 9, 10, 13, 14, 16, 19, 20, 24
REF, ATTRLIST, GLOBALENV, EMPTYENV, BASEENV, MISSINGARG, UNBOUND = 255, 239, 253, 242, 241, 251, 252


class RDataError(ValueError):
    """The bytes are not the R serialization this reader understands."""


@dataclass
class RVector:
    """An R vector: its type code, elements (str/None, int, float or nested values) and attributes."""

    type: int
    values: list[Any]
    attributes: dict[str, Any] = field(default_factory=dict)

    def names(self) -> list[str]:
        names = self.attributes.get("names")
        return list(names.values) if isinstance(names, RVector) else []


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos, self.refs = data, 0, []

    def int(self) -> int:
        if self.pos + 4 > len(self.data):
            raise RDataError("truncated R serialization")
        (value,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return value

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise RDataError("truncated R serialization")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def attributes(self) -> dict[str, Any]:
        pairs = self.item()
        return dict(pairs) if isinstance(pairs, list) else {}

    def item(self) -> Any:
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind in (NIL, GLOBALENV, EMPTYENV, BASEENV, MISSINGARG, UNBOUND):
            return None
        if kind == REF:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == SYM:
            name = self.item()
            self.refs.append(name)
            return name
        if kind == CHAR:
            n = self.int()
            return None if n == -1 else self.take(n).decode("utf-8", "replace")
        if kind in (LIST, ATTRLIST):  # a pairlist, as a list of (tag, value)
            out = []
            while True:
                attrs = self.attributes() if has_attr else None  # noqa: F841 (a pairlist cell's attributes)
                tag = self.item() if has_tag else None
                out.append((tag, self.item()))
                flags = self.int()
                kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
                if kind == NIL:
                    return out
                if kind not in (LIST, ATTRLIST):
                    raise RDataError(f"a pairlist ends in R type {kind}")
        if kind in (STR, VEC, EXPR, INT, LGL, REAL, RAW):
            n = self.int()
            if n == -1:
                n = (self.int() << 32) + self.int()
            if kind in (STR, VEC, EXPR):
                values = [self.item() for _ in range(n)]
            elif kind in (INT, LGL):
                values = list(struct.unpack(f">{n}i", self.take(4 * n)))
            elif kind == REAL:
                values = list(struct.unpack(f">{n}d", self.take(8 * n)))
            else:
                values = list(self.take(n))
            return RVector(kind, values, self.attributes() if has_attr else {})
        raise RDataError(f"R type {kind} is not supported by kenprune's R data reader")


def unserialize(data: bytes) -> Any:
    """One R object from its serialization (format 'X', versions 2 and 3)."""
    if data[:2] != b"X\n":
        raise RDataError("not an XDR R serialization (expected it to start with 'X\\n')")
    reader = _Reader(data)
    reader.pos = 2
    version = reader.int()
    reader.int(), reader.int()
    if version == 3:
        reader.take(reader.int())  # native encoding name
    elif version != 2:
        raise RDataError(f"R serialization version {version} is not supported")
    return reader.item()


def _decompress_index(raw: bytes) -> bytes:
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else zlib.decompress(raw)


def read_lazyload(folder: str | Path, stem: str = "Rdata") -> dict[str, Any]:
    """Every object of an R lazy-load database (`stem.rdx` + `stem.rdb` in `folder`), by name."""
    folder = Path(folder)
    index = unserialize(_decompress_index((folder / f"{stem}.rdx").read_bytes()))
    if not isinstance(index, RVector) or "variables" not in index.names():
        raise RDataError(f"{folder / (stem + '.rdx')} has no `variables` index")
    variables = index.values[index.names().index("variables")]
    db = (folder / f"{stem}.rdb").read_bytes()
    out = {}
    for name, where in zip(variables.names(), variables.values):
        offset, length = where.values
        blob = db[offset:offset + length]
        if len(blob) != length or length < 4:
            raise RDataError(f"{stem}.rdb is shorter than its index says ({name})")
        out[name] = unserialize(zlib.decompress(blob[4:]))
    return out


def _pack_strings(values: list[str | None]) -> bytes:
    out = [struct.pack(">ii", STR, len(values))]
    for v in values:
        if v is None:
            out.append(struct.pack(">ii", CHAR, -1))
        else:
            raw = v.encode("utf-8")
            out.append(struct.pack(">ii", CHAR | (1 << 15), len(raw)) + raw)  # bit 15 of the levels: UTF-8
    return b"".join(out)


def _pack_named_list(items: list[tuple[str, bytes]]) -> bytes:
    names = _pack_strings([n for n, _ in items])
    sym = struct.pack(">i", SYM) + struct.pack(">ii", CHAR, len(b"names")) + b"names"
    attrs = struct.pack(">i", LIST | (1 << 10)) + sym + names + struct.pack(">i", NIL)
    return struct.pack(">ii", VEC | (1 << 9), len(items)) + b"".join(v for _, v in items) + attrs


def write_lazyload(folder: str | Path, objects: dict[str, list[str | None]], stem: str = "Rdata") -> None:
    """Write character vectors as an R lazy-load database (the inverse of `read_lazyload` for strings):
    test fixtures in the documented format, where the real package is not available."""
    header = b"X\n" + struct.pack(">iii", 2, 0x040000, 0x020300)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    db, where = bytearray(), []
    for name, values in objects.items():
        payload = header + _pack_strings(values)
        blob = struct.pack(">i", len(payload)) + zlib.compress(payload)
        where.append((name, struct.pack(">ii", INT, 2) + struct.pack(">ii", len(db), len(blob))))
        db += blob
    index = header + _pack_named_list([("variables", _pack_named_list(where)), ("references", _pack_named_list([])),
                                       ("compressed", struct.pack(">iii", LGL, 1, 1))])
    (folder / f"{stem}.rdb").write_bytes(bytes(db))
    (folder / f"{stem}.rdx").write_bytes(gzip.compress(index))
