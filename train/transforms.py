"""Training augmentation for bin images, applied in front of the model's own image processor.

Evaluation and serving use the saved image processor alone (resize, crop and normalise as the checkpoint defines;
both through its fast copy in ``core.preprocess`` where that reproduces it); training applies a mild, count-preserving
augmentation first: a random crop that keeps most of the bin (items near the edges must stay in view), horizontal
flips, small rotations and colour jitter, written with PIL only. The crop is shrunk to a quarter above the size the
processor resizes to before the rest, which costs far fewer pixels than doing it at full size.

Augmentation is a pure function of (seed, epoch, image id): a resumed run, a run with another number of DataLoader
workers, with persistent workers or without, and a distributed run all see exactly the same images. The epoch travels
with each index: the training sampler (``EpochIndices``, in the main process, told the epoch by ``EpochSync``) hands
out ``epoch * len + index`` and the dataset (``EpochTagged``, in the worker) splits it again. Nothing depends on
worker processes starting afresh each epoch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from PIL import Image, ImageEnhance, ImageFilter
from transformers import TrainerCallback

from core import preprocess

# Rotation fills the corners with the ImageNet mean colour, which normalises to about zero.
FILL = (124, 116, 104)
# Augment at a quarter above the size the processor resizes to, so rotation's interpolation blurs below the model's
# resolution.
WORK_MARGIN = 1.25


@dataclass(frozen=True)
class Augmentation:
    crop_scale: float = 0.8
    rotation_degrees: float = 10.0
    color_jitter: float = 0.2
    hflip: bool = True
    vflip: bool = False  # count-preserving too, but a bin is never seen upside down
    quarter_turns: bool = False  # 0, 90, 180 or 270 degrees before the small rotation
    blur: float = 0.0  # largest Gaussian blur radius (px, after the shrink), for half of the images
    grayscale: float = 0.0  # share of images whose colour is dropped

    def __call__(self, image: Image.Image, rng: random.Random, work_side: int | None = None) -> Image.Image:
        """A random, count-preserving variant of ``image``. ``work_side``: after the crop, shrink the image (never
        enlarge it) so its shorter side is this before the per-pixel work: the processor resizes to near that size
        anyway, and rotating and jittering a bin at full size took most of a CPU training step."""
        width, height = image.size
        area = rng.uniform(self.crop_scale, 1.0) * width * height
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3))) * width / height
        crop_w, crop_h = min(width, round(math.sqrt(area * aspect))), min(height, round(math.sqrt(area / aspect)))
        left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
        image = shrunk(image.crop((left, top, left + crop_w, top + crop_h)), work_side)
        if self.hflip and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.vflip and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        if self.quarter_turns:
            turn = rng.choice((None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270))
            image = image if turn is None else image.transpose(turn)
        if self.rotation_degrees:
            angle = rng.uniform(-self.rotation_degrees, self.rotation_degrees)
            image = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=FILL)
        for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            if self.color_jitter:
                image = enhance(image).enhance(rng.uniform(1 - self.color_jitter, 1 + self.color_jitter))
        if self.blur and rng.random() < 0.5:
            image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, self.blur)))
        if self.grayscale and rng.random() < self.grayscale:
            image = image.convert("L").convert("RGB")
        return image


def shrunk(image: Image.Image, side: int | None) -> Image.Image:
    """``image`` resized so that its shorter side is ``side``, when that makes it smaller."""
    scale = side / min(image.size) if side else 1.0
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


class BinTransform:
    """``Dataset.set_transform`` callable: images -> ``pixel_values`` through the processor (its fast copy where that
    reproduces it, as in serving), labels -> ``labels``."""

    def __init__(self, processor, augmentation: Augmentation | None = None, seed: int = 0) -> None:
        self.processor = processor
        self.fast = preprocess.fast_processor(processor)
        self.work_side = None  # augment at full size, unless the processor's size is known
        if self.fast is not None:
            self.work_side = round(WORK_MARGIN * self.fast.shorter_side())
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0

    def __call__(self, batch: dict, epoch: int | None = None) -> dict:
        """Transform a batch of rows; augmentation uses ``epoch`` (default: the epoch last set by ``EpochSync``)."""
        epoch = self.epoch if epoch is None else epoch
        images = [image.convert("RGB") for image in batch["image"]]
        if self.augmentation is not None:
            images = [self.augmentation(image, random.Random(f"{self.seed}:{epoch}:{image_id}"), self.work_side)
                      for image, image_id in zip(images, batch["image_id"])]
        pixel_values = torch.from_numpy(preprocess.pixel_values(images, self.processor, self.fast))
        return {"pixel_values": pixel_values, "labels": torch.as_tensor(batch["label"])}


class EpochTagged(torch.utils.data.Dataset):
    """The training split addressed by ``epoch * len + index``: the worker reads the epoch from the index it is handed,
    so augmentation follows the epoch even in workers started once for the whole run (persistent workers)."""

    def __init__(self, dataset, transform: BinTransform) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int) -> dict:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[int]) -> list[dict]:
        """A batch of items, in the order asked (the DataLoader asks for one batch at a time, and EpochIndices hands
        out one epoch at a time): one processor call per epoch in it."""
        placed = [divmod(int(key), len(self.dataset)) for key in keys]
        items: list[dict] = [{}] * len(keys)
        for epoch in dict.fromkeys(epoch for epoch, _ in placed):
            positions = [i for i, (e, _) in enumerate(placed) if e == epoch]
            out = self.transform(self.dataset[[placed[i][1] for i in positions]], epoch)
            for i, pixels, label in zip(positions, out["pixel_values"], out["labels"]):
                items[i] = {"pixel_values": pixels, "labels": label}
        return items


class EpochIndices(torch.utils.data.Sampler):
    """The training order, each index offset by ``epoch * size`` for ``EpochTagged``.

    The order is ``base``'s (the weighted sampler) or else a shuffle seeded by (seed, epoch): both pure functions of
    the epoch, so a resumed run and every process of a distributed run draw the same order.
    """

    def __init__(self, size: int, epoch_of: Callable[[], int], seed: int = 0, base=None) -> None:
        self.size = size
        self.epoch_of = epoch_of
        self.seed = seed
        self.base = base

    def __len__(self) -> int:
        return len(self.base) if self.base is not None else self.size

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch_of()
        if self.base is not None:
            order = iter(self.base)
        else:
            order = iter(torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 1_000_003 +
                                                                                          epoch)).tolist())
        for index in order:
            yield epoch * self.size + int(index)


class EpochSync(TrainerCallback):
    """Tell epoch-seeded objects (the training transform, the weighted sampler) which epoch begins, before the
    epoch's DataLoader iterator and workers start."""

    def __init__(self, targets: list) -> None:
        self.targets = [target for target in targets if target is not None]

    def on_epoch_begin(self, args, state, control, **kwargs):
        for target in self.targets:
            target.epoch = int(state.epoch + 1e-6)


def collate(examples: list[dict], channels_last: bool = False) -> dict[str, torch.Tensor]:
    pixel_values = torch.stack([example["pixel_values"] for example in examples])
    if channels_last:
        pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
    return {"pixel_values": pixel_values, "labels": torch.stack([example["labels"] for example in examples])}
