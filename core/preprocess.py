"""A faster copy of the saved image processor, for training and serving: the same PIL resize and centre crop, then
rescale and normalise as one multiply-add.

The Hugging Face processors resize a uint8 image with PIL, crop it in numpy, then rescale and normalise in separate
float passes (and, without torchvision, one image at a time). ``FastProcessor`` resizes with the same filter only the
rows the centre crop keeps, crops a view, and turns the batch of uint8 crops into the normalised float32 tensor with one
multiply and one in-place add, written straight into a C-contiguous (N, 3, H, W) array on a 64-byte boundary (the layout
and alignment torch gives its own tensors; on a 2-core CPU ResNet-50's forward measured ~2% faster on it than on numpy's
default alignment, in one A/B run, about the size of that machine's run-to-run spread). ``fast_processor`` returns one
only for the processors it reproduces (ViT, ConvNeXt/ResNet, EfficientNet with their saved settings); for anything else
it returns None and callers use the processor itself (``pixel_values`` does either).

Training and serving share this file; it ships beside the handler in ``model.tar.gz`` (as ``code/core/preprocess.py``),
so it needs only numpy and PIL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

REPRODUCED = ("ViTImageProcessor", "ConvNextImageProcessor", "EfficientNetImageProcessor")


@dataclass(frozen=True)
class FastProcessor:
    """The processor's resize, crop, rescale and normalise: ``resize``, a crop view, ``pixels * scale + shift``."""

    square: tuple[int, int] | None  # resize to (height, width), or ...
    shortest_edge: int | None  # ... resize the shorter side to this, keeping the aspect ratio
    crop: tuple[int, int] | None  # (height, width) of the centre crop after the resize, if any
    resample: int
    scale: np.ndarray  # per channel, shape (3, 1, 1)
    shift: np.ndarray

    def plan(self, width: int, height: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
        """The processor's resize target (width, height) and the crop box in it, for an image of this size."""
        resized = self.square or shortest_edge_size(height, width, self.shortest_edge or 0)
        crop = self.crop or resized
        top, left = (resized[0] - crop[0]) // 2, (resized[1] - crop[1]) // 2
        if top < 0 or left < 0:
            raise ValueError("crop larger than the resized image")  # the processor pads then; not reproduced
        return (resized[1], resized[0]), (left, top, left + crop[1], top + crop[0])

    def __call__(self, images: list[Image.Image]) -> np.ndarray:
        """Decoded RGB images to the float32 batch the model takes, (N, 3, H, W)."""
        batch = np.stack([self.cropped(image) for image in images]).transpose(0, 3, 1, 2)
        pixels = aligned_empty(batch.shape)
        np.multiply(batch, self.scale, out=pixels, dtype=np.float32)
        pixels += self.shift
        return pixels

    def cropped(self, image: Image.Image) -> np.ndarray:
        """One image resized and centre-cropped, (H, W, 3) uint8, resizing only the rows the crop keeps: PIL
        computes a box's coefficients as it does the whole image's, shifted, so the rows match its own to within one
        grey level (an error of the last pass; a box across the columns would carry one into the vertical pass and
        double it), and exactly for nearest-neighbour."""
        size, (left, top, right, bottom) = self.plan(*image.size)
        if image.size == size:
            return np.asarray(image)[top:bottom, left:right]
        step = image.height / size[1]
        box = (0, top * step, image.width, min(image.height, bottom * step))  # never an ulp past the last row
        return np.asarray(image.resize((size[0], bottom - top), self.resample, box=box))[:, left:right]

    def shorter_side(self) -> int:
        """The shorter side of what a square image is resized to: finer detail than this never reaches the model."""
        (width, height), _ = self.plan(1024, 1024)
        return min(width, height)


def pixel_values(images: list[Image.Image], processor: Any, fast: FastProcessor | None) -> np.ndarray:
    """The saved processor's output for decoded RGB images, (N, 3, H, W) float32: from its fast copy where that
    reproduces it, else from the processor itself."""
    if fast is not None:
        try:
            return fast(images)
        except ValueError:  # a crop larger than the resized image, which the processor pads
            pass
    return np.asarray(processor(images=images, return_tensors="np")["pixel_values"], dtype=np.float32)


def aligned_empty(shape: tuple[int, ...], alignment: int = 64) -> np.ndarray:
    """An uninitialised C-contiguous float32 array whose data starts on an ``alignment``-byte boundary."""
    size = math.prod(shape) * 4
    buffer = np.empty(size + alignment, dtype=np.uint8)
    start = -buffer.ctypes.data % alignment
    return buffer[start:start + size].view(np.float32).reshape(shape)


def shortest_edge_size(height: int, width: int, edge: int) -> tuple[int, int]:
    """(height, width) with the shorter side at ``edge`` and the other truncated, as transformers computes it."""
    if width <= height:
        return int(edge * height / width), edge
    return edge, int(edge * width / height)


def fast_processor(processor: Any) -> FastProcessor | None:
    """The fast copy of ``processor``, or None where it would not give the processor's output."""
    name = type(processor).__name__.removesuffix("Pil").removesuffix("Fast")
    if name not in REPRODUCED or not getattr(processor, "do_resize", False) or getattr(processor, "do_pad", False):
        return None
    try:
        square, edge, crop = geometry(name, processor)
        scale, shift = affine(name, processor)
        resample = getattr(processor, "resample", None)
        resample = Image.Resampling.BILINEAR if resample is None else int(resample)  # NEAREST is 0
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if square is None and edge is None:
        return None
    return FastProcessor(square, edge, crop, resample, scale, shift)


def geometry(name: str, processor: Any) -> tuple[tuple[int, int] | None, int | None, tuple[int, int] | None]:
    """(square size, shortest edge, centre crop) of the processor's resize and crop."""
    size = {key: value for key, value in dict(processor.size).items() if value}
    crop = None
    if getattr(processor, "do_center_crop", False):
        crop = (int(processor.crop_size["height"]), int(processor.crop_size["width"]))
    if set(size) == {"height", "width"}:
        return (int(size["height"]), int(size["width"])), None, crop
    if set(size) != {"shortest_edge"}:
        return None, None, None
    edge = int(size["shortest_edge"])
    if name != "ConvNextImageProcessor":
        return None, edge, crop
    if crop is not None:
        raise ValueError("ConvNeXt's crop_pct and a centre crop together")
    if edge >= 384:  # ConvNeXt resizes straight to a square there
        return (edge, edge), None, None
    ratio = float(processor.crop_pct)
    if not 0 < ratio <= 1:
        raise ValueError("crop_pct out of range")
    return None, int(edge / ratio), (edge, edge)


def affine(name: str, processor: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``scale`` and ``shift`` with rescale, offset, normalise (and EfficientNet's top) folded in."""
    scale, shift = np.ones(3), np.zeros(3)
    if getattr(processor, "do_rescale", False):
        scale = scale * float(processor.rescale_factor)
        if name == "EfficientNetImageProcessor" and getattr(processor, "rescale_offset", False):
            shift = shift - 1
    if getattr(processor, "do_normalize", False):
        mean, std = channel_values(processor.image_mean), channel_values(processor.image_std)
        scale, shift = scale / std, (shift - mean) / std
        if name == "EfficientNetImageProcessor" and getattr(processor, "include_top", False):
            scale, shift = scale / std, shift / std
    if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(shift))):
        raise ValueError("non-finite normalisation")
    return scale.astype(np.float32).reshape(3, 1, 1), shift.astype(np.float32).reshape(3, 1, 1)


def channel_values(value: Any) -> np.ndarray:
    values = np.broadcast_to(np.asarray(value, dtype=np.float64), (3,)).copy()
    if not all(math.isfinite(v) for v in values):
        raise ValueError("non-finite mean or std")
    return values
