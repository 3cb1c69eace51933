"""Should the student replace the teacher? Non-inferiority on frame-level validation numbers.

The student has seen every human answer the teacher saw and more, so it replaces the teacher
unless it is *worse beyond noise* on the validation clips neither of them trained on:

* frame average precision lower by more than ``margin``, or by more than the noise of the
  difference on these clips when that is larger (``ap_noise``: a few validation clips make AP
  jump between two equally good models); AP over every frame of every validation range, not
  one score per clip, which saturates at 1.0 on small sets;
* frame log loss higher by more than ``loss_margin`` times the teacher's (calibration: the reel
  threshold is fixed);
* reel precision (of the reviewed in-reel clips the model would still put in a reel) lower by
  more than ``margin`` or one item's worth, whichever is larger.

A tie promotes the student. A metric either model lacks (a validation split with one class,
no reviewed in-reel clips) is not compared. Pure functions: no torch, no files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: the numbers compared, with the direction that is better
HIGHER = ("frame_ap", "reel_precision")
LOWER = ("log_loss",)


@dataclass(frozen=True)
class Check:
    metric: str
    student: float | None
    teacher: float | None
    margin: float
    ok: bool | None  # None: not compared

    def describe(self) -> str:
        if self.ok is None:
            return f"{self.metric} not compared (student {_f(self.student)}, teacher {_f(self.teacher)})"
        sign = ">=" if self.metric in HIGHER else "<="
        bound = (self.teacher or 0.0) - self.margin if self.metric in HIGHER else (self.teacher or 0.0) + self.margin
        verdict = "ok" if self.ok else "WORSE"
        return f"{self.metric} {_f(self.student)} vs {_f(self.teacher)} (needs {sign} {bound:.3f}): {verdict}"


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _margin(metric: str, teacher: Mapping[str, Any], margin: float, loss_margin: float, ap_noise: float = 0.0) -> float:
    if metric == "frame_ap":
        return max(margin, ap_noise)
    if metric == "log_loss":
        return loss_margin * float(teacher.get("log_loss") or 0.0)
    if metric == "reel_precision":
        n = int(teacher.get("reel_n") or 0)
        return max(margin, 1.0 / n) if n else margin
    return margin


def checks(student: Mapping[str, Any], teacher: Mapping[str, Any], margin: float, loss_margin: float,
           ap_noise: float = 0.0) -> list[Check]:
    out = []
    for metric in (*HIGHER, *LOWER):
        s, t = student.get(metric), teacher.get(metric)
        m = _margin(metric, teacher, margin, loss_margin, ap_noise)
        if s is None or t is None:
            out.append(Check(metric, s, t, m, None))
        elif metric in HIGHER:
            out.append(Check(metric, float(s), float(t), m, float(s) >= float(t) - m - 1e-12))
        else:
            out.append(Check(metric, float(s), float(t), m, float(s) <= float(t) + m + 1e-12))
    return out


def decide(student: Mapping[str, Any] | None, teacher: Mapping[str, Any] | None, *, margin: float,
           loss_margin: float, ap_noise: float = 0.0) -> tuple[bool, str, list[dict[str, Any]]]:
    """(promote, reason, checks as dicts) for validation metric blocks of the student and teacher.
    ``ap_noise``: the frame-AP margin is at least this (a multiple of the bootstrapped standard
    error of the difference on these clips)."""
    if teacher is None:
        return True, "no comparable current model; the new model becomes current", []
    if not student or all(student.get(k) is None for k in (*HIGHER, *LOWER)):
        return False, "the new model has no validation numbers (no validation clips); kept, not promoted", []
    done = checks(student, teacher, margin, loss_margin, ap_noise)
    compared = [c for c in done if c.ok is not None]
    table = [c.__dict__ for c in done]
    if not compared:
        return True, "nothing to compare on the shared validation clips; the student (more answers) is promoted", table
    worse = [c for c in compared if not c.ok]
    detail = "; ".join(c.describe() for c in compared)
    if worse:
        return False, f"worse than the current model beyond the margin: {detail}; kept, not promoted", table
    return True, f"not worse than the current model within the margin (a tie promotes): {detail}", table
