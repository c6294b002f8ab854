"""A typed placeholder picture for what has no image to render: a structured report, an RT
plan, a waveform, an encapsulated document, or pixels no installed decoder reads. It names the
modality and the SOP class, so a gallery shows what the series is instead of a broken image."""

from __future__ import annotations

import functools
import io
import textwrap

from PIL import Image, ImageDraw, ImageFont
from pydicom.uid import UID

BACKGROUND = (29, 39, 51)
INK = (214, 222, 230)
FAINT = (120, 136, 152)

#: SOP class UID prefixes of the waveform classes (PS3.4 Annex B: 1.2.840.10008.5.1.4.1.1.9.x)
_WAVEFORM = "1.2.840.10008.5.1.4.1.1.9."


def sop_class_name(sop_class_uid: str) -> str:
    """A short readable name: 'Comprehensive SR' for its UID, 'private class' for others."""
    if not sop_class_uid:
        return "unknown class"
    uid = UID(sop_class_uid)
    name = uid.name
    if name == sop_class_uid:  # not in the standard's registry
        return "private class" if uid.is_private else "unknown class"
    return name.removesuffix(" Storage")


def _kind(modality: str, sop_class_uid: str) -> str:
    if sop_class_uid.startswith(_WAVEFORM) or modality in ("ECG", "HD", "EPS", "RESP"):
        return "waveform"
    return "document"


def _icon(draw: ImageDraw.ImageDraw, kind: str, size: int) -> None:
    """A page with lines (documents, reports, plans) or a trace (waveforms), upper half."""
    unit = size / 128
    if kind == "waveform":
        base, amp = 34 * unit, 14 * unit
        shape = [0, 0, 0, -0.2, 0.2, 0, 0, -1.0, 1.0, -0.3, 0, 0, 0.15, 0, 0, 0]
        step = (size - 36 * unit) / (len(shape) - 1)
        points = [(18 * unit + i * step, base + v * amp) for i, v in enumerate(shape)]
        draw.line(points, fill=INK, width=max(1, round(2 * unit)))
        return
    left, top, right, bottom = 48 * unit, 12 * unit, 80 * unit, 52 * unit
    fold = 9 * unit
    outline = [
        (left, top),
        (right - fold, top),
        (right, top + fold),
        (right, bottom),
        (left, bottom),
        (left, top),
    ]
    draw.line(outline, fill=INK, width=max(1, round(2 * unit)))
    for row in range(3):
        y = top + (16 + row * 8) * unit
        draw.line(
            [(left + 6 * unit, y), (right - 6 * unit, y)], fill=FAINT, width=max(1, round(unit))
        )


@functools.lru_cache(maxsize=128)
def placeholder(
    modality: str,
    sop_class_uid: str,
    *,
    note: str = "",
    size: tuple[int, int] = (128, 128),
    media_type: str = "image/png",
) -> bytes:
    """A ``size`` picture naming ``modality`` and the SOP class (and ``note``, such as why an
    image could not be decoded), encoded as ``media_type`` (PNG or JPEG)."""
    width, height = size
    edge = min(width, height)
    image = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(image)
    icon = Image.new("RGB", (edge, edge), BACKGROUND)
    _icon(ImageDraw.Draw(icon), _kind(modality, sop_class_uid), edge)
    image.paste(icon, ((width - edge) // 2, 0))
    big, little = max(8, edge // 6), max(6, edge // 12)
    title = ImageFont.load_default(size=big)
    small = ImageFont.load_default(size=little)
    lines = [(modality or "?", title, INK, big)]
    lines += [(t, small, FAINT, little) for t in textwrap.wrap(sop_class_name(sop_class_uid), 20)]
    lines += [(t, small, FAINT, little) for t in textwrap.wrap(note, 20)]
    y = edge * 0.48 + (height - edge) / 2
    for text, font, fill, points in lines[:5]:
        draw.text((width / 2, y), text, font=font, fill=fill, anchor="ma")
        y += points * 1.2
    out = io.BytesIO()
    image.save(out, format="JPEG" if media_type == "image/jpeg" else "PNG")
    return out.getvalue()
