"""Verification and open-set identification metrics: plain numpy, one definition each.

Scores are similarities: higher means "same person". A pair (or a search) is accepted
when its score is strictly above the threshold. Operating points at a false-accept rate
are conservative: the threshold is the lowest one whose false-accept rate does not
exceed the target, so with n impostor scores any target below 1/n is read as 0.

Open-set identification follows QMUL-SurvFace and the BTNet authors' evaluation: a mated
probe counts as found at threshold t when its true identity ranks within ``rank`` and
its score is above t (TPIR); an unmated probe is a false alarm when its best score is
above t (FPIR). Both curves, ROC and TPIR/FPIR, are the same computation on different
score sets, so they share :func:`operating_curve`.
"""

from __future__ import annotations

import math

import numpy as np

_EPS = 1e-9  # guards floor(far * n) against 0.7 * 10 = 6.999...


def _split(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.size} vs {labels.size}")
    return scores[labels], scores[~labels]


def operating_curve(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false rate, true rate, threshold) for every distinct score, from (0, 0) at +inf downwards.

    Point i accepts scores >= threshold[i]. Positives of -inf (a mate outside the rank)
    are never accepted, so an identification curve may end below 1.
    """
    pos = np.sort(np.asarray(positives, dtype=np.float64).ravel())
    neg = np.sort(np.asarray(negatives, dtype=np.float64).ravel())
    if pos.size == 0 or neg.size == 0:
        raise ValueError(f"need positives and negatives, found {pos.size} and {neg.size}")
    values = np.concatenate([pos, neg])
    thresholds = np.unique(values[np.isfinite(values)])[::-1]
    tpr = (pos.size - np.searchsorted(pos, thresholds, side="left")) / pos.size
    fpr = (neg.size - np.searchsorted(neg, thresholds, side="left")) / neg.size
    return (np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr]), np.concatenate([[np.inf], thresholds]))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of verification scores: (FAR, TAR, threshold); labels 1 = same person."""
    pos, neg = _split(scores, labels)
    return operating_curve(pos, neg)


def curve_auc(false_rate: np.ndarray, true_rate: np.ndarray) -> float:
    """Trapezoid area under a curve from :func:`operating_curve` (ties score one half)."""
    x, y = np.asarray(false_rate, np.float64), np.asarray(true_rate, np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC: the chance that a same-person pair outscores a different-person pair."""
    far, tar, _ = roc_curve(scores, labels)
    return curve_auc(far, tar)


def threshold_at_rate(negatives: np.ndarray, rate: float) -> float:
    """The lowest threshold (accept strictly above) whose false-accept rate is at most ``rate``."""
    neg = np.sort(np.asarray(negatives, dtype=np.float64).ravel())[::-1]
    if neg.size == 0:
        raise ValueError("need at least one negative score")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate should be in [0, 1], found {rate}")
    allowed = int(math.floor(rate * neg.size + _EPS))
    return -np.inf if allowed >= neg.size else float(neg[allowed])


def true_rate_at(positives: np.ndarray, negatives: np.ndarray, rate: float) -> float:
    """Fraction of positives above :func:`threshold_at_rate` of the negatives."""
    pos = np.asarray(positives, dtype=np.float64).ravel()
    if pos.size == 0:
        raise ValueError("need at least one positive score")
    return float(np.mean(pos > threshold_at_rate(negatives, rate)))


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float) -> float:
    """True-accept rate at a false-accept rate (verification)."""
    pos, neg = _split(scores, labels)
    return true_rate_at(pos, neg, far)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximizing accuracy; candidates lie between distinct scores.

    Ties between equally good thresholds go to the middle one, so the choice does not
    lean towards accepting or rejecting.
    """
    pos, neg = (np.sort(part) for part in _split(scores, labels))
    values = np.unique(np.concatenate([pos, neg]))
    if values.size == 0:
        raise ValueError("need at least one score")
    candidates = np.concatenate([[values[0] - 1.0], (values[:-1] + values[1:]) / 2.0, [values[-1] + 1.0]])
    accepted_pos = pos.size - np.searchsorted(pos, candidates, side="right")
    rejected_neg = np.searchsorted(neg, candidates, side="right")
    accuracy = (accepted_pos + rejected_neg) / (pos.size + neg.size)
    best = np.flatnonzero(accuracy == accuracy.max())
    pick = best[len(best) // 2]
    return float(candidates[pick]), float(accuracy[pick])


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: int = 10) -> dict[str, object]:
    """LFW's protocol: per fold, the best threshold on the other folds, accuracy on this one.

    Folds are contiguous in the given order, as LFW's pairs file defines them: shuffle
    (or interleave) the pairs when writing the file, not here.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if folds < 2 or scores.size < folds:
        raise ValueError(f"need at least {max(folds, 2)} pairs for {folds}-fold accuracy, found {scores.size}")
    accuracies, thresholds = [], []
    for test in np.array_split(np.arange(scores.size), folds):
        train = np.setdiff1d(np.arange(scores.size), test)
        threshold, _ = best_threshold(scores[train], labels[train])
        accuracies.append(float(np.mean((scores[test] > threshold) == labels[test])))
        thresholds.append(threshold)
    return {"mean": float(np.mean(accuracies)), "std": float(np.std(accuracies)), "folds": accuracies,
            "thresholds": thresholds}


def mate_scores(similarity: np.ndarray, true_index: np.ndarray, rank: int = 1) -> np.ndarray:
    """Per mated probe: the score of its true identity when that ranks within ``rank``, else -inf.

    ``similarity`` is (probes, gallery identities); a probe's rank is 1 + the number of
    identities scoring strictly higher than its own.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    true_index = np.asarray(true_index, dtype=np.int64).ravel()
    if similarity.ndim != 2 or similarity.shape[0] != true_index.size:
        raise ValueError(f"similarity should be (probes, identities) with one true index per probe, found "
                         f"{similarity.shape} and {true_index.size} indices")
    own = similarity[np.arange(true_index.size), true_index]
    ranks = 1 + np.sum(similarity > own[:, None], axis=1)
    return np.where(ranks <= rank, own, -np.inf)


def open_set_curve(mated_similarity: np.ndarray, true_index: np.ndarray, unmated_similarity: np.ndarray,
                   rank: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FPIR, TPIR at ``rank``, threshold) over every distinct score."""
    unmated = np.asarray(unmated_similarity, dtype=np.float64)
    return operating_curve(mate_scores(mated_similarity, true_index, rank), unmated.max(axis=1))


def tpir_at_fpir(mated_similarity: np.ndarray, true_index: np.ndarray, unmated_similarity: np.ndarray,
                 fpir: float, rank: int = 20) -> float:
    """TPIR at ``rank`` where the false-positive identification rate is at most ``fpir``."""
    unmated = np.asarray(unmated_similarity, dtype=np.float64)
    return true_rate_at(mate_scores(mated_similarity, true_index, rank), unmated.max(axis=1), fpir)
