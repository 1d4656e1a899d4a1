"""Width and height of an image file from its header, before any pixel is decoded.

Covers every format OpenCV's imdecode recognises by its signature (OpenCV 4.x/5.x:
JPEG, PNG, BMP, GIF, WebP, TIFF and BigTIFF, PBM/PGM/PPM/PAM, PFM, Sun raster,
Radiance HDR, JPEG 2000, AVIF), read the way the decoders read them: the JPEG scan
skips stray bytes between segments as libjpeg does, so a byte before SOF cannot hide
the declared size. :func:`image_size` returns None when it cannot bound the image
(unknown format, or a header that does not say); the caller then refuses the file:
what is not bounded is not decoded.
"""

from __future__ import annotations

import struct

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_NO_LENGTH = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0..7: markers without a length field
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_HEADER_BYTES = 1 << 16  # text headers (PNM, PAM, PFM, HDR) are read this far at most

FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WebP", "TIFF", "PNM/PAM/PFM", "Sun raster", "Radiance HDR", "JPEG 2000",
           "AVIF")


def image_format(data: bytes | memoryview) -> str | None:
    """The format named by the file's signature, as OpenCV's decoders recognise it, or None."""
    head = bytes(data[:16])
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:2] == b"BM":
        return "BMP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if len(head) >= 2 and head[:1] == b"P" and head[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"F", b"f"):
        return "PNM"
    if head[:4] == b"\x59\xa6\x6a\x95":
        return "Sun raster"
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        return "Radiance HDR"
    if head[:12] == _JP2_SIGNATURE or head[:4] == b"\xff\x4f\xff\x51":
        return "JPEG 2000"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"mif1", b"msf1", b"heic", b"heix"):
        return "AVIF"
    return None


def image_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """(width, height) declared by the file's header, or None when it cannot be told."""
    data = memoryview(data).cast("B")
    kind = image_format(data)
    reader = _READERS.get(kind) if kind else None
    if reader is None:
        return None
    try:
        size = reader(data)
    except (struct.error, IndexError, ValueError):  # a header cut short or garbled: not bounded
        return None
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return int(size[0]), int(size[1])


def _png(data: memoryview) -> tuple[int, int] | None:
    if bytes(data[12:16]) != b"IHDR":  # libpng requires IHDR first
        return None
    return struct.unpack(">II", data[16:24])


def _jpeg(data: memoryview) -> tuple[int, int] | None:
    """The first SOF, found as libjpeg finds markers: any bytes up to an 0xFF are skipped, fill bytes too."""
    offset, end = 2, len(data)
    while offset < end:
        if data[offset] != 0xFF:  # "extraneous bytes before marker": libjpeg skips them
            offset += 1
            continue
        while offset < end and data[offset] == 0xFF:
            offset += 1
        if offset >= end:
            return None
        marker = data[offset]
        offset += 1
        if marker == 0x00 or marker in _JPEG_NO_LENGTH:  # a stuffed 0xFF00 or a marker without length
            continue
        if marker in (0xD8, 0xD9, 0xDA):  # a second SOI, EOI or the scan before any SOF: no size declared
            return None
        (length,) = struct.unpack(">H", data[offset:offset + 2])
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[offset + 3:offset + 7])
            return width, height  # height 0 (set later by DNL) is refused by the caller
        if length < 2:
            return None
        offset += length
    return None


def _bmp(data: memoryview) -> tuple[int, int]:
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sides
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)


def _gif(data: memoryview) -> tuple[int, int] | None:
    """The logical screen, or the first frame where it reaches past the screen."""
    width, height, flags = struct.unpack("<HHB", data[6:11])
    offset = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    while offset < len(data):
        block = data[offset]
        if block == 0x21:  # extension: label, then sub-blocks up to a zero length
            offset += 2
            while data[offset]:
                offset += data[offset] + 1
            offset += 1
        elif block == 0x2C:  # image descriptor
            left, top, frame_w, frame_h = struct.unpack("<HHHH", data[offset + 1:offset + 9])
            return max(width, left + frame_w), max(height, top + frame_h)
        else:
            break
    return width, height


