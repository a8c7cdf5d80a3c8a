"""An Aperio SVS writer: pyramidal tiled JPEG laid out like a scanner's file (slideio's SVS driver opens it)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from core.base.fileio import atomic_write_bytes
from core.demo.spec import APP_MAG, MPP


def _aperio_header(width: int, height: int, tile: int, quality: int) -> str:
    size = f"{width}x{height}"
    return f"Aperio Image Library v12.0.0 \r\n{size} [0,0 {size}] ({tile}x{tile}) JPEG/RGB Q={quality}"


def write_aperio_svs(path: str | Path, rgb: np.ndarray, tile: int = 256, quality: int = 80, image_id: int = 0) -> None:
    """Write `rgb` (level 0, uint8) as a pyramidal Aperio SVS, laid out like a scanner's file.

    Pages, as Aperio writes them and slideio's SVS driver expects: level 0 (tiled JPEG), a small
    stripped thumbnail, downsampled levels (4x, 16x, ... while wider than one tile, tiled JPEG),
    then the label (LZW) and macro (JPEG) images, each named in its ImageDescription.
    """
    height, width = rgb.shape[:2]
    name = Path(path).stem
    fields = (
        f"AppMag = {APP_MAG}|StripeWidth = 2040|ScanScope ID = SS0000|Filename = {name}|Date = 01/01/16"
        f"|Time = 12:00:00|Time Zone = GMT+00:00|User = histogene-demo|MPP = {MPP:.4f}|Left = 20.0|Top = 20.0"
        f"|LineCameraSkew = 0.000000|LineAreaXOffset = 0.000000|LineAreaYOffset = 0.000000"
        f"|Focus Offset = 0.000000|ImageID = {image_id}|OriginalWidth = {width}|OriginalHeight = {height}"
        "|Filtered = 5|Title = synthetic H&E (HistoGene Explorer demo)"
    )
    header = _aperio_header(width, height, tile, quality)
    image = Image.fromarray(rgb)
    scale = max(width, height) / 768
    thumb_size = (max(1, round(width / scale)), max(1, round(height / scale)))
    thumb_text = f"{width}x{height} -> {thumb_size[0]}x{thumb_size[1]} - "
    thumb = np.asarray(image.resize(thumb_size, Image.BILINEAR))
    jpeg = {"compression": "jpeg", "compressionargs": {"level": quality}, "photometric": "rgb", "metadata": None}
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as tif:
        tif.write(rgb, tile=(tile, tile), description=f"{header}|{fields}", software=False, **jpeg)
        tif.write(
            thumb,
            rowsperstrip=16,
            description=f"Aperio Image Library v12.0.0 \r\n{thumb_text}|{fields}",
            software=False,
            **jpeg,
        )
        level, downsample = image, 1
        while True:
            downsample *= 4
            size = (width // downsample, height // downsample)
            if min(size) < tile // 2:
                break
            level = level.reduce(4) if level.size[0] // 4 == size[0] else level.resize(size, Image.BOX)
            tif.write(
                np.asarray(level),
                tile=(tile, tile),
                description=f"{header} -> {size[0]}x{size[1]} JPEG/RGB Q={quality}|{fields}",
                software=False,
                **jpeg,
            )
        label = _label_image(name)
        tif.write(
            label,
            rowsperstrip=16,
            compression="lzw",
            photometric="rgb",
            subfiletype=1,
            description=f"Aperio Image Library v12.0.0 \r\nlabel {label.shape[1]}x{label.shape[0]}",
            metadata=None,
            software=False,
        )
        macro = _macro_image(thumb)
        tif.write(
            macro,
            rowsperstrip=16,
            subfiletype=9,
            description=f"Aperio Image Library v12.0.0 \r\nmacro {macro.shape[1]}x{macro.shape[0]}",
            software=False,
            **jpeg,
        )
    atomic_write_bytes(path, buffer.getvalue())


def _label_image(name: str) -> np.ndarray:
    """A slide label: white with a barcode derived from the sample ID (no text rendering needed)."""
    label = np.full((400, 380, 3), 250, np.uint8)
    bits = np.unpackbits(np.frombuffer(name.encode()[:40].ljust(40, b"\0"), np.uint8))
    for i, bit in enumerate(bits[:320]):
        label[40:200, 30 + i : 31 + i] = 20 if bit else 250
    return label


def _macro_image(thumb: np.ndarray) -> np.ndarray:
    """A macro (whole glass slide) picture: grey glass, the tissue in the middle."""
    macro = np.full((431, 1280, 3), 205, np.uint8)
    small = np.asarray(Image.fromarray(thumb).resize((380, max(1, round(380 * thumb.shape[0] / thumb.shape[1])))))
    small = small[:400]
    top = (431 - small.shape[0]) // 2
    macro[top : top + small.shape[0], 500:880] = small
    return macro
