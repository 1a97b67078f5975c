"""MNIST-style preprocessing of a drawn or uploaded digit, step by step.

MNIST's digits were size-normalised to fit a 20×20 box (keeping the aspect ratio,
anti-aliased) and then centred by their centre of mass in a 28×28 frame, white ink on
black. :func:`preprocess` does the same to any picture and keeps every intermediate
image so a page can show the steps. :func:`load_image` opens untrusted bytes safely:
PNG or JPEG recognised by content, a pixel limit checked before decoding, Pillow's
decompression-bomb warning turned into an error, truncated files refused.

Two steps go further than MNIST's recipe, for drawings: a stroke far thinner or thicker
than MNIST's pens is brought into their range (core.strokes, at a fixed working size),
and the centre of mass is placed to a fraction of a pixel (MNIST rounded it to whole
pixels; half a pixel off can change a model's reading). A small drawing gets a hint.

Pure NumPy + Pillow (+ SciPy for the strokes); no TensorFlow, no streamlit.
"""
from __future__ import annotations

import io
import logging
import math
import struct
import warnings
from dataclasses import dataclass, field

import numpy as np

from core.errors import LayerLabError
from core.strokes import BLOB_WIDTH, MNIST_RANGE, match_width, stroke_width

log = logging.getLogger(__name__)

FRAME = 28                 # MNIST frame side
BOX = 20                   # the digit's longer side inside the frame
MAX_FILE_MB = 5                        # = server.maxUploadSize in .streamlit/config.toml
MAX_FILE_BYTES = MAX_FILE_MB * 2**20   # (Streamlit's MB are MiB); uploaders state it
MAX_IMAGE_PIXELS = 16_000_000          # about 4000×4000; refused before decoding
WORK_SIDE = 1024                       # larger pictures are reduced to this first
MIN_CONTRAST = 0.12                    # ink must differ this much from the background
STEP_SIDE = 280                        # step thumbnails are at most this big
WORK_SCALE = 4                         # working px per frame px while strokes are set
SMALL_EXTENT = 0.4                     # ink spanning less of the picture gets a hint

_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"PK\x03\x04", "ZIP"),
)


class ImageRefused(LayerLabError):
    """A file that is not a usable PNG or JPEG image."""


class EmptyDrawing(LayerLabError):
    """Nothing (or almost nothing) to read: the page shows a friendly hint instead."""


@dataclass(frozen=True)
class Step:
    """One preprocessing stage: a title, a small uint8 image and a one-line note."""

    title: str
    image: np.ndarray
    note: str = ""


@dataclass
class Preprocessed:
    """The 28×28 uint8 digit (white on black) plus the steps that made it."""

    digit: np.ndarray
    steps: list[Step] = field(default_factory=list)
    inverted: bool = False
    bbox: tuple[int, int, int, int] = (0, 0, 0, 0)   # y0, x0, y1, x1 in the working image
    center_of_mass: tuple[float, float] = (0.0, 0.0)  # (row, col) in the 28×28 frame
    stroke: tuple[float, float] = (0.0, 0.0)          # stroke width before/after, frame px
    hint: str | None = None          # a sentence for the page, e.g. "draw it larger"