def _webp(data: memoryview) -> tuple[int, int] | None:
    chunk = bytes(data[12:16])
    if chunk == b"VP8 ":
        if bytes(data[23:26]) != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            return None
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _tiff(data: memoryview) -> tuple[int, int] | None:
    """ImageWidth (256) and ImageLength (257) of the first IFD, which is what imdecode reads; BigTIFF too."""
    order = "<" if bytes(data[:2]) == b"II" else ">"
    big = data[2 if order == "<" else 3] == 0x2B
    if big:
        (ifd,) = struct.unpack(order + "Q", data[8:16])
        (count,) = struct.unpack(order + "Q", data[ifd:ifd + 8])
        first, size, value_at = ifd + 8, 20, 12
    else:
        (ifd,) = struct.unpack(order + "I", data[4:8])
        (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
        first, size, value_at = ifd + 2, 12, 8
    found: dict[int, int] = {}
    value_formats = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8: left-justified in the value field
    for i in range(min(count, 4096)):
        entry = data[first + size * i:first + size * (i + 1)]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257) and kind in value_formats:
            fmt = value_formats[kind]
            found[tag] = struct.unpack(order + fmt, entry[value_at:value_at + struct.calcsize(fmt)])[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _header_tokens(data: memoryview, start: int) -> list[bytes]:
    """Whitespace-separated tokens of a text header, comments (# to the end of the line) dropped."""
    text = bytes(data[start:_HEADER_BYTES])
    tokens: list[bytes] = []
    for line in text.replace(b"\r", b"\n").split(b"\n"):
        tokens.extend(line.split(b"#", 1)[0].split())
        if len(tokens) >= 16:
            break
    return tokens


def _pnm(data: memoryview) -> tuple[int, int] | None:
    """P1-P6 and PFM (PF/Pf): width and height are the first two numbers; PAM (P7): WIDTH and HEIGHT fields."""
    tokens = _header_tokens(data, 2)
    if data[1] == ord("7"):
        fields = dict(zip(tokens[::2], tokens[1::2]))
        if b"WIDTH" not in fields or b"HEIGHT" not in fields:
            return None
        return int(fields[b"WIDTH"]), int(fields[b"HEIGHT"])
    if len(tokens) < 2 or not (tokens[0].isdigit() and tokens[1].isdigit()):
        return None
    return int(tokens[0]), int(tokens[1])


def _sun_raster(data: memoryview) -> tuple[int, int]:
    return struct.unpack(">II", data[4:12])


def _radiance(data: memoryview) -> tuple[int, int] | None:
    """Header lines up to an empty line, then the resolution line, e.g. ``-Y 480 +X 640``."""
    head = bytes(data[:_HEADER_BYTES])
    end = head.find(b"\n\n")
    if end < 0:
        return None
    words = head[end + 2:].split(b"\n", 1)[0].split()
    if len(words) != 4:
        return None
    sides = {words[0][-1:]: int(words[1]), words[2][-1:]: int(words[3])}
    if set(sides) != {b"X", b"Y"}:
        return None
    return sides[b"X"], sides[b"Y"]


def _boxes(data: memoryview, start: int, end: int):
    """(type, payload start, payload end) of the ISO base media / JP2 boxes in data[start:end]."""
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        header = 8
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8:offset + 16])
            header = 16
        elif size == 0:
            size = end - offset
        if size < header:
            return
        yield kind, offset + header, min(offset + size, end)
        offset += size


def _j2k_codestream(data: memoryview, start: int) -> tuple[int, int] | None:
    """SIZ marker after SOC: Xsiz, Ysiz minus the image offsets."""
    if bytes(data[start:start + 4]) != b"\xff\x4f\xff\x51":
        return None
    xsiz, ysiz, xo, yo = struct.unpack(">IIII", data[start + 8:start + 24])
    return xsiz - xo, ysiz - yo


def _jpeg2000(data: memoryview) -> tuple[int, int] | None:
    if bytes(data[:4]) == b"\xff\x4f\xff\x51":
        return _j2k_codestream(data, 0)
    sizes: list[tuple[int, int] | None] = []
    for kind, start, end in _boxes(data, 0, len(data)):
        if kind == b"jp2h":
            for inner, inner_start, _ in _boxes(data, start, end):
                if inner == b"ihdr":
                    height, width = struct.unpack(">II", data[inner_start:inner_start + 8])
                    sizes.append((width, height))
        elif kind == b"jp2c":
            sizes.append(_j2k_codestream(data, start))
    if not sizes or None in sizes:
        return None
    return max((s for s in sizes if s is not None), key=lambda s: s[0] * s[1])  # the largest of what the boxes declare


_CONTAINERS = {b"meta": 4, b"iprp": 0, b"ipco": 0, b"moov": 0, b"trak": 0, b"mdia": 0, b"minf": 0, b"stbl": 0,
               b"stsd": 8}  # bytes before the child boxes (full-box version/flags, entry count)


def _avif(data: memoryview) -> tuple[int, int] | None:
    """The largest image spatial extent (ispe) of any item, or sample entry (av01) of an image sequence."""
    sizes: list[tuple[int, int]] = []

    def walk(start: int, end: int, depth: int) -> None:
        for kind, payload, stop in _boxes(data, start, end):
            if kind == b"ispe":
                sizes.append(struct.unpack(">II", data[payload + 4:payload + 12]))
            elif kind == b"av01":  # VisualSampleEntry: width and height after 24 bytes
                sizes.append(struct.unpack(">HH", data[payload + 24:payload + 28]))
            elif kind in _CONTAINERS and depth < 8:
                walk(payload + _CONTAINERS[kind], stop, depth + 1)

    walk(0, len(data), 0)
    return max(sizes, key=lambda s: s[0] * s[1]) if sizes else None


_READERS = {"PNG": _png, "JPEG": _jpeg, "BMP": _bmp, "GIF": _gif, "WebP": _webp, "TIFF": _tiff, "PNM": _pnm,
            "Sun raster": _sun_raster, "Radiance HDR": _radiance, "JPEG 2000": _jpeg2000, "AVIF": _avif}
