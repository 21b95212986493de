"""A drawn signature: a PNG data URL (what a canvas gives), decoded with the standard library for the seal.

Only what a browser canvas produces is taken: 8-bit, non-interlaced, grey or RGB, with or without alpha, within
``MAX_PIXELS`` and ``MAX_BYTES``. The scanlines are unfiltered here (PNG filters 0-4), so the seal can draw the
colour as one image and the alpha as its soft mask (PDF has no alpha channel of its own). Anything else is 400
``Signing.InvalidSignature``, refused when the signer signs, so sealing never meets a picture it cannot draw.
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from dataclasses import dataclass

from compliance.errors import InvalidInput

PREFIX = "data:image/png;base64,"
MAX_BYTES = 256 * 1024
MAX_PIXELS = 1_000_000
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples per pixel


@dataclass(frozen=True)
class Picture:
    width: int
    height: int
    colour: bytes  # rows of grey or RGB samples, unfiltered
    grey: bool
    alpha: bytes | None  # rows of alpha samples, or None


def _bad(message: str) -> InvalidInput:
    return InvalidInput("Signing.InvalidSignature", message, field="signature.image")


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _unfilter(raw: bytes, width: int, height: int, bpp: int) -> bytearray:
    stride = width * bpp
    out = bytearray(stride * height)
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            line = bytearray((v + u) & 0xFF for v, u in zip(line, previous, strict=True))
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                corner = previous[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, previous[i], corner)) & 0xFF
        elif kind != 0:
            raise _bad("the PNG has an unknown row filter")
        out[y * stride : (y + 1) * stride] = line
        previous = line
    return out


def decode(data_url: object) -> Picture:
    """The picture of a ``data:image/png;base64,...`` URL, or 400 saying why it is not taken."""
    if not isinstance(data_url, str) or not data_url.startswith(PREFIX) or len(data_url) > MAX_BYTES * 4 // 3 + 64:
        raise _bad(f"a drawn signature is a PNG data URL ({PREFIX}...) of at most {MAX_BYTES} bytes")
    try:
        png = base64.b64decode(data_url[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise _bad("the data URL is not base64") from None
    if not png.startswith(_SIGNATURE):
        raise _bad("the image is not a PNG")
    position, header, idat, ended = len(_SIGNATURE), b"", bytearray(), False
    while not ended and position + 12 <= len(png):
        length, kind = struct.unpack(">I4s", png[position : position + 8])
        body = png[position + 8 : position + 8 + length]
        crc = png[position + 8 + length : position + 12 + length]
        if len(crc) != 4 or struct.unpack(">I", crc)[0] != zlib.crc32(kind + body):
            raise _bad("the PNG is truncated or corrupt")
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        position += 12 + length
        ended = kind == b"IEND"
    if len(header) != 13 or not ended:
        raise _bad("the PNG is incomplete")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in _CHANNELS or interlace or not 0 < width * height <= MAX_PIXELS:
        raise _bad(f"take an 8-bit, non-interlaced PNG of at most {MAX_PIXELS} pixels (as a canvas gives)")
    bpp = _CHANNELS[colour]
    expected = (width * bpp + 1) * height
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(bytes(idat), expected + 1)
    except zlib.error:
        raise _bad("the PNG's image data is corrupt") from None
    if len(raw) != expected:
        raise _bad("the PNG's image data does not fit its size")
    pixels = _unfilter(raw, width, height, bpp)
    samples = bpp - (1 if colour in (4, 6) else 0)
    if samples == bpp:
        return Picture(width, height, bytes(pixels), samples == 1, None)
    colour_bytes = bytearray(len(pixels) // bpp * samples)
    for s in range(samples):
        colour_bytes[s::samples] = pixels[s::bpp]
    return Picture(width, height, bytes(colour_bytes), samples == 1, bytes(pixels[bpp - 1 :: bpp]))