# -- opening files -----------------------------------------------------------------------
def sniff_format(data: bytes) -> str | None:
    """The format named by the file's first bytes ("PNG", "JPEG", "GIF", …) or None."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic) or (magic.startswith(b"<") and
                                      data[:256].lstrip().startswith(magic)):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def load_image(data: bytes, name: str = "The file") -> np.ndarray:
    """Untrusted PNG/JPEG bytes -> grayscale float32 array in [0, 1] (at most WORK_SIDE).

    Raises :class:`ImageRefused` with a sentence for anything else: another format (by
    content, whatever the file name says), too many bytes or pixels, a damaged file.
    """
    from PIL import Image, ImageOps  # noqa: PLC0415 - keep Pillow off light imports

    if not data:
        raise ImageRefused(f"{name} is empty. Upload a PNG or JPEG picture of a digit.")
    if len(data) > MAX_FILE_BYTES:
        size = math.ceil(len(data) / 2**20 * 10) / 10      # 5 MB + 1 byte reads 5.1 MB
        raise ImageRefused(f"{name} is {size:.1f} MB; pictures are at most "
                           f"{MAX_FILE_MB} MB. Crop it or save it smaller.")
    kind = sniff_format(data)
    if kind not in ("PNG", "JPEG"):
        what = f"a {kind} file" if kind else "not an image Layer Lab can read"
        raise ImageRefused(f"{name} is {what}, whatever its name says. Only PNG and JPEG "
                           f"pictures are accepted: save it as PNG and upload it again.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[kind])
            w, h = img.size
            if w < 1 or h < 1:
                raise ImageRefused(f"{name} has no pixels ({w}×{h}).")
            if w * h > MAX_IMAGE_PIXELS:
                raise ImageRefused(
                    f"{name} says it is {w:,}×{h:,} pixels; the limit is "
                    f"{MAX_IMAGE_PIXELS / 1e6:.0f} megapixels. Scale it down and try again.")
            if kind == "JPEG":
                img.draft("L", (WORK_SIDE, WORK_SIDE))   # decode JPEGs at a reduced size
            img.load()
            img = ImageOps.exif_transpose(img)
            gray = _pil_to_gray(img)
    except ImageRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRefused(f"{name} unpacks into far too many pixels (a decompression "
                           f"bomb). Upload an ordinary picture of a digit.") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError,
            TypeError, MemoryError, struct.error) as exc:
        if "truncated" in str(exc).lower() or isinstance(exc, EOFError):
            raise ImageRefused(f"{name} is cut off before the end (a truncated {kind}). "
                               f"Save the picture again and upload the whole file.") from None
        log.info("image %r could not be decoded: %r", name, exc)     # kept server-side
        raise ImageRefused(f"{name} looks like a {kind} but could not be decoded; it is "
                           f"damaged. Save the picture again and upload it.") from None
    return gray


def _pil_to_gray(img) -> np.ndarray:
    """Any Pillow mode -> float32 gray in [0, 1], reduced to at most WORK_SIDE."""
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if mode == "F":
            top = max(float(arr.max(initial=0)), 1.0)
        gray = np.clip(arr / top, 0.0, 1.0).astype(np.float32)
    elif mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        gray = to_gray(np.asarray(img.convert("RGBA")))
    elif mode == "L":
        gray = np.asarray(img, dtype=np.float32) / 255.0
    else:                                    # RGB, CMYK, P, 1, YCbCr, LAB, HSV …
        gray = np.asarray(img.convert("RGB").convert("L"), dtype=np.float32) / 255.0
    return _reduce(gray)


def _reduce(gray: np.ndarray, side: int = WORK_SIDE) -> np.ndarray:
    """Area-average a gray image so that its longer side is at most ``side``."""
    h, w = gray.shape
    if max(h, w) <= side:
        return gray
    from PIL import Image  # noqa: PLC0415

    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = Image.fromarray(gray.astype(np.float32), mode="F").resize(size, Image.Resampling.BOX)
    return np.asarray(out, dtype=np.float32)


def to_gray(image: np.ndarray) -> np.ndarray:
    """An array image (H×W, H×W×1, H×W×3 or H×W×4; uint8, uint16, bool or float) ->
    float32 gray in [0, 1]. Transparent pixels become the colour that contrasts with the
    opaque ones, so both dark-on-transparent and light-on-transparent drawings work."""
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.float32)
    elif np.issubdtype(arr.dtype, np.integer):
        top = 65535.0 if arr.dtype.itemsize > 1 and arr.max(initial=0) > 255 else 255.0
        arr = arr.astype(np.float32) / top
    else:
        arr = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        if arr.max(initial=0) > 1.0:
            arr = arr / 255.0
    arr = np.clip(arr, 0.0, 1.0)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return _reduce(arr)
    if arr.ndim != 3 or arr.shape[2] not in (2, 3, 4):
        raise ImageRefused(f"An image must be H×W, H×W×3 or H×W×4; got shape {arr.shape}.")
    if arr.shape[2] == 2:                               # gray + alpha
        lum, alpha = arr[..., 0], arr[..., 1]
    else:
        rgb = arr[..., :3]
        lum = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        alpha = arr[..., 3] if arr.shape[2] == 4 else None
    if alpha is not None and alpha.min(initial=1.0) < 0.99:
        weight = float(alpha.sum())
        if weight <= 1e-6:                              # fully transparent: nothing drawn
            return _reduce(np.zeros(lum.shape, np.float32))
        backdrop = 1.0 if _stroke_luminance(lum, alpha) < 0.5 else 0.0
        lum = lum * alpha + backdrop * (1.0 - alpha)
    return _reduce(lum.astype(np.float32))


def _stroke_luminance(lum: np.ndarray, alpha: np.ndarray) -> float:
    """The brightness of the middle of the opaque strokes: their edges blend into the
    transparent paper and say little about the ink's colour, so the opaque area is
    peeled pixel by pixel until only its core (about a tenth of it) is left."""
    solid = alpha > 0.5
    if not solid.any():
        solid = alpha > 0
    core, floor = solid, max(4, int(0.1 * solid.sum()))
    for _ in range(64):
        inner = core.copy()
        inner[1:] &= core[:-1]
        inner[:-1] &= core[1:]
        inner[:, 1:] &= core[:, :-1]
        inner[:, :-1] &= core[:, 1:]
        if inner.sum() < floor:
            break
        core = inner
    return float(np.median(lum[core]))


# -- the MNIST recipe --------------------------------------------------------------------
def _thumb(gray: np.ndarray) -> np.ndarray:
    """A uint8 copy of a [0, 1] image no larger than STEP_SIDE, for the step strip."""
    img = np.clip(gray, 0.0, 1.0)
    h, w = img.shape
    if max(h, w) > STEP_SIDE:
        img = _reduce(img, STEP_SIDE)
    return np.round(img * 255).astype(np.uint8)


def _resize(patch: np.ndarray, size: tuple[int, int],
            box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Anti-aliased resize of a float image (or of its ``box``, fractional pixel
    coordinates left, top, right, bottom) to (width, height)."""
    from PIL import Image  # noqa: PLC0415

    h, w = patch.shape
    left, top, right, bottom = box or (0.0, 0.0, w, h)
    shrinking = size[0] <= right - left and size[1] <= bottom - top
    resample = Image.Resampling.LANCZOS if shrinking else Image.Resampling.BILINEAR
    out = Image.fromarray(patch.astype(np.float32), mode="F").resize(size, resample, box)
    return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)


