"""Metric functions against values worked out by hand (comments show the working)."""

from __future__ import annotations

import numpy as np
import pytest

from btnet_edge.evaluation import metrics

# pos = 0.9, 0.8, 0.6; neg = 0.7, 0.5, 0.4
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
LABELS = np.array([1, 1, 0, 1, 0, 0])


def test_roc_points():
    far, tar, thr = metrics.roc_curve(SCORES, LABELS)
    assert thr[0] == np.inf and list(thr[1:]) == [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    np.testing.assert_allclose(far, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tar, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])


def test_auc_counts_ordered_pairs():
    # 0.9 and 0.8 beat all three negatives, 0.6 beats 0.5 and 0.4: 8 of 9
    assert metrics.roc_auc(SCORES, LABELS) == pytest.approx(8 / 9)
    assert metrics.roc_auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)  # a tie is half
    assert metrics.roc_auc([0.1, 0.9], [1, 0]) == pytest.approx(0.0)


@pytest.mark.parametrize("far, expected", [
    (0.0, 2 / 3),    # threshold 0.7 (no negative above): 0.9, 0.8
    (0.2, 2 / 3),    # floor(0.6) = 0 negatives allowed: same threshold
    (1 / 3, 1.0),    # one negative allowed: threshold 0.5, all positives above
    (1.0, 1.0),
])
def test_tar_at_far(far, expected):
    assert metrics.tar_at_far(SCORES, LABELS, far) == pytest.approx(expected)


def test_threshold_at_rate_is_exact_where_floats_are_not():
    negatives = np.arange(10.0)
    assert metrics.threshold_at_rate(negatives, 0.7) == 2.0  # 0.7 * 10 = 6.999...: still 7 above
    assert metrics.threshold_at_rate(negatives, 1.0) == -np.inf


def test_best_threshold_takes_the_middle_of_equal_choices():
    # candidates 0.55 and 0.75 both get 5 of 6 right; the middle of [0.55, 0.75] in the list is 0.75
    threshold, accuracy = metrics.best_threshold(SCORES, LABELS)
    assert threshold == pytest.approx(0.75) and accuracy == pytest.approx(5 / 6)


def test_kfold_accuracy_two_folds():
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.65])
    labels = np.array([1, 0, 1, 0, 1, 0, 0, 1])
    # fold 1 tested with the threshold of fold 2 (0.625): all right;
    # fold 2 tested with the threshold of fold 1 (0.5): 0.6 (different) accepted, 3 of 4
    result = metrics.kfold_accuracy(scores, labels, folds=2)
    assert result["folds"] == [1.0, 0.75]
    np.testing.assert_allclose(result["thresholds"], [0.625, 0.5])
    assert result["mean"] == pytest.approx(0.875) and result["std"] == pytest.approx(0.125)


def test_kfold_needs_enough_pairs():
    with pytest.raises(ValueError):
        metrics.kfold_accuracy([0.1, 0.2], [0, 1], folds=10)


# Open set: 3 gallery identities; mated probes of ranks 1, 2, 3; unmated best scores 0.7, 0.35, 0.4, 0.15.
MATED = np.array([[0.9, 0.2, 0.1], [0.6, 0.5, 0.1], [0.3, 0.4, 0.2]])
TRUE = np.array([0, 1, 2])
UNMATED = np.array([[0.7, 0.1, 0.0], [0.2, 0.3, 0.35], [0.1, 0.4, 0.0], [0.05, 0.1, 0.15]])


def test_mate_scores_by_rank():
    np.testing.assert_allclose(metrics.mate_scores(MATED, TRUE, rank=1), [0.9, -np.inf, -np.inf])
    np.testing.assert_allclose(metrics.mate_scores(MATED, TRUE, rank=2), [0.9, 0.5, -np.inf])
    np.testing.assert_allclose(metrics.mate_scores(MATED, TRUE, rank=20), [0.9, 0.5, 0.2])


@pytest.mark.parametrize("fpir, rank, expected", [
    (0.0, 20, 1 / 3),   # threshold 0.7: only 0.9
    (0.25, 20, 2 / 3),  # one false alarm allowed: threshold 0.4 -> 0.9, 0.5
    (0.5, 20, 2 / 3),   # threshold 0.35
    (0.75, 20, 1.0),    # threshold 0.15 -> 0.9, 0.5, 0.2
    (0.5, 1, 1 / 3),    # rank 1: only the first probe can count
])
def test_tpir_at_fpir(fpir, rank, expected):
    assert metrics.tpir_at_fpir(MATED, TRUE, UNMATED, fpir, rank) == pytest.approx(expected)


def test_open_set_auc():
    # points (0,0) (0,1/3) (.25,1/3) (.25,2/3) (.5,2/3) (.75,2/3) (.75,1) (1,1): 1/12 + 1/3 + 1/4 = 2/3
    fpir, tpir, _ = metrics.open_set_curve(MATED, TRUE, UNMATED, rank=20)
    assert metrics.curve_auc(fpir, tpir) == pytest.approx(2 / 3)
    # rank 1: the curve stays at 1/3 (two mates never found), so the area is 1/3
    fpir, tpir, _ = metrics.open_set_curve(MATED, TRUE, UNMATED, rank=1)
    assert tpir[-1] == pytest.approx(1 / 3) and metrics.curve_auc(fpir, tpir) == pytest.approx(1 / 3)
