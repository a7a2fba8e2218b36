"""Image sizes from file headers (PNG IHDR, JPEG SOF), without decoding the pixels.

The EXIF rule (one for the loader, ``evaluate.py`` and ``predict.py``): images are used as
a viewer shows them, with the JPEG EXIF orientation applied (OpenCV's ``imread`` default),
so annotations and ``width``/``height`` are in the oriented frame. :func:`image_size`
returns that oriented ``(width, height)``: orientations 5-8 swap the stored sides.
Other formats (BMP, TIFF, WebP, ...) fall back to decoding the file with OpenCV.
"""

from __future__ import annotations

import os
import struct

from detectlab.data.bounds import check_image_size
from detectlab.errors import DataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (C4 = DHT, C8 = JPG extension, CC = DAC are not frames).
SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def image_kind(head: bytes) -> str | None:
    """The format of an encoded image from its first 12 bytes (``jpeg``, ``png``, ``bmp``,
    ``tiff``, ``webp``: what OpenCV decodes here), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    return None


def image_size(path: str | os.PathLike, where: str | None = None) -> tuple[int, int]:
    """``(width, height)`` of the image at ``path`` as displayed (EXIF orientation applied).

    Errors are one line starting with ``where`` (default: the path).
    """
    path = str(path)
    where = where or path
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        raise DataError(f"{where}: not a regular file (a device or pipe): {path}")
    return check_image_size(*_oriented_size(path, where), f"{where}: image {path}")


def _oriented_size(path: str, where: str) -> tuple[int, int]:
    try:
        with open(path, "rb") as f:
            head = f.read(32)
            if head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR":
                width, height = struct.unpack(">II", head[16:24])
                return int(width), int(height)
            if head.startswith(b"\xff\xd8"):
                f.seek(2)
                size = _jpeg_size(f)
                if size is not None:
                    return size
    except FileNotFoundError:
        raise DataError(f"{where}: image not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{where}: a folder, not an image: {path}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL character in the name
        raise DataError(f"{where}: cannot read image {path!r} ({getattr(exc, 'strerror', None) or exc})") from None
    return _decoded_size(path, where)


def _jpeg_size(f) -> tuple[int, int] | None:
    """Walk the JPEG markers up to the first SOF; None when the stream is not as expected."""
    orientation = 1
    while True:
        byte = f.read(1)
        while byte == b"\xff":  # fill bytes before a marker
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            continue
        raw = f.read(2)
        if len(raw) < 2:
            return None
        length = struct.unpack(">H", raw)[0] - 2
        if marker in SOF_MARKERS:
            data = f.read(5)
            if len(data) < 5:
                return None
            height, width = struct.unpack(">HH", data[1:5])
            return (height, width) if orientation >= 5 else (width, height)
        segment = f.read(length)
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            orientation = exif_orientation(segment[6:])
        if marker == 0xDA:  # start of scan before any frame header: give up
            return None


def exif_orientation(tiff: bytes) -> int:
    """EXIF orientation tag (1..8; 1 when absent or malformed) of a TIFF-structured block."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    offset = struct.unpack(order + "I", tiff[4:8])[0]
    if offset + 2 > len(tiff):
        return 1
    count = struct.unpack(order + "H", tiff[offset : offset + 2])[0]
    for k in range(count):
        entry = tiff[offset + 2 + 12 * k : offset + 14 + 12 * k]
        if len(entry) < 12:
            break
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag == 0x0112 and kind == 3:
            value = struct.unpack(order + "H", entry[8:10])[0]
            return value if 1 <= value <= 8 else 1
    return 1


def _decoded_size(path: str, where: str) -> tuple[int, int]:
    import cv2

    image = cv2.imread(path, cv2.IMREAD_COLOR)  # applies EXIF orientation, as the loader does
    if image is None:
        raise DataError(f"{where}: cannot decode image (corrupt or not an image): {path}")
    return int(image.shape[1]), int(image.shape[0])


def truncated(path: str) -> str | None:
    """Why a JPEG / PNG file is cut short (no end marker / IEND chunk near its end), or None.

    Decoders fill a truncated JPEG with grey and only print a warning without the file
    name; the end marker is cheap to look for (the last kilobyte of the file; only when it
    is not there is the whole file read, to allow trailers after the image).
    """
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 1024))
        tail = f.read()
        if head.startswith(b"\xff\xd8") and b"\xff\xd9" not in tail:
            # data after the image (camera trailers) is allowed: the last scan must end
            f.seek(0)
            data = f.read()
            end = data.rfind(b"\xff\xd9")
            if end < 0 or end < data.rfind(b"\xff\xda"):
                return "truncated JPEG (no end-of-image marker): corrupt image"
    if head.startswith(b"\x89PNG") and b"IEND" not in tail:
        return "truncated PNG (no IEND chunk): corrupt image"
    return None