def center_of_mass(image: np.ndarray) -> tuple[float, float]:
    """(row, col) of the intensity-weighted centre; the geometric centre when empty."""
    img = np.asarray(image, dtype=np.float64)
    total = img.sum()
    if total <= 0:
        return ((img.shape[0] - 1) / 2, (img.shape[1] - 1) / 2)
    rows = np.arange(img.shape[0])
    cols = np.arange(img.shape[1])
    return (float((img.sum(axis=1) * rows).sum() / total),
            float((img.sum(axis=0) * cols).sum() / total))


def ink_box(ink: np.ndarray, level: float = 0.2) -> tuple[int, int, int, int] | None:
    """(y0, x0, y1, x1) around the pixels brighter than ``level``; None when there are none.

    >>> ink = np.zeros((5, 6)); ink[1:3, 2:5] = 1.0
    >>> ink_box(ink)
    (1, 2, 3, 5)
    >>> ink_box(np.zeros((3, 3))) is None
    True
    """
    ys, xs = np.nonzero(np.asarray(ink) > level)
    if ys.size == 0:
        return None
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def small_drawing_hint(extent: float) -> str | None:
    """A "draw it larger" sentence when the ink spans less than SMALL_EXTENT of the
    picture's longer side (its strokes are then thick for its size), else None.

    >>> small_drawing_hint(0.8) is None
    True
    >>> small_drawing_hint(0.25)[:40]
    'The digit spans only 25% of the picture,'
    """
    if extent >= SMALL_EXTENT:
        return None
    return (f"The digit spans only {extent:.0%} of the picture, so its strokes come out "
            f"thick once it is scaled up: draw it larger, filling most of the box (or crop "
            f"a photo closer to the digit).")


