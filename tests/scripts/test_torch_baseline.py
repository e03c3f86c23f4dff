"""scripts/torch-baseline: its correctness check and its command line. PyTorch itself is optional
(scripts/setup --torch); the end-to-end case runs only where it is installed."""

import argparse
import json
import os
import subprocess
import tempfile
import unittest

import numpy as np

import _paths  # noqa: F401  (puts scripts/ on sys.path)
import torch_baseline

LAUNCHER = os.path.join(_paths.SCRIPTS, "torch-baseline")


def attention(q, k, v, causal):
    """Dense float64 attention, the plain formula, for the check to be compared with."""
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if causal:
        n_q, n_k = s.shape[-2:]
        s = np.where(np.arange(n_k)[None, :] > np.arange(n_q)[:, None] + (n_k - n_q), -np.inf, s)
    w = np.exp(s - s.max(axis=-1, keepdims=True))
    return (w / w.sum(axis=-1, keepdims=True)) @ v


def has_torch():
    return subprocess.run(["/usr/bin/python3", "-E", "-s", "-c", "import torch"],
                          capture_output=True).returncode == 0


class Check(unittest.TestCase):
    def setUp(self):
        rng = np.random.default_rng(3)
        self.q, self.k, self.v = (rng.standard_normal((2, 40, 8)) for _ in range(3))

    def test_accepts_correct_attention(self):
        for causal in (False, True):
            out = attention(self.q, self.k, self.v, causal).astype(np.float32)
            self.assertLess(torch_baseline.max_error_vs_float64(self.q, self.k, self.v, out, causal),
                            1e-6)

    def test_rejects_wrong_outputs(self):
        right = attention(self.q, self.k, self.v, False)
        # Causal output checked as non-causal and vice versa, a perturbed row, a NaN.
        wrong_mask = attention(self.q, self.k, self.v, True)
        self.assertGreater(
            torch_baseline.max_error_vs_float64(self.q, self.k, self.v, wrong_mask, False), 1e-2)
        self.assertGreater(
            torch_baseline.max_error_vs_float64(self.q, self.k, self.v, right, True), 1e-2)
        bumped = right.copy()
        bumped[1, 39, 5] += 1e-3  # the last row, which the check always includes
        self.assertGreater(torch_baseline.max_error_vs_float64(self.q, self.k, self.v, bumped, False),
                           5e-4)
        nan = right.copy()
        nan[0, 0, 0] = np.nan
        self.assertEqual(torch_baseline.max_error_vs_float64(self.q, self.k, self.v, nan, False),
                         float("inf"))

    def test_bottom_right_alignment_when_fewer_queries(self):
        q = self.q[:, :10]
        out = attention(q, self.k, self.v, True)
        self.assertLess(torch_baseline.max_error_vs_float64(q, self.k, self.v, out, True), 1e-12)


class CommandLine(unittest.TestCase):
    def test_parsers(self):
        self.assertEqual(torch_baseline.parse_lengths("4096,8192"), [4096, 8192])
        self.assertEqual(torch_baseline.positive("3"), 3)
        for bad in ("", "4096,x", "0", "-5"):
            with self.assertRaises(argparse.ArgumentTypeError, msg=bad):
                torch_baseline.parse_lengths(bad)
        for bad in ("0", "two"):
            with self.assertRaises(argparse.ArgumentTypeError, msg=bad):
                torch_baseline.positive(bad)

    def test_bad_option_names_field_and_value(self):
        for args, field, value in ((["--n", "12,abc"], "--n", "12,abc"),
                                   (["--threads", "0"], "--threads", "0"),
                                   (["--reps", "x"], "--reps", "x")):
            r = subprocess.run([LAUNCHER] + args, capture_output=True, text=True)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(field, r.stderr)
            self.assertIn(value, r.stderr)

    def test_help(self):
        r = subprocess.run([LAUNCHER, "--help"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0)
        for option in ("--n", "--heads", "--d", "--threads", "--reps", "--causal", "--json"):
            self.assertIn(option, r.stdout)

    @unittest.skipUnless(has_torch(), "PyTorch not installed (scripts/setup --torch)")
    def test_end_to_end_writes_json(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "t.json")
            r = subprocess.run([LAUNCHER, "--n", "33,64", "--heads", "2", "--d", "8", "--threads",
                                "1", "--reps", "2", "--causal", "--json", path],
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(path) as f:
                doc = json.load(f)
        self.assertEqual([row["n"] for row in doc["results"]], [33, 64])
        for row in doc["results"]:
            for form in ("eager", "preallocated"):
                self.assertEqual(len(row[form]["times_ms"]), 2)
                self.assertLess(row[form]["max_abs_error"], 1e-5)
            self.assertEqual(row["best_median_ms"],
                             min(row["eager"]["median_ms"], row["preallocated"]["median_ms"]))


if __name__ == "__main__":
    unittest.main()
