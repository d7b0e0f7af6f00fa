"""Load the dataset artifact and its label set — the one source of truth for the count classes.

Accepts a folder written by ``data.build`` (``load_from_disk``), a Hub dataset id (``load_dataset``), or, in a
SageMaker job, one ``load_from_disk`` folder per ``SM_CHANNEL_*``. Problems are raised as ``UserError`` with one line
the user can act on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from datasets import ClassLabel, Dataset, DatasetDict, load_dataset, load_from_disk

from core.cli import UserError
from train.args import DataArguments
from core.labels import counts_of

CHANNELS = {"train": "SM_CHANNEL_TRAIN", "validation": "SM_CHANNEL_VALIDATION", "test": "SM_CHANNEL_TEST"}


@dataclass(frozen=True)
class Splits:
    train: Dataset
    validation: Dataset
    test: Dataset | None
    names: list[str]

    @property
    def counts(self) -> list[int]:
        """Count value of each class: "3" -> 3, an overflow class "6+" -> 6."""
        return counts_of(self.names)


def load(args: DataArguments, seed: int) -> Splits:
    """The train/validation/test splits, checked to share one ClassLabel of counts."""
    splits = _read(args)
    if args.train_split not in splits:
        raise UserError(f"dataset has no {args.train_split!r} split (it has: {', '.join(splits) or 'none'})")
    train = splits[args.train_split]
    names = _names(train, args.train_split)
    if args.validation_split in splits:
        validation = splits[args.validation_split]
    else:
        held_out = train.train_test_split(test_size=args.validation_fraction, seed=seed, stratify_by_column="label")
        train, validation = held_out["train"], held_out["test"]
    test = splits.get(args.test_split)
    for name, split in ((args.validation_split, validation), (args.test_split, test)):
        if split is not None and _names(split, name) != names:
            raise UserError(f"the {name!r} split has classes {_names(split, name)}, train has {names}")
    if args.max_train_samples:
        train = train.select(range(min(args.max_train_samples, len(train))))
    if args.max_eval_samples:
        validation = validation.select(range(min(args.max_eval_samples, len(validation))))
        test = test.select(range(min(args.max_eval_samples, len(test)))) if test is not None else None
    if not len(train) or not len(validation):
        raise UserError("the train and validation splits must not be empty")
    return Splits(train, validation, test if test is not None and len(test) else None, names)


def _read(args: DataArguments) -> DatasetDict:
    if args.dataset is None:
        channels = {split: os.environ[var] for split, var in CHANNELS.items() if var in os.environ}
        if not channels:
            raise UserError("no --dataset given (and no SageMaker SM_CHANNEL_* folders)")
        return DatasetDict({split: _from_disk(path) for split, path in channels.items()})
    path = Path(args.dataset)
    if path.exists():
        loaded = _from_disk(str(path))
        return loaded if isinstance(loaded, DatasetDict) else DatasetDict({args.train_split: loaded})
    if args.dataset.startswith((".", "/", "~")) or args.dataset.count("/") > 1:
        raise UserError(f"dataset folder not found: {args.dataset}")
    try:
        return load_dataset(args.dataset, revision=args.dataset_revision)
    except Exception as error:  # noqa: BLE001 - datasets raises many types for "not there"; all mean the same here
        raise UserError(f"cannot load dataset {args.dataset!r}: {str(error).splitlines()[0]}") from None


def _from_disk(path: str) -> Dataset | DatasetDict:
    try:
        return load_from_disk(path)
    except FileNotFoundError:
        raise UserError(f"{path} is not a dataset written by data.build (datasets.save_to_disk)") from None


def _names(split: Dataset, name: str) -> list[str]:
    feature = split.features.get("label")
    if not isinstance(feature, ClassLabel):
        raise UserError(f"the {name!r} split has no ClassLabel 'label' column (columns: {', '.join(split.features)})")
    if "image" not in split.features:
        raise UserError(f"the {name!r} split has no 'image' column")
    try:
        counts_of(feature.names)
    except ValueError as error:
        raise UserError(str(error)) from None
    return list(feature.names)
