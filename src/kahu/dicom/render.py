"""Rendering an instance to an 8-bit PNG or JPEG (WADO-RS rendered resources, thumbnails):
grayscale through the modality and VOI LUTs, colour (RGB, YBR, palette) as RGB, one frame of a
multi-frame object."""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut

from kahu.errors import InvalidInput

SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"


class CannotRender(InvalidInput):
    """The instance has no pixel data Kahu can decode."""


def _pixels(ds: Dataset) -> NDArray[np.generic]:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise CannotRender("the instance has no pixel data")
    try:
        return ds.pixel_array
    except Exception as exc:  # missing decoder plugin, corrupt stream
        syntax = ds.file_meta.get("TransferSyntaxUID", "unknown")
        raise CannotRender(f"cannot decode pixel data ({syntax}): {exc}") from exc


def frame_count(ds: Dataset) -> int:
    return int(ds.get("NumberOfFrames") or 1)


def _frame(ds: Dataset, frame: int) -> NDArray[np.generic]:
    pixels = _pixels(ds)
    frames = frame_count(ds)
    if frames > 1:
        if not 1 <= frame <= frames:
            raise InvalidInput(f"frame {frame} out of range 1-{frames}")
        pixels = pixels[frame - 1]
    elif frame != 1:
        raise InvalidInput(f"frame {frame} out of range 1-1")
    return pixels


def representative_frame(ds: Dataset) -> int:
    """The frame a thumbnail shows: the middle one, or for a segmentation the frame with the
    most segmented pixels (its middle frame is often empty)."""
    frames = frame_count(ds)
    if frames == 1:
        return 1
    if ds.get("SOPClassUID") == SEGMENTATION:
        pixels = _pixels(ds)
        filled = np.count_nonzero(pixels.reshape(frames, -1), axis=1)
        return int(np.argmax(filled)) + 1
    return frames // 2 + 1


def _colour(pixels: NDArray[np.generic]) -> NDArray[np.uint8]:
    rgb = pixels[..., :3]
    if rgb.dtype == np.uint8:
        return np.asarray(rgb, dtype=np.uint8)
    top = float(rgb.max()) or 1.0
    return (rgb.astype(np.float64) / top * 255).astype(np.uint8)


def to_uint8(
    ds: Dataset, pixels: NDArray[np.generic], window: tuple[float, float] | None = None
) -> NDArray[np.uint8]:
    """Colour as RGB (a palette through its LUT); grayscale through the modality LUT, then
    the given window, the stored VOI, or the full range."""
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        return _colour(pixels)
    values = apply_modality_lut(pixels, ds).astype(np.float64)
    if window is not None:
        center, width = window
        low, high = center - width / 2, center + width / 2
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        values = apply_voi_lut(values, ds).astype(np.float64)
        low, high = float(values.min()), float(values.max())
    else:
        low, high = float(values.min()), float(values.max())
    span = (high - low) or 1.0
    scaled = np.clip((np.nan_to_num(values) - low) / span, 0.0, 1.0) * 255.0
    out = scaled.astype(np.uint8)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1":
        out = 255 - out
    return out


def render(
    ds: Dataset,
    *,
    frame: int = 1,
    media_type: str = "image/png",
    window: tuple[float, float] | None = None,
    viewport: tuple[int, int] | None = None,
    quality: int = 90,
) -> bytes:
    """Encode one frame of ``ds`` as PNG or JPEG, fitted into ``viewport`` if given."""
    pixels = _frame(ds, frame)
    try:
        image = Image.fromarray(to_uint8(ds, pixels, window))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        # a LUT or an attribute the pixels need is missing or malformed
        raise CannotRender(f"cannot render the pixel data: {exc}") from exc
    if viewport is not None:
        image.thumbnail(viewport)
    out = io.BytesIO()
    if media_type == "image/jpeg":
        image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode).save(
            out, format="JPEG", quality=quality
        )
    else:
        image.save(out, format="PNG")
    return out.getvalue()
