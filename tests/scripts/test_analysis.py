"""Exponents, crossovers, Pareto frontiers, GFLOP/s and thread scaling on the committed fixture,
whose numbers are closed forms (see fixtures/make_fixtures.py): every expected value below is
worked out by hand from them."""

import unittest

import _paths
from attnbench_report import analysis as A
from attnbench_report.load import load_run


def run_a():
    return load_run(_paths.fixture("run_a.jsonl"))


class Fixture(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = run_a()
        cls.series = A.build_series(cls.data.records)

    def get(self, variant, workload="gaussian", threads=1, spec=None):
        found = [s for s in self.series if s.variant == variant and s.workload_name == workload
                 and s.threads == threads and (spec is None or s.spec_params == spec)]
        self.assertEqual(len(found), 1, "%s %s %s" % (variant, workload, spec))
        return found[0]


class Exponents(Fixture):
    # (variant, time exponent, memory exponent): full 1e-9 n^2 and 4 n^2; flash 5e-10 n^2 and a
    # constant 65536 B; window 1e-6 n and 4096 n; performer 2e-5 n and 3000 n.
    EXPECTED = [("full", 2, 2), ("flash", 2, 0), ("window", 1, 1), ("performer", 1, 1),
                ("local_blocks", 1, 1)]

    def test_slopes_r2_and_intervals(self):
        for variant, et, em in self.EXPECTED:
            s = self.get(variant)
            for metric, expected in (("time", et), ("memory", em)):
                f = A.fit_exponent(s, metric)
                msg = "%s %s" % (variant, metric)
                self.assertAlmostEqual(f.slope, expected, places=9, msg=msg)
                self.assertAlmostEqual(f.fit.r2, 1.0, places=12, msg=msg)
                self.assertAlmostEqual(f.fit.ci_low, expected, places=6, msg=msg)
                self.assertAlmostEqual(f.fit.ci_high, expected, places=6, msg=msg)
                self.assertEqual((f.n_lo, f.n_hi, f.fit.n), (256, 4096, 5), msg)

    def test_fit_range(self):
        f = A.fit_exponent(self.get("window"), "time", fit_min=1024)
        self.assertEqual((f.n_lo, f.n_hi, f.fit.n), (1024, 4096, 3))
        self.assertEqual(f.excluded, [256, 512])
        f = A.fit_exponent(self.get("window"), "time", fit_min=4096)
        self.assertIsNone(f.fit)
        self.assertEqual(f.reason, "1 length")

    def test_theory_and_family_from_the_context_listing(self):
        s = self.get("window")
        self.assertEqual((s.family, s.theory_time, s.theory_memory),
                         ("sparse", "O(n w d)", "O(n w)"))

    def test_series_keyed_by_spec_params(self):
        # performer's resolved params add orthogonal=true; the label uses the spec.
        s = self.get("performer")
        self.assertEqual(s.label, "performer features=128")
        self.assertEqual(len(s.points), 5)

    def test_failed_records_are_not_in_series(self):
        for s in self.series:
            for p in s.points:
                self.assertTrue(all(r.status == "ok" for r in p.records))
        self.assertEqual(max(p.n for p in self.get("full").points), 4096)  # 8192 was skipped


class Crossovers(Fixture):
    def cross(self, variant, base, metric):
        s, b = self.get(variant), self.get(base)
        return A.crossover(s.values(metric), b.values(metric), A.fit_exponent(s, metric).fit,
                           A.fit_exponent(b, metric).fit)

    def test_time_crossings_inside_the_range(self):
        # 1e-6 n = 5e-10 n^2 -> n = 2000; 1e-6 n = 1e-9 n^2 -> n = 1000.
        c = self.cross("window", "flash", "time")
        self.assertEqual((c.kind, c.lo, c.hi), ("crosses", 1024, 2048))
        self.assertAlmostEqual(c.n, 2000, places=6)
        c = self.cross("window", "full", "time")
        self.assertEqual((c.kind, c.lo, c.hi), ("crosses", 512, 1024))
        self.assertAlmostEqual(c.n, 1000, places=6)
        self.assertEqual(c.text("time"), "1000 (between 512 and 1024)")

    def test_memory_equal_at_a_measured_length(self):
        # 4096 n = 4 n^2 at n = 1024 exactly.
        c = self.cross("window", "full", "memory")
        self.assertEqual(c.kind, "crosses")
        self.assertAlmostEqual(c.n, 1024, places=6)

    def test_never_smaller_than_constant_memory(self):
        c = self.cross("window", "flash", "memory")
        self.assertEqual(c.kind, "never")
        self.assertEqual(c.text("memory"), "none in range (256–4096)")

    def test_extrapolated_above(self):
        # 2e-5 n = 5e-10 n^2 -> 40000; 2e-5 n = 1e-9 n^2 -> 20000: beyond 4096.
        c = self.cross("performer", "flash", "time")
        self.assertEqual(c.kind, "extrapolated")
        self.assertAlmostEqual(c.n, 40000, delta=1e-6 * 40000)
        self.assertIn("extrapolated above", c.text("time"))
        c = self.cross("performer", "full", "time")
        self.assertAlmostEqual(c.n, 20000, delta=1e-6 * 20000)

    def test_interpolated_between_lengths(self):
        # 3000 n = 4 n^2 -> n = 750, between 512 and 1024.
        c = self.cross("performer", "full", "memory")
        self.assertEqual((c.kind, c.lo, c.hi), ("crosses", 512, 1024))
        self.assertAlmostEqual(c.n, 750, places=6)

    def test_extrapolated_below(self):
        # 1e-8 n = 5e-10 n^2 -> n = 20: faster at every measured length.
        c = self.cross("local_blocks", "flash", "time")
        self.assertEqual(c.kind, "extrapolated")
        self.assertAlmostEqual(c.n, 20, places=6)
        self.assertIn("below", c.text("time"))

    def test_better_only_at_short_lengths(self):
        # 64 n vs 65536: smaller below n = 1024 only.
        c = self.cross("local_blocks", "flash", "memory")
        self.assertEqual(c.kind, "reverse")
        self.assertAlmostEqual(c.n, 1024, places=6)
        self.assertEqual(c.text("memory"), "smaller only below 1024")

    def test_several_crossings_take_the_last(self):
        # ratio: >1 at 1, <1 at 2, >1 at 4, <1 at 8: last change between 4 and 8.
        c = A.crossover({1: 2.0, 2: 0.5, 4: 2.0, 8: 0.5}, {1: 1.0, 2: 1.0, 4: 1.0, 8: 1.0})
        self.assertEqual((c.kind, c.lo, c.hi, c.changes), ("crosses", 4, 8, 3))
        self.assertAlmostEqual(c.n, 4 * 2 ** 0.5, places=9)  # log-midpoint: log ratios +-log 2

    def test_no_overlap(self):
        self.assertEqual(A.crossover({1: 1.0}, {2: 1.0}).kind, "no-overlap")

    def test_always_better_and_parallel(self):
        # Same slope, always faster: no extrapolated crossing.
        fit = A.fit_exponent(self.get("flash"), "time").fit
        c = A.crossover({n: 0.5 * v for n, v in self.get("flash").values("time").items()},
                        self.get("flash").values("time"), fit, fit)
        self.assertEqual(c.kind, "always")


class Pareto(Fixture):
    def group(self):
        gs = [g for g in A.pareto_groups(self.data.records) if g.workload[0] == "clustered"]
        self.assertEqual(len(gs), 1)
        return gs[0]

    @staticmethod
    def labels(points):
        return [p.label for p in points]

    def test_error_time_frontier(self):
        g = self.group()
        self.assertEqual(g.n, 4096)
        self.assertEqual(self.labels(g.frontier("time")),
                         ["window width=64", "window width=128", "window width=256", "flash"])
        dominated = [p.label for p, d in zip(g.points, g.dominated_time) if d]
        self.assertEqual(sorted(dominated),
                         ["full", "performer features=128", "performer features=64"])

    def test_error_memory_frontier(self):
        g = self.group()
        self.assertEqual(self.labels(g.frontier("memory")),
                         ["performer features=64", "performer features=128", "window width=128",
                          "window width=256", "flash"])
        dominated = [p.label for p, d in zip(g.points, g.dominated_memory) if d]
        self.assertEqual(sorted(dominated), ["full", "window width=64"])

    def test_seeds_combined(self):
        # performer m=64: seeds with times 0.0029 and 0.0031 (median 0.003), errors 0.28 and
        # 0.32 (mean 0.3).
        p = [p for p in self.group().points if p.label == "performer features=64"][0]
        self.assertEqual(len(p.records), 2)
        self.assertAlmostEqual(p.time, 0.003, places=12)
        self.assertAlmostEqual(p.error, 0.3, places=12)

    def test_equal_points_do_not_dominate_each_other(self):
        class P:
            def __init__(self, t, e):
                self.time, self.error = t, e

        pts = [P(1, 1), P(1, 1), P(2, 2), P(0.5, 3), P(None, 1)]
        self.assertEqual(A.dominated_flags(pts, "time"), [False, False, True, False, None])


class Throughput(Fixture):
    def test_gflops_against_gemm(self):
        rows = {(r["record"].variant, r["record"].n, r["record"].threads): r
                for r in A.gflops_rows(self.data.records)
                if r["record"].workload_name == "gaussian"}
        # full: 50 n^2 flops / 1e-9 n^2 s = 50 GFLOP/s = half of the 100 GFLOP/s GEMM.
        self.assertAlmostEqual(rows[("full", 2048, 1)]["gflops"], 50.0, places=9)
        self.assertAlmostEqual(rows[("full", 2048, 1)]["fraction"], 0.5, places=9)
        self.assertAlmostEqual(rows[("flash", 512, 1)]["fraction"], 1.0, places=9)
        # 2 threads: 50 / 0.6 GFLOP/s against the 2-thread GEMM rate of 190.
        self.assertAlmostEqual(rows[("full", 1024, 2)]["fraction"], 50 / 0.6 / 190, places=9)

    def test_thread_scaling(self):
        sc = A.thread_scaling(self.data.records)
        self.assertEqual(len(sc), 1)
        rows = sc[0].rows()
        self.assertEqual([r[0] for r in rows], [1, 2])
        self.assertAlmostEqual(rows[1][2], 1 / 0.6, places=12)  # speedup 5/3
        self.assertAlmostEqual(rows[1][3], 1 / 1.2, places=12)  # efficiency 5/6


class Weights(unittest.TestCase):
    def test_exact_found_from_the_full_record(self):
        run = load_run(_paths.fixture("weights.jsonl"))
        panels, exact_only = A.weight_panels(run.records)
        self.assertEqual(len(panels), 1)
        rec, exact, src = panels[0]
        self.assertEqual((rec.variant, src), ("window", "full"))
        self.assertEqual(len(exact), 8)
        self.assertEqual([r.variant for r in exact_only], ["full"])

    def test_total_variation(self):
        self.assertAlmostEqual(A.total_variation([[1, 0], [0.5, 0.5]], [[0, 1], [0.5, 0.5]]), 0.5)


if __name__ == "__main__":
    unittest.main()
