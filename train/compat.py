"""The one place the project relies on Trainer internals, each checked against the installed transformers.

``CountingTrainer`` overrides three private ``Trainer`` methods: ``_get_train_sampler`` (our epoch-tagged sampler,
see train/transforms.py), ``_load_from_checkpoint`` and ``_load_best_model`` (reloads that work for every
architecture). Private methods change between releases without notice, so ``check()`` compares each with the
signature written against here when this module is imported: an upgrade that moves them fails at once with the
method's name, instead of resuming or reloading nothing in silence. tests/test_compat.py holds the same check.

Why the reloads: ``save_pretrained`` writes some architectures (ViT in transformers 5) with legacy weight names —
what older transformers, e.g. in the SageMaker containers, need — but Trainer reloads checkpoints (resume, best
model) with a raw, non-strict ``load_state_dict`` that then silently loads nothing. Reloading through
``from_pretrained`` maps the names back, and the strict load proves every weight arrived.
"""

from __future__ import annotations

import inspect
import logging

import transformers
from transformers import Trainer

from train.transforms import EpochIndices

logger = logging.getLogger(__name__)

# The private methods overridden below, with the parameters they are written against (transformers 5.x).
OVERRIDDEN = {
    "_get_train_sampler": ("self", "train_dataset"),
    "_load_from_checkpoint": ("self", "resume_from_checkpoint", "model"),
    "_load_best_model": ("self",),
}


class TrainerChanged(RuntimeError):
    """The installed transformers no longer has a private Trainer method as this module overrides it."""


def check(trainer_class: type = Trainer) -> None:
    """Raise ``TrainerChanged`` unless every overridden method exists with the parameters written against."""
    for name, expected in OVERRIDDEN.items():
        method = getattr(trainer_class, name, None)
        if method is None:
            raise TrainerChanged(f"transformers {transformers.__version__}: Trainer.{name} is gone; train/compat.py "
                                 f"overrides it and must be updated")
        found = tuple(inspect.signature(method).parameters)
        if found != expected:
            raise TrainerChanged(f"transformers {transformers.__version__}: Trainer.{name}{found} is not "
                                 f"{name}{expected} as train/compat.py overrides it; update the override")


check()


class CountingTrainer(Trainer):
    """Trainer whose training sampler tags each index with its epoch (any base sampler: the weighted one, or a
    seeded shuffle) and whose checkpoint reloads work for every architecture."""

    def __init__(self, *args, train_sampler=None, epoch_of=None, seed: int = 0, **kwargs):
        self.train_sampler = train_sampler
        self.epoch_of = epoch_of  # () -> the epoch beginning now (set by transforms.EpochSync)
        self.sampler_seed = seed
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        return EpochIndices(len(dataset), self.epoch_of or (lambda: 0), self.sampler_seed, self.train_sampler)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        model = model or self.model
        saved = type(model).from_pretrained(resume_from_checkpoint, config=model.config, use_safetensors=True)
        model.load_state_dict(saved.state_dict())

    def _load_best_model(self):
        logger.info("loading the best model from %s (%s %s)", self.state.best_model_checkpoint,
                    self.args.metric_for_best_model, self.state.best_metric)
        self._load_from_checkpoint(self.state.best_model_checkpoint)
