"""Verify mode's rule: is a bin's recorded quantity right? One definition for the handler (which ships this file as
``code/core/verify.py``), the audit that chooses a model's thresholds and the CLIs. Standard library only.

From P, the probability the model gives exactly the recorded count: ``match`` when P >= the match threshold,
``mismatch`` when P <= the mismatch threshold (a recount), ``uncertain`` in between. A model folder may carry its own
pair in ``verify.json``, chosen on its validation split; without one the built-in 0.5 / 0.1 stand: 0.5 makes a match
more likely than all other counts together, and 0.1 leaves 90% of the probability saying otherwise before a recount.
"""

from __future__ import annotations

import json
import os

VERIFY_FILE = "verify.json"  # {"match": t, "mismatch": t, ...}: the model's own thresholds, shipped in model.tar.gz
BUILT_IN = {"match": 0.5, "mismatch": 0.1}


def calls(p, match: float, mismatch: float) -> tuple:
    """(called match, called mismatch) for one P(recorded count), or element-wise for a numpy array of them, so an
    audit of many records needs no loop; a P that is neither is ``uncertain``."""
    return p >= match, (p <= mismatch) & (p < match)


def verdict(p: float, match: float, mismatch: float) -> str:
    """The verdict on one record from P(recorded count)."""
    matched, flagged = calls(p, match, mismatch)
    if matched:
        return "match"
    if flagged:
        return "mismatch"
    return "uncertain"


def check(match: float, mismatch: float) -> None:
    """ValueError unless 0 <= mismatch < match <= 1 (also refuses NaN)."""
    if not 0 <= mismatch < match <= 1:
        raise ValueError(f"verify thresholds need 0 <= mismatch_threshold ({mismatch}) < match_threshold ({match}) "
                         "<= 1")


def saved(model_dir: str | os.PathLike) -> dict:
    """The model folder's thresholds from verify.json, or the built-in pair; ValueError naming the file when it is
    unusable, so a misconfigured model fails when it loads."""
    path = os.path.join(model_dir, VERIFY_FILE)
    if not os.path.isfile(path):
        return dict(BUILT_IN)
    try:
        with open(path) as file:
            values = json.load(file)
        thresholds = {**values, "match": float(values.get("match", BUILT_IN["match"])),
                      "mismatch": float(values.get("mismatch", BUILT_IN["mismatch"]))}
        check(thresholds["match"], thresholds["mismatch"])
    except (OSError, ValueError, TypeError, AttributeError, RecursionError) as error:
        raise ValueError(f"{path}: not usable verify thresholds ({error})") from None
    return thresholds


def save(model_dir: str | os.PathLike, thresholds: dict) -> str:
    """Write the thresholds (and how they were chosen) as the model folder's verify.json."""
    check(thresholds["match"], thresholds["mismatch"])
    path = os.path.join(model_dir, VERIFY_FILE)
    with open(path, "w") as file:
        file.write(json.dumps(thresholds, indent=1) + "\n")
    return path
