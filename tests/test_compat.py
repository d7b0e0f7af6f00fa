"""train/compat.py fails loudly when the installed transformers moves a Trainer internal it overrides."""

from __future__ import annotations

import pytest
from transformers import Trainer

from train import compat


def test_the_installed_trainer_has_every_overridden_method_as_written_against():
    compat.check()  # also run on import of train.compat (and so of train.run)
    for name in compat.OVERRIDDEN:
        assert name in vars(compat.CountingTrainer), f"{name} is listed but not overridden"


def test_a_changed_signature_or_a_missing_method_is_refused_by_name():
    class Renamed(Trainer):
        def _load_from_checkpoint(self, checkpoint_path, model=None):  # a parameter renamed upstream
            pass

    with pytest.raises(compat.TrainerChanged, match=r"Trainer\._load_from_checkpoint"):
        compat.check(Renamed)

    class Gone:  # neither method exists any more
        pass

    with pytest.raises(compat.TrainerChanged, match=r"Trainer\._get_train_sampler is gone"):
        compat.check(Gone)
