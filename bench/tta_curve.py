#!/usr/bin/env python3
"""Time to target accuracy from an accuracy curve: pure functions, no I/O.

A curve is a list of points (clock_s, acc), one per model snapshot, in training order: clock_s is
the run's training clock when the snapshot was taken (bench/eval_snapshots.py writes them). The
target is reached somewhere between the last snapshot below it and the first at or above it; the
time to target is interpolated linearly between those two, and they are kept as its bracket.

  time_to_target(curve, target) -> Reached(tta, lo, hi) or NotReached(by)
  ratio(peer, own)              -> the peer's time over ours, with the range its bracket allows
  record_fields(points, target) -> the keys benchmark 4's JSON lines carry for a curve
                                   (with the bracket's place in epochs)
"""
import math
from collections import namedtuple

# tta: the interpolated time; lo, hi: the clocks of the two snapshots around it (lo == hi when
# the very first snapshot was already at the target).
Reached = namedtuple("Reached", "tta lo hi")
# by: the clock of the last snapshot, still below the target (0 for an empty curve).
NotReached = namedtuple("NotReached", "by")
# value: the interpolated ratio; lo, hi: its range over both brackets (hi may be math.inf);
# at_least: True when the peer had not reached the target, so the true ratio exceeds `value`
# (and lo, hi are then both the bound that holds for every point of our bracket).
Ratio = namedtuple("Ratio", "value lo hi at_least")


def check_curve(curve):
    """Raises ValueError unless the curve's clocks are finite, non-negative and non-decreasing and
    its accuracies are in [0, 1]."""
    last = -math.inf
    for i, (t, acc) in enumerate(curve):
        if not (math.isfinite(t) and t >= 0):
            raise ValueError(f"point {i}: clock {t} is not a finite time >= 0")
        if t < last:
            raise ValueError(f"point {i}: clock {t} is earlier than the point before ({last})")
        if not 0 <= acc <= 1:
            raise ValueError(f"point {i}: accuracy {acc} is not in [0, 1]")
        last = t


def time_to_target(curve, target):
    """Reached(tta, lo, hi) at the first point at or above target, interpolated from the point
    before it; NotReached(by) when no point reaches it."""
    check_curve(curve)
    prev = None
    for t, acc in curve:
        if acc >= target:
            if prev is None:
                return Reached(t, t, t)
            t0, a0 = prev
            # a0 < target <= acc, so the slope is positive and the fraction is in (0, 1].
            return Reached(t0 + (target - a0) / (acc - a0) * (t - t0), t0, t)
        prev = (t, acc)
    return NotReached(curve[-1][0] if curve else 0.0)


def _div(a, b):
    return a / b if b > 0 else math.inf


def ratio(peer, own):
    """The peer's time to target over ours. Both Reached: the interpolated ratio with the range
    [peer.lo / own.hi, peer.hi / own.lo]. Peer NotReached(by), own Reached: the peer's time exceeds
    `by`, so the ratio exceeds by / own.tta (value) and, whatever our time in its bracket, by /
    own.hi (lo == hi); at_least is set. None when we did not reach the target."""
    if not isinstance(own, Reached):
        return None
    if isinstance(peer, NotReached):
        return Ratio(_div(peer.by, own.tta), _div(peer.by, own.hi), _div(peer.by, own.hi), True)
    return Ratio(_div(peer.tta, own.tta), _div(peer.lo, own.hi), _div(peer.hi, own.lo), False)


def curve_from_records(records):
    """[(clock_s, test_acc)] from curve lines (dicts with clock_s and test_acc), in clock order."""
    return sorted(((float(r["clock_s"]), float(r["test_acc"])) for r in records),
                  key=lambda p: p[0])


def record_fields(points, target):
    """For a benchmark 4 line: "curve" [[clock_s, acc], ...], "tta_s" (interpolated, or None),
    "tta_bracket_s" [lo, hi] (or None), "tta_bracket_epochs" [lo, hi] (the same two snapshots'
    places in the schedule, in epochs, when the points carry an "epoch"; else None) and
    "not_reached_by_s" (the last snapshot's clock when the target was not reached, else None)."""
    ordered = sorted(points, key=lambda p: float(p["clock_s"]))
    curve = curve_from_records(ordered)
    r = time_to_target(curve, target)
    reached = isinstance(r, Reached)
    epochs = None
    if reached and all("epoch" in p for p in ordered):
        # The same walk as time_to_target: the first point at the target and the one before it.
        hit = next(i for i, (_, acc) in enumerate(curve) if acc >= target)
        epochs = [float(ordered[max(hit - 1, 0)]["epoch"]), float(ordered[hit]["epoch"])]
    return {"curve": [list(p) for p in curve], "tta_s": r.tta if reached else None,
            "tta_bracket_s": [r.lo, r.hi] if reached else None, "tta_bracket_epochs": epochs,
            "not_reached_by_s": None if reached else r.by}
