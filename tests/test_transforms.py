"""Augmentation is a pure function of (seed, epoch, image id), whatever the DataLoader's worker settings."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image

from train.objectives import EpochWeightedSampler
from train.transforms import Augmentation, BinTransform, EpochIndices, EpochTagged, collate


class ToTensor:
    """A stand-in image processor: the image as a small float tensor, so the test sees every augmented pixel."""

    def __call__(self, images, return_tensors="pt"):
        arrays = [np.asarray(image.resize((16, 16)), dtype=np.float32) / 255 for image in images]
        return {"pixel_values": torch.as_tensor(np.stack(arrays)).permute(0, 3, 1, 2)}


class Clock:
    epoch = 0


def bins(n: int = 6) -> Dataset:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)) for _ in range(n)]
    return Dataset.from_dict({"image": images, "image_id": [f"{i:05d}" for i in range(n)], "label": list(range(n))})


def epochs(loader_options: dict, clock: Clock, loader_epochs: int = 2, base=None) -> list[torch.Tensor]:
    """The pixel batches of each epoch, the epoch set on ``clock`` before each one starts (as EpochSync does)."""
    dataset = bins()
    transform = BinTransform(ToTensor(), Augmentation(), seed=7)
    sampler = EpochIndices(len(dataset), lambda: clock.epoch, seed=7, base=base)
    loader = torch.utils.data.DataLoader(EpochTagged(dataset, transform), batch_size=4, sampler=sampler,
                                         collate_fn=collate, **loader_options)
    seen = []
    for epoch in range(loader_epochs):
        clock.epoch = epoch
        if base is not None:
            base.epoch = epoch
        seen.append(torch.cat([batch["pixel_values"] for batch in loader]))
    return seen


@pytest.mark.parametrize("options", [{"num_workers": 2, "persistent_workers": True},
                                     {"num_workers": 2, "persistent_workers": False}])
def test_workers_persistent_or_not_see_the_epoch_the_main_process_sees(options):
    reference = epochs({"num_workers": 0}, Clock())
    assert not torch.equal(reference[0], reference[1])  # a new epoch: new crops
    for expected, got in zip(reference, epochs(options, Clock())):
        assert torch.equal(expected, got)


def test_the_weighted_sampler_keeps_its_order_and_the_epoch_tags_it():
    weights = [1.0, 2.0, 3.0, 1.0, 1.0, 5.0]
    base = EpochWeightedSampler(weights, seed=3)
    clock = Clock()
    sampler = EpochIndices(len(weights), lambda: clock.epoch, base=base)
    for epoch in (0, 1):
        clock.epoch = base.epoch = epoch
        assert list(sampler) == [epoch * len(weights) + int(i) for i in base]
    persistent = epochs({"num_workers": 2, "persistent_workers": True}, Clock(), base=EpochWeightedSampler(weights, 3))
    single = epochs({"num_workers": 0}, Clock(), base=EpochWeightedSampler(weights, 3))
    assert all(torch.equal(a, b) for a, b in zip(persistent, single))


def test_an_epoch_replays_exactly_and_the_shuffle_depends_only_on_seed_and_epoch():
    clock = Clock()
    first, again = epochs({"num_workers": 0}, clock), epochs({"num_workers": 0}, Clock())
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    orders = [list(EpochIndices(10, lambda e=epoch: e, seed=1)) for epoch in (0, 1, 0)]
    assert orders[0] == orders[2] and orders[0] != [i - 10 for i in orders[1]]
    assert sorted(i % 10 for i in orders[1]) == list(range(10)) and min(orders[1]) == 10


def test_a_batch_spanning_two_epochs_comes_back_in_the_order_asked():
    dataset, transform = bins(), BinTransform(ToTensor(), Augmentation(), seed=7)
    tagged = EpochTagged(dataset, transform)
    keys = [len(dataset) + 2, 0, len(dataset) + 1, 3]  # (epoch 1, bin 2), (0, 0), (1, 1), (0, 3)
    got = tagged.__getitems__(keys)
    assert [int(item["labels"]) for item in got] == [2, 0, 1, 3]
    for key, item in zip(keys, got):
        assert torch.equal(item["pixel_values"], tagged[key]["pixel_values"])


def test_the_trainer_draws_through_the_epoch_tagged_sampler_with_persistent_workers(tiny_model_dir, tmp_path):
    from transformers import AutoModelForImageClassification, TrainingArguments

    from train.compat import CountingTrainer

    transform = BinTransform(ToTensor(), Augmentation(), seed=7)
    args = TrainingArguments(str(tmp_path), per_device_train_batch_size=4, dataloader_num_workers=2,
                             dataloader_persistent_workers=True, remove_unused_columns=False, report_to="none",
                             use_cpu=True)
    trainer = CountingTrainer(model=AutoModelForImageClassification.from_pretrained(tiny_model_dir), args=args,
                              train_dataset=EpochTagged(bins(), transform), data_collator=collate,
                              epoch_of=lambda: transform.epoch, seed=7)
    loader = trainer.get_train_dataloader()
    seen = []
    for epoch in (0, 1):
        transform.epoch = epoch  # what EpochSync does in the main process
        seen.append(torch.cat([batch["pixel_values"] for batch in loader]))
    assert all(torch.equal(a, b) for a, b in zip(seen, epochs({"num_workers": 0}, Clock())))


def test_augmentation_works_at_about_the_size_the_processor_resizes_to_and_never_enlarges():
    from transformers import ViTImageProcessor

    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (350, 470, 3), dtype=np.uint8))
    augmentation = Augmentation(crop_scale=1.0, rotation_degrees=0.0, color_jitter=0.0, hflip=False)
    width, height = augmentation(image, random.Random(0)).size  # the crop, at full size
    small = augmentation(image, random.Random(0), work_side=64).size
    assert min(small) == 64 and abs(small[0] / small[1] - width / height) < 0.02
    assert augmentation(image, random.Random(0), work_side=500).size == (width, height)

    transform = BinTransform(ViTImageProcessor(size={"height": 64, "width": 64}), Augmentation(), seed=3)
    assert transform.work_side == 80  # a quarter above the processor's 64
    batch = transform({"image": [image], "image_id": ["00001"], "label": [2]})
    assert batch["pixel_values"].shape == (1, 3, 64, 64) and batch["pixel_values"].dtype == torch.float32


def test_evaluation_pixels_come_from_the_fast_path_and_match_the_processor():
    from transformers import ConvNextImageProcessor

    processor = ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=0.875)
    images = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (90 + i, 120, 3), dtype=np.uint8))
              for i in range(3)]
    transform = BinTransform(processor)
    assert transform.fast is not None
    got = transform({"image": images, "image_id": ["1", "2", "3"], "label": [0, 1, 2]})["pixel_values"]
    expected = processor(images=images, return_tensors="np")["pixel_values"]
    assert np.abs(got.numpy() - expected).max() <= 0.02


def test_vertical_flips_and_quarter_turns_keep_every_pixel_and_are_off_by_default():
    image = Image.fromarray(np.random.default_rng(2).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    plain = Augmentation(crop_scale=1.0, rotation_degrees=0.0, color_jitter=0.0)
    turning = Augmentation(crop_scale=1.0, rotation_degrees=0.0, color_jitter=0.0, vflip=True, quarter_turns=True)
    turned_sideways = 0
    for seed in range(12):
        cropped, turned = plain(image, random.Random(seed)), turning(image, random.Random(seed))  # the same crop
        assert sorted(turned.getdata()) == sorted(cropped.getdata()), "flips and turns move pixels, never change them"
        turned_sideways += turned.size == cropped.size[::-1] != cropped.size
    assert turned_sideways > 0
    default = Augmentation()
    assert not default.vflip and not default.quarter_turns, "the recipes' draws stay as they were"


def test_blur_and_grayscale_change_colour_and_sharpness_only_and_are_off_by_default():
    image = Image.fromarray(np.random.default_rng(3).integers(0, 255, (30, 40, 3), dtype=np.uint8))
    plain = Augmentation(crop_scale=1.0, rotation_degrees=0.0, color_jitter=0.0)
    blurring = Augmentation(crop_scale=1.0, rotation_degrees=0.0, color_jitter=0.0, blur=2.0)
    greying = Augmentation(crop_scale=1.0, rotation_degrees=0.0, color_jitter=0.0, grayscale=0.5)
    blurred = greyed = 0
    for seed in range(16):
        cropped = np.asarray(plain(image, random.Random(seed))).astype(float)
        soft = np.asarray(blurring(image, random.Random(seed))).astype(float)
        grey = np.asarray(greying(image, random.Random(seed)))
        assert soft.shape == grey.shape == cropped.shape, "the same crop and flip: only pixel values change"
        # a blur smooths each colour channel: neighbouring pixels grow alike
        blurred += np.abs(np.diff(soft, axis=1)).mean() < 0.8 * np.abs(np.diff(cropped, axis=1)).mean()
        greyed += bool((grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all())
    assert 0 < blurred < 16 and 0 < greyed < 16
    default = Augmentation()
    assert default.blur == 0 and default.grayscale == 0, "the recipes' draws stay as they were"
