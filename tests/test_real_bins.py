"""bench.real_bins' training loop: the weight-average variant keeps the moving average of the run it averages."""

from __future__ import annotations

import random

import numpy as np
import torch
from PIL import Image

from bench import real_bins


def tiny_run(**settings) -> torch.nn.Module:
    """Two steps of the recipe's variant on 8 random 16-px images, from the same seed every time."""
    rng = random.Random(0)
    images = [Image.new("RGB", (20, 20), tuple(rng.randrange(256) for _ in range(3))) for _ in range(8)]
    variant = real_bins.BASE | real_bins.VARIANTS["heavy-aug-64"] | {"resolution": 16, "epochs": 1, "batch_size": 4}
    return real_bins.train(variant | settings, images, np.arange(8) % 5, [str(i) for i in range(8)], seed=0)


def test_moving_average_of_the_weights_is_the_model_kept(one_torch_thread):
    plain = tiny_run().state_dict()
    last = tiny_run(ema=1e-9).state_dict()  # decay ~0: the average is the last step's weights and statistics
    averaged = tiny_run(ema=0.5).state_dict()
    assert set(last) == set(plain) == set(averaged)
    for name, value in plain.items():
        assert torch.allclose(last[name].float(), value.float(), atol=1e-6), name
    moved = [name for name, value in plain.items() if value.is_floating_point()
             and not torch.allclose(averaged[name], value, atol=1e-6)]
    assert any("running_mean" in name for name in moved) and any("weight" in name for name in moved)
