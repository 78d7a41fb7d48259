#!/usr/bin/env python3
"""bench/provenance.py: the commit a benchmark record names is dirty for a change to the code, not
for the benchmarks' own outputs (bench/data, bench/figures), which run_all.sh writes before the
benchmarks ask. Usage: provenance_test.py [unittest args]."""
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from provenance import commit  # noqa: E402


def git(root, *args):
    subprocess.run(["git", "-C", root, *args], check=True, capture_output=True, timeout=30)


class CommitTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        git(self.root, "init", "-q")
        for path in ("bench/data/env.json", "bench/figures/tta.svg", "worker/trainer.cc"):
            self.write(path, "v1\n")
        git(self.root, "add", "-A")
        git(self.root, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "v1")
        out = subprocess.run(["git", "-C", self.root, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True, timeout=30)
        self.head = out.stdout.strip()

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, path, text):
        full = os.path.join(self.root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)

    def test_a_clean_tree_is_its_head(self):
        self.assertEqual(commit(self.root), self.head)

    def test_the_benchmarks_outputs_do_not_make_it_dirty(self):
        self.write("bench/data/env.json", "v2\n")
        self.write("bench/figures/tta.svg", "v2\n")
        self.assertEqual(commit(self.root), self.head)

    def test_a_changed_source_file_does(self):
        self.write("bench/data/env.json", "v2\n")
        self.write("worker/trainer.cc", "v2\n")
        self.assertEqual(commit(self.root), self.head + " (dirty)")

    def test_an_untracked_file_does_not(self):
        self.write("notes.txt", "scratch\n")
        self.assertEqual(commit(self.root), self.head)

    def test_outside_a_checkout_it_is_unknown(self):
        with tempfile.TemporaryDirectory() as bare:
            self.assertEqual(commit(bare), "unknown")


if __name__ == "__main__":
    unittest.main()
