#!/usr/bin/env python3
"""bench/tta_curve.py: time to target interpolated between the bracketing snapshots, and ratios
with their ranges. Usage: tta_curve_test.py [unittest args]."""
import math
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from tta_curve import (NotReached, Ratio, Reached, check_curve, curve_from_records,  # noqa: E402
                       ratio, record_fields, time_to_target)


class TimeToTargetTest(unittest.TestCase):
    def test_interpolates_between_the_bracketing_snapshots(self):
        curve = [(0, 0.10), (10, 0.80), (20, 0.86), (30, 0.84), (40, 0.95)]
        r = time_to_target(curve, 0.85)
        self.assertIsInstance(r, Reached)
        self.assertAlmostEqual(r.tta, 10 + (0.05 / 0.06) * 10)
        self.assertEqual((r.lo, r.hi), (10, 20))

    def test_first_crossing_counts_even_if_accuracy_dips_later(self):
        r = time_to_target([(0, 0.1), (5, 0.9), (6, 0.5), (7, 0.95)], 0.9)
        self.assertEqual(r, Reached(5, 0, 5))

    def test_exact_hit_at_a_snapshot_is_that_snapshot(self):
        r = time_to_target([(0, 0.1), (4, 0.5), (8, 0.9)], 0.9)
        self.assertAlmostEqual(r.tta, 8)
        self.assertEqual((r.lo, r.hi), (4, 8))

    def test_already_at_target_at_the_first_snapshot(self):
        self.assertEqual(time_to_target([(3, 0.92), (6, 0.95)], 0.9), Reached(3, 3, 3))

    def test_not_reached_says_by_which_clock(self):
        self.assertEqual(time_to_target([(0, 0.1), (12.5, 0.89)], 0.9), NotReached(12.5))
        self.assertEqual(time_to_target([], 0.9), NotReached(0.0))

    def test_bad_curves_are_refused_with_the_point(self):
        for curve, what in (([(0, 0.1), (-1, 0.2)], "clock -1"),
                            ([(5, 0.1), (4, 0.2)], "earlier"),
                            ([(0, 1.5)], "accuracy 1.5"),
                            ([(math.nan, 0.5)], "clock nan")):
            with self.assertRaises(ValueError) as e:
                check_curve(curve)
            self.assertIn(what, str(e.exception))

    def test_curve_from_records_orders_by_clock(self):
        recs = [{"clock_s": 2.0, "test_acc": 0.5}, {"clock_s": 1.0, "test_acc": 0.3}]
        self.assertEqual(curve_from_records(recs), [(1.0, 0.3), (2.0, 0.5)])

    def test_record_fields_carry_the_curve_and_either_the_time_or_the_bound(self):
        pts = [{"clock_s": 0.0, "test_acc": 0.1}, {"clock_s": 10.0, "test_acc": 0.9}]
        f = record_fields(pts, 0.5)
        self.assertEqual(f["curve"], [[0.0, 0.1], [10.0, 0.9]])
        self.assertAlmostEqual(f["tta_s"], 5.0)
        self.assertEqual(f["tta_bracket_s"], [0.0, 10.0])
        self.assertIsNone(f["not_reached_by_s"])
        f = record_fields(pts, 0.95)
        self.assertEqual((f["tta_s"], f["tta_bracket_s"], f["not_reached_by_s"]), (None, None, 10.0))


    def test_record_fields_place_the_bracket_in_epochs_when_the_points_carry_them(self):
        pts = [{"clock_s": 0.0, "epoch": 0.0, "test_acc": 0.1},
               {"clock_s": 4.0, "epoch": 0.0625, "test_acc": 0.4},
               {"clock_s": 8.0, "epoch": 0.125, "test_acc": 0.6},
               {"clock_s": 12.0, "epoch": 0.1875, "test_acc": 0.7}]
        self.assertEqual(record_fields(pts, 0.5)["tta_bracket_epochs"], [0.0625, 0.125])
        self.assertEqual(record_fields(pts, 0.05)["tta_bracket_epochs"], [0.0, 0.0])
        self.assertIsNone(record_fields(pts, 0.9)["tta_bracket_epochs"])
        no_epochs = [{k: v for k, v in p.items() if k != "epoch"} for p in pts]
        self.assertIsNone(record_fields(no_epochs, 0.5)["tta_bracket_epochs"])

class RatioTest(unittest.TestCase):
    def test_both_reached_gives_the_range_of_both_brackets(self):
        r = ratio(Reached(100, 90, 120), Reached(20, 16, 25))
        self.assertAlmostEqual(r.value, 5.0)
        self.assertAlmostEqual(r.lo, 90 / 25)
        self.assertAlmostEqual(r.hi, 120 / 16)
        self.assertFalse(r.at_least)

    def test_own_bracket_from_zero_has_no_upper_end(self):
        r = ratio(Reached(100, 90, 120), Reached(5, 0, 8))
        self.assertEqual(r.hi, math.inf)

    def test_peer_not_reached_bounds_the_ratio_from_below(self):
        # The peer's time exceeds 300 s; ours is at most 25 s: the ratio exceeds 300 / 25 = 12,
        # and 300 / 20 = 15 at our interpolated time.
        r = ratio(NotReached(300), Reached(20, 16, 25))
        self.assertEqual(r, Ratio(15.0, 12.0, 12.0, True))

    def test_no_ratio_when_we_did_not_reach_it(self):
        self.assertIsNone(ratio(Reached(10, 5, 12), NotReached(50)))


if __name__ == "__main__":
    unittest.main()