def _stroke_note(before: float, after: float, kept: bool) -> str:
    """The stroke step's note: what the width was and what became of it.

    >>> _stroke_note(0.7, 2.0, kept=False)
    "0.7 px → 2.0 px (MNIST's are about 2.0–2.9 px)"
    >>> _stroke_note(2.4, 2.4, kept=True)
    '2.4 px, MNIST-like: kept'
    """
    if not kept:
        return (f"{before:.1f} px → {after:.1f} px (MNIST's are about "
                f"{MNIST_RANGE[0]}–{MNIST_RANGE[1]} px)")
    if before > BLOB_WIDTH:
        return f"{before:.1f} px, more a blob than strokes: kept"
    return f"{before:.1f} px, MNIST-like: kept"


def _ink_on_black(gray: np.ndarray) -> tuple[np.ndarray, bool]:
    """Ink in [0, 1] on black (light backgrounds inverted) and whether it was inverted."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    inverted = background > 0.5
    if inverted:
        gray, background = 1.0 - gray, 1.0 - background
    contrast = float(gray.max(initial=0.0)) - background
    if contrast < MIN_CONTRAST:
        raise EmptyDrawing("Draw a digit: the picture is empty — there is no ink that "
                           "stands out from the background.")
    ink = np.clip((gray - background) / contrast, 0.0, 1.0)
    return np.clip((ink - 0.1) / 0.9, 0.0, 1.0), inverted   # drop paper texture and noise


def _working(crop: np.ndarray) -> np.ndarray:
    """The crop scaled so that its longer side is WORK_SCALE × BOX px (strokes are
    measured and redrawn at that resolution, whatever the picture's size), its ink
    peaking at 1, with a margin for strokes that grow."""
    ch, cw = crop.shape
    scale = WORK_SCALE * BOX / max(ch, cw)
    work = _resize(crop, (max(1, round(cw * scale)), max(1, round(ch * scale))))
    if work.max(initial=0) > 0:
        work = work / work.max()
    return np.pad(work, 2 * WORK_SCALE)


def _centred(work: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The ink ``box`` of ``work`` scaled to BOX px (longer side) and placed in the frame
    so that its centre of mass lands on (14, 14) within a few hundredths of a pixel: the
    frame is resampled from a fractional source box, not shifted by whole pixels."""
    y0, x0, y1, x1 = box
    scale = BOX / max(y1 - y0, x1 - x0)                 # frame px per working px
    span = FRAME / scale                                # the frame's side in working px
    pad = int(np.ceil(span))
    big = np.pad(work, pad)
    # Pixel i covers [i, i + 1): frame pixel 14's middle is at working position
    # top + 14.5 / scale, and the working centre of mass (cy, cx) at cy + 0.5 + pad.
    cy, cx = center_of_mass(work)
    offset = pad + 0.5 - (FRAME / 2 + 0.5) / scale
    top, left = cy + offset, cx + offset
    frame = np.zeros((FRAME, FRAME), np.float32)
    for _ in range(4):                                  # resampling moves the mass a little
        # Keep the whole digit inside the frame (it is BOX px, the frame FRAME px).
        top = float(np.clip(top, y1 + pad - span, y0 + pad))
        left = float(np.clip(left, x1 + pad - span, x0 + pad))
        frame = _resize(big, (FRAME, FRAME), (left, top, left + span, top + span))
        fy, fx = center_of_mass(frame)
        if max(abs(fy - FRAME / 2), abs(fx - FRAME / 2)) < 0.01:
            break
        top, left = top + (fy - FRAME / 2) / scale, left + (fx - FRAME / 2) / scale
    peak = max(float(frame.max(initial=0)), 1e-6)
    return np.round(frame / peak * 255).astype(np.uint8)


def preprocess(image: np.ndarray | bytes, min_extent: float = 0.03,
               name: str = "The file") -> Preprocessed:
    """Any picture of a digit -> an MNIST-style 28×28 uint8 digit, keeping every step.

    ``image`` is PNG/JPEG bytes or an array (the canvas' RGBA, a gray array, …).
    ``min_extent`` is the smallest ink size, as a fraction of the picture's longer side,
    still worth reading. Raises :class:`EmptyDrawing` (a friendly hint) when there is no
    ink or only a dot, :class:`ImageRefused` for unusable files. A small drawing is read
    but carries a ``hint`` to draw it larger.
    """
    gray = load_image(image, name) if isinstance(image, (bytes, bytearray)) \
        else to_gray(image)
    h, w = gray.shape
    steps = [Step("Grayscale", _thumb(gray), f"{w}×{h} px")]
    ink, inverted = _ink_on_black(gray)
    steps.append(Step("Inverted: white ink on black" if inverted else "Ink on black",
                      _thumb(ink), "light background, so inverted" if inverted
                      else "dark background, kept"))

    bbox = ink_box(ink)
    if bbox is None:
        raise EmptyDrawing("Draw a digit: the picture holds no clear strokes.")
    y0, x0, y1, x1 = bbox
    extent = max(y1 - y0, x1 - x0) / max(h, w)
    if extent < min_extent:
        raise EmptyDrawing("Draw a digit: that is only a dot. Draw it large, filling most "
                           "of the box.")
    steps.append(Step("Cropped to the ink", _thumb(ink[y0:y1, x0:x1]),
                      f"{x1 - x0}×{y1 - y0} px"))

    working = _working(ink[y0:y1, x0:x1])
    work, before = match_width(working, WORK_SCALE, WORK_SCALE * BOX)
    box = ink_box(work) or (0, 0) + work.shape
    wy0, wx0, wy1, wx1 = box
    kept = work is working
    after = before if kept else stroke_width(work) * BOX / max(wy1 - wy0, wx1 - wx0)
    steps.append(Step("Stroke width like MNIST's", _thumb(work[wy0:wy1, wx0:wx1]),
                      _stroke_note(before, after, kept)))

    scale = BOX / max(wy1 - wy0, wx1 - wx0)
    size = (max(1, min(BOX, round((wx1 - wx0) * scale))),
            max(1, min(BOX, round((wy1 - wy0) * scale))))
    steps.append(Step(f"Scaled to {BOX} px", _thumb(_resize(work[wy0:wy1, wx0:wx1], size)),
                      f"{size[0]}×{size[1]} px, aspect ratio kept"))

    digit = _centred(work, box)
    com = center_of_mass(digit)
    steps.append(Step("Centred in 28×28", digit.copy(),
                      f"centre of mass at ({com[1]:.2f}, {com[0]:.2f})"))
    return Preprocessed(digit, steps, inverted, bbox, com, (before, after),
                        small_drawing_hint(extent))


def as_digit(image: np.ndarray) -> np.ndarray:
    """Check a ready 28×28 digit (e.g. from another page) and return it as uint8."""
    arr = np.asarray(image)
    if arr.shape == (FRAME, FRAME, 1):
        arr = arr[..., 0]
    if arr.shape != (FRAME, FRAME):
        raise ImageRefused(f"A ready digit must be a 28×28 array; got shape {arr.shape}.")
    if arr.dtype != np.uint8:
        arr = np.round(to_gray(arr) * 255).astype(np.uint8)
    return arr
