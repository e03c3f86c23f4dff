"""scripts/compare as a regression gate: exit codes, the U test per configuration, matching.

compare_a.jsonl and compare_b.jsonl (fixtures/make_fixtures.py), n = 1024, repetitions in ms:
  full    A 1.00 1.01 1.02 0.99 0.98   B = 1.2 x A: every B above every A, U_B = 25,
          exact two-sided p = 2 / C(10, 5) = 2/252 = 0.00794; ratio of medians 1.2.
  window  A 1.0 1.1 1.2 1.3 1.4        B 0.95 1.05 1.5 1.6 1.7: ratio 1.5/1.2 = 1.25, U_B = 16,
          p = 0.548 (not significant).
  flash   A ~1.0                        B = 0.8 x A: faster, p = 2/252.
  performer only in A; local_blocks only in B.
"""

import csv
import json
import os
import shutil
import subprocess
import tempfile
import unittest

import _paths

COMPARE = os.path.join(_paths.SCRIPTS, "compare")
A = _paths.fixture("compare_a.jsonl")
B = _paths.fixture("compare_b.jsonl")


def run_compare(*args):
    p = subprocess.run([COMPARE, *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def line_of(out, variant):
    lines = [l for l in out.splitlines() if l.startswith(variant + " ")]
    assert len(lines) == 1, (variant, out)
    return lines[0]


class Gate(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="attnbench-compare-test-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def write(self, name, lines):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("".join(json.dumps(l) + "\n" for l in lines))
        return path

    @staticmethod
    def load(path):
        with open(path) as f:
            return [json.loads(l) for l in f]

    def test_regression_fails_the_gate(self):
        rc, out, err = run_compare(A, B)
        self.assertEqual(rc, 1, out + err)
        self.assertRegex(line_of(out, "full"), r"1\.200\s+0\.00794 .*REGRESSION")
        self.assertRegex(line_of(out, "window"), r"1\.250\s+0\.548 .*slower, not significant")
        self.assertRegex(line_of(out, "flash"), r"0\.800\s+0\.00794 .*faster")
        self.assertIn("only in A: performer features=128", out)
        self.assertIn("only in B: local_blocks block=64", out)
        self.assertIn("3 configuration(s) compared, 1 regression(s)", out)

    def test_threshold(self):
        rc, out, _ = run_compare(A, B, "--threshold", "1.3")
        self.assertEqual(rc, 0, out)
        rc, out, _ = run_compare(A, B, "--threshold", "1.19")
        self.assertEqual(rc, 1, out)

    def test_alpha(self):
        # p = 2/252 = 0.0079 is not below 0.005.
        rc, out, _ = run_compare(A, B, "--alpha", "0.005")
        self.assertEqual(rc, 0, out)

    def test_same_run_passes(self):
        rc, out, _ = run_compare(A, A)
        self.assertEqual(rc, 0, out)
        self.assertIn("4 configuration(s) compared, 0 regression(s)", out)

    def test_reverse_direction_flags_flash(self):
        rc, out, _ = run_compare(B, A)
        self.assertEqual(rc, 1, out)
        self.assertIn("REGRESSION", line_of(out, "flash"))  # 1/0.8 = 1.25, p = 2/252
        self.assertNotIn("REGRESSION", line_of(out, "full"))

    def test_memory_and_error_deltas(self):
        rc, out, _ = run_compare(A, B, "--threshold", "2")
        self.assertIn("977 KiB → 1.43 MiB", line_of(out, "full"))
        self.assertIn("0.1 → 0.12", line_of(out, "full"))

    def test_status_change_is_a_regression(self):
        lines = self.load(A)
        for rec in lines[1:]:
            if rec["variant"] == "window":
                rec.update(status="crash", message="killed by signal 11 (SIGSEGV)")
                del rec["time"]
        b = self.write("crashed.jsonl", lines)
        rc, out, _ = run_compare(A, b)
        self.assertEqual(rc, 1, out)
        self.assertIn("REGRESSION: crash in B (killed by signal 11 (SIGSEGV))",
                      line_of(out, "window"))

    def test_match_without_config_id(self):
        lines = self.load(B)
        for rec in lines[1:]:
            rec["config_id"] = "renamed-" + rec["config_id"]
        b = self.write("renamed.jsonl", lines)
        rc, out, _ = run_compare(A, b)
        self.assertEqual(rc, 1, out)
        self.assertIn("3 configuration(s) compared, 1 regression(s)", out)

    def test_too_few_repetitions_are_reported(self):
        lines = self.load(A)
        perf = [r for r in lines[1:] if r["variant"] == "performer"][0]
        slower = json.loads(json.dumps(perf))
        slower["time"]["repetitions"] = [x * 1.5 for x in perf["time"]["repetitions"]]
        slower["time"]["median"] *= 1.5
        a = self.write("a.jsonl", [lines[0], perf])
        b = self.write("b.jsonl", [lines[0], slower])
        rc, out, _ = run_compare(a, b)
        # 3 vs 3 repetitions: the smallest two-sided p is 2/20 = 0.1 > 0.05.
        self.assertEqual(rc, 0, out)
        self.assertIn("3 vs 3 repetitions cannot reach p < 0.05 (smallest p 0.1)", out)

    def test_csv(self):
        path = os.path.join(self.tmp, "cmp.csv")
        run_compare(A, B, "--csv", path)
        with open(path, newline="") as f:
            rows = {r["config_id"]: r for r in csv.DictReader(f)}
        self.assertAlmostEqual(float(rows["cmp-full"]["p"]), 2 / 252, places=12)
        self.assertEqual(float(rows["cmp-full"]["u_b"]), 25.0)
        self.assertEqual(rows["cmp-full"]["regression"], "1")
        self.assertEqual(rows["cmp-window"]["regression"], "0")

    def test_bad_inputs_exit_2(self):
        empty = os.path.join(self.tmp, "empty.jsonl")
        open(empty, "w").close()
        rc, _, err = run_compare(A, empty)
        self.assertEqual(rc, 2)
        self.assertIn("empty.jsonl: empty file", err)
        self.assertNotIn("Traceback", err)
        rc, _, err = run_compare(A, os.path.join(self.tmp, "missing.jsonl"))
        self.assertEqual(rc, 2)
        self.assertIn("no such file", err)
        rc, _, err = run_compare(A, B, "--threshold", "-1")
        self.assertEqual(rc, 2)
        self.assertNotIn("Traceback", err)

    def test_nothing_in_common_exit_2(self):
        lines = self.load(A)
        for rec in lines[1:]:
            rec["config_id"] = "other-" + rec["config_id"]
            rec["seed"] = 99
        b = self.write("other.jsonl", lines)
        rc, _, err = run_compare(A, b)
        self.assertEqual(rc, 2)
        self.assertIn("no configuration of", err)

    def test_different_machines_warn(self):
        lines = self.load(B)
        lines[0]["machine_id"] = "ffff0000"
        b = self.write("other_machine.jsonl", lines)
        rc, _, err = run_compare(A, b)
        self.assertEqual(rc, 1)
        self.assertIn("different machines", err)


if __name__ == "__main__":
    unittest.main()
