"""core/verify.py, the one verify rule: its verdicts at the thresholds' edges and the model folder's verify.json."""

from __future__ import annotations

import numpy as np
import pytest

from core import verify as rule
from train import audit


@pytest.mark.parametrize("p, expected", [(0.5, "match"), (0.9, "match"), (0.1, "mismatch"), (0.0, "mismatch"),
                                         (0.3, "uncertain"), (0.49, "uncertain"), (0.11, "uncertain")])
def test_verdicts_at_the_built_in_thresholds_include_their_edges(p, expected):
    assert rule.BUILT_IN == {"match": 0.5, "mismatch": 0.1}  # the README's and the handler's documented defaults
    assert rule.verdict(p, **rule.BUILT_IN) == expected


def test_the_audit_judges_records_by_the_same_rule():
    p = np.array([0.0, 0.1, 0.3, 0.5, 1.0])
    assert list(audit.verdicts(p, rule.BUILT_IN)) == [rule.verdict(x, **rule.BUILT_IN) for x in p]


def test_saved_thresholds_round_trip_and_default_to_the_built_in_pair(tmp_path):
    assert rule.saved(tmp_path) == rule.BUILT_IN
    rule.save(tmp_path, {"match": 0.35, "mismatch": 0.02, "target_false_alarm": 0.05})
    assert rule.saved(tmp_path) == {"match": 0.35, "mismatch": 0.02, "target_false_alarm": 0.05}


@pytest.mark.parametrize("text", ['{"match": 0.1, "mismatch": 0.2}', '{"match": "high"}', "[0.5, 0.1]", "{",
                                  '{"mismatch": NaN}'])
def test_an_unusable_verify_json_is_refused_naming_the_file(tmp_path, text):
    (tmp_path / rule.VERIFY_FILE).write_text(text)
    with pytest.raises(ValueError, match="verify.json: not usable verify thresholds"):
        rule.saved(tmp_path)


def test_crossed_thresholds_are_never_written(tmp_path):
    with pytest.raises(ValueError, match="mismatch_threshold"):
        rule.save(tmp_path, {"match": 0.1, "mismatch": 0.1})
    assert not (tmp_path / rule.VERIFY_FILE).exists()
