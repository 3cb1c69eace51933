"""The promotion rule (non-inferiority, a tie promotes) and the pseudo-label thresholds and cap."""

from __future__ import annotations

import numpy as np

from autoclip import compare, promotion
from autoclip.config import from_dict
from autoclip.dataset import Clip
from autoclip.trainrun import plan_pseudo

TEACHER = {"frame_ap": 0.90, "log_loss": 0.30, "reel_precision": 0.80, "reel_n": 10}


def test_a_tie_promotes_the_student() -> None:
    ok, reason, table = promotion.decide(dict(TEACHER), TEACHER, margin=0.0, loss_margin=0.0)
    assert ok and "tie promotes" in reason
    assert [c["ok"] for c in table] == [True, True, True]


def test_worse_beyond_the_margin_is_kept_and_within_it_promoted() -> None:
    within = {**TEACHER, "frame_ap": 0.885, "log_loss": 0.34}
    assert promotion.decide(within, TEACHER, margin=0.02, loss_margin=0.25)[0]
    worse_ap = {**TEACHER, "frame_ap": 0.85}
    ok, reason, _ = promotion.decide(worse_ap, TEACHER, margin=0.02, loss_margin=0.25)
    assert not ok and "frame_ap 0.850 vs 0.900" in reason and "WORSE" in reason
    worse_loss = {**TEACHER, "log_loss": 0.40}
    assert not promotion.decide(worse_loss, TEACHER, margin=0.02, loss_margin=0.25)[0]
    # reel precision on 10 reviewed clips: one clip's worth (0.1) is noise, two is not
    assert promotion.decide({**TEACHER, "reel_precision": 0.70}, TEACHER, margin=0.02, loss_margin=0.25)[0]
    assert not promotion.decide({**TEACHER, "reel_precision": 0.60}, TEACHER, margin=0.02, loss_margin=0.25)[0]


def test_the_ap_margin_widens_to_the_noise_of_a_few_clips() -> None:
    worse_ap = {**TEACHER, "frame_ap": 0.85}
    assert not promotion.decide(worse_ap, TEACHER, margin=0.02, loss_margin=0.25, ap_noise=0.03)[0]
    ok, reason, _ = promotion.decide(worse_ap, TEACHER, margin=0.02, loss_margin=0.25, ap_noise=0.08)
    assert ok and "needs >= 0.820" in reason


def test_paired_ap_noise_is_zero_for_one_model_and_shrinks_with_more_clips() -> None:
    from autoclip.metrics import paired_ap_noise

    rng = np.random.default_rng(3)

    def clips(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        index = np.repeat(np.arange(n), 20)
        labels = np.repeat(np.arange(n) % 3 == 0, 20)
        a = np.clip(labels * 0.5 + rng.normal(0.3, 0.25, len(index)), 0, 1)
        b = np.clip(labels * 0.5 + rng.normal(0.3, 0.25, len(index)), 0, 1)
        return labels, a, b, index

    labels, a, _, index = clips(9)
    assert paired_ap_noise(labels, a, a, index) == 0.0
    few = paired_ap_noise(*clips(9))
    many = paired_ap_noise(*clips(90))
    assert few > 0 and many < few


def test_missing_numbers_are_not_compared() -> None:
    assert promotion.decide({"frame_ap": 0.5}, None, margin=0.0, loss_margin=0.0)[0]  # first model
    ok, reason, _ = promotion.decide({"frame_ap": None, "log_loss": None}, TEACHER, margin=0.0, loss_margin=0.0)
    assert not ok and "no validation numbers" in reason
    ok, _, table = promotion.decide({"frame_ap": 0.95, "log_loss": 0.2}, {"frame_ap": 0.9, "log_loss": 0.3},
                                    margin=0.0, loss_margin=0.0)
    assert ok and table[1]["metric"] == "reel_precision" and table[1]["ok"] is None


def test_the_teachers_training_clips_never_enter_the_comparison() -> None:
    val = [Clip("v", "f", 0, 5, 1, 1), Clip("v", "f", 20, 25, 0, 2), Clip("w", "g", 0, 5, 0, 3)]
    trained = [("f", 4.0, 9.0), ("g", 30.0, 35.0)]
    kept = compare.unseen_by(val, trained, gap=0.5)
    assert [c.label_id for c in kept] == [2, 3]
    compare.assert_unseen(kept, trained, gap=0.5)
    try:
        compare.assert_unseen(val, trained, gap=0.5)
    except Exception as err:  # noqa: BLE001 - the type is checked below
        assert "trained on" in str(err)
    else:
        raise AssertionError("a comparison set holding a training clip was accepted")


def test_pseudo_thresholds_are_chosen_for_precision_on_validation() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(50), np.zeros(200)].astype(bool)
    p = np.r_[rng.uniform(0.6, 1.0, 50), rng.uniform(0.0, 0.8, 200)]
    t = compare.purity_threshold(y, p, target=0.95, positive=True, floor=0.5)
    assert t is not None and (y[p >= t].mean() >= 0.95) and t >= 0.5
    tn = compare.purity_threshold(y, p, target=0.95, positive=False, floor=0.5)
    assert tn is not None and (~y[p <= tn]).mean() >= 0.95 and tn <= 0.5
    # a teacher whose confident highlights are mostly wrong gives no pseudo-highlights at all
    bad = np.r_[rng.uniform(0.0, 0.5, 50), rng.uniform(0.5, 1.0, 200)]
    assert compare.purity_threshold(y, bad, target=0.95, positive=True, floor=0.5) is None


def test_pseudo_labels_weigh_at_most_half_the_human_labels(tmp_path) -> None:
    cfg = from_dict({"train": {"pseudo_weight": 0.3, "pseudo_ratio": 0.5, "pseudo_max": 100000}}, root=tmp_path)
    y = np.r_[np.ones(20), np.zeros(20)].astype(bool)
    plan = plan_pseudo(cfg, human_weight=600.0, val_labels=y, val_probs=y * 0.9 + 0.05)
    assert plan.max_n * cfg.train.pseudo_weight <= 0.5 * 600.0
    assert plan.max_n == 1000 and plan.positive is not None and plan.negative is not None
