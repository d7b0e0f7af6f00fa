"""The bin-count dataset as a ``datasets`` builder with named configurations, for code that expects one.

``datasets`` 5 no longer runs loading scripts; a builder class in the project's own code is their modern equivalent::

    from data.hub_builder import AbidBins

    builder = AbidBins(config_name="moderate", source="s3://aft-vbi-pds")  # or a local bucket-layout folder
    builder.download_and_prepare()
    splits = builder.as_dataset()  # DatasetDict: train / validation / test

Configurations (the task variants the project trains on):

- ``moderate``: counts 0-5, one class each (the abid_challenge "moderate" task).
- ``udacity``: counts 1-5 (the Udacity capstone task); pass ``subset=<file_list.json>`` for its 10k-image list.
- ``hard``: counts 0-20 and one overflow class "21+".

The builder is thin: ``_split_generators`` runs ``data.build`` (the same listing, decoding, resizing, dropping and
splitting as ``python -m data.build``, resumable, in ``num_proc`` processes) into a folder in the builder's cache, and
``_generate_examples`` hands its rows over unchanged (the JPEG bytes are not decoded again). Any field of
``AbidBinsConfig`` can be overridden as a keyword (``AbidBins(config_name="hard", max_count=10, limit=500)``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from core.labels import LabelSpace
from data import build
from data.shards import SHARD_FEATURES
from data.sources import DEFAULT_SOURCE
from data.subsets import SPLITS


@dataclass
class AbidBinsConfig(datasets.BuilderConfig):
    """A task variant (which counts become which classes) and where and how to build it."""

    min_count: int = 0
    max_count: int = 5
    overflow_bucket: bool = False
    subset: str | None = None  # a Udacity file_list.json or an abid_challenge id list
    source: str = DEFAULT_SOURCE  # s3://bucket[/prefix], a bucket-layout folder, or count folders
    endpoint_url: str | None = None
    shorter_side: int = 256
    limit: int | None = None  # only the first N listed bins (quick runs)
    num_proc: int = 1
    split_ratios: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])

    def build_arguments(self, output: Path) -> tuple:
        """The same option groups ``python -m data.build`` parses."""
        return (build.SourceArguments(source=self.source, endpoint_url=self.endpoint_url),
                build.SelectionArguments(min_count=self.min_count, max_count=self.max_count,
                                         overflow_bucket=self.overflow_bucket, subset=self.subset,
                                         split_ratios=list(self.split_ratios), limit=self.limit),
                build.OutputArguments(output=str(output), shorter_side=self.shorter_side, num_proc=self.num_proc))

    @property
    def labels(self) -> LabelSpace:
        return LabelSpace(self.min_count, self.max_count, self.overflow_bucket)


class AbidBins(datasets.GeneratorBasedBuilder):
    """Amazon Bin Image Dataset bins labelled with their item count (see the module docstring)."""

    BUILDER_CONFIG_CLASS = AbidBinsConfig
    BUILDER_CONFIGS = [
        AbidBinsConfig(name="moderate", min_count=0, max_count=5, description="Counts 0-5, one class each."),
        AbidBinsConfig(name="udacity", min_count=1, max_count=5, description="Counts 1-5 (the Udacity capstone)."),
        AbidBinsConfig(name="hard", min_count=0, max_count=20, overflow_bucket=True,
                       description="Counts 0-20 and an overflow class 21+."),
    ]
    DEFAULT_CONFIG_NAME = "moderate"

    def _info(self) -> datasets.DatasetInfo:
        if self.config.max_count < 0:
            raise ValueError("AbidBins needs a fixed max_count (its classes are declared before the build)")
        features = SHARD_FEATURES.copy()
        features["label"] = datasets.ClassLabel(names=self.config.labels.names(self.config.max_count))
        return datasets.DatasetInfo(
            description=self.config.description, features=features, license="cc-by-nc-sa-3.0",
            homepage="https://registry.opendata.aws/amazon-bin-imagery/")

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        arguments = self.config.build_arguments(Path("."))
        key = hashlib.sha256(json.dumps(build.options_of(*arguments), sort_keys=True).encode()).hexdigest()[:16]
        output = Path(self._cache_dir_root) / "abid_bins_builds" / f"{self.config.name}-{key}"
        arguments[2].output = str(output)
        report = build.build(*arguments)  # resumes, or returns at once when this folder is already built
        return [datasets.SplitGenerator(name=split, gen_kwargs={"folder": str(output), "split": split})
                for split in SPLITS if report["per_split"].get(split)]

    def _generate_examples(self, folder: str, split: str):
        rows = datasets.load_from_disk(folder)[split].cast_column("image", datasets.Image(decode=False))
        for index, row in enumerate(rows):
            yield index, row
