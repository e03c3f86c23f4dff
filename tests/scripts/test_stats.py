"""Statistics of the report scripts against hand-computed and tabulated values."""

import itertools
import math
import unittest

import _paths  # noqa: F401  (puts scripts/ on sys.path)
from attnbench_report import stats


class StudentT(unittest.TestCase):
    def test_quantiles_match_the_printed_table(self):
        # Two-sided 95% critical values from any t table.
        table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 20: 2.086,
                 30: 2.042, 120: 1.980}
        for df, t in table.items():
            self.assertAlmostEqual(stats.student_t_quantile(0.975, df), t, places=3, msg=df)

    def test_symmetry_and_median(self):
        self.assertAlmostEqual(stats.student_t_quantile(0.025, 7),
                               -stats.student_t_quantile(0.975, 7), places=12)
        self.assertAlmostEqual(stats.student_t_cdf(0.0, 7), 0.5, places=15)

    def test_cdf_inverts_quantile(self):
        for df in (1, 3, 8, 50):
            for p in (0.6, 0.9, 0.995):
                self.assertAlmostEqual(stats.student_t_cdf(stats.student_t_quantile(p, df), df), p,
                                       places=10)

    def test_df1_is_cauchy(self):
        self.assertAlmostEqual(stats.student_t_cdf(1.0, 1), 0.75, places=12)

    def test_incomplete_beta_by_binomial_sum(self):
        # I_0.4(2, 3) = P(Binomial(4, 0.4) >= 2) = 6(.4^2)(.6^2) + 4(.4^3)(.6) + .4^4 = 0.5248
        self.assertAlmostEqual(stats.betainc(2, 3, 0.4), 0.5248, places=12)


class LinearFitTest(unittest.TestCase):
    def test_exact_power_law_has_slope_2_and_r2_1(self):
        xs = [math.log(n) for n in (256, 512, 1024, 2048)]
        ys = [math.log(3e-9 * math.exp(2 * x)) for x in xs]
        fit = stats.linear_fit(xs, ys)
        self.assertAlmostEqual(fit.slope, 2.0, places=12)
        self.assertEqual(fit.r2, 1.0)
        self.assertAlmostEqual(fit.ci_low, 2.0, places=9)
        self.assertAlmostEqual(fit.ci_high, 2.0, places=9)

    def test_hand_computed_noisy_line(self):
        # x = 0, 1, 2; y = 0, 1, 3: Sxx = 2, Sxy = 3 -> slope 1.5, intercept 4/3 - 1.5 = -1/6.
        # Residuals 1/6, -1/3, 1/6: SSR = 1/6; SST = 42/9 -> R^2 = 1 - 9/252 = 27/28.
        # s^2 = SSR / 1 = 1/6, se = sqrt(s^2 / Sxx) = sqrt(1/12); t(0.975, 1) = 12.7062.
        fit = stats.linear_fit([0, 1, 2], [0, 1, 3])
        self.assertAlmostEqual(fit.slope, 1.5, places=12)
        self.assertAlmostEqual(fit.intercept, -1 / 6, places=12)
        self.assertAlmostEqual(fit.r2, 27 / 28, places=12)
        self.assertAlmostEqual(fit.se_slope, math.sqrt(1 / 12), places=12)
        half = 12.706204736 * math.sqrt(1 / 12)
        self.assertAlmostEqual(fit.ci_low, 1.5 - half, places=6)
        self.assertAlmostEqual(fit.ci_high, 1.5 + half, places=6)

    def test_two_points_have_no_interval(self):
        fit = stats.linear_fit([0, 1], [1, 3])
        self.assertEqual(fit.slope, 2.0)
        self.assertIsNone(fit.ci_low)

    def test_constant_is_an_exact_fit(self):
        fit = stats.linear_fit([1, 2, 3], [5, 5, 5])
        self.assertEqual(fit.slope, 0.0)
        self.assertEqual(fit.r2, 1.0)

    def test_rejects_one_distinct_x(self):
        with self.assertRaises(ValueError):
            stats.linear_fit([1, 1], [1, 2])


def brute_force_p(x, y):
    """Two-sided exact p by enumerating every split of the pooled sample."""
    pooled = list(x) + list(y)
    n1 = len(x)

    def u(a, b):
        return sum((ai > bj) + 0.5 * (ai == bj) for ai in a for bj in b)

    u_obs = u(x, y)
    mu = n1 * len(y) / 2
    count = total = 0
    for idx in itertools.combinations(range(len(pooled)), n1):
        a = [pooled[i] for i in idx]
        b = [pooled[i] for i in range(len(pooled)) if i not in idx]
        total += 1
        count += abs(u(a, b) - mu) >= abs(u_obs - mu) - 1e-12
    return count / total


class MannWhitneyTest(unittest.TestCase):
    def test_separated_samples_of_three(self):
        # U = 0; of the C(6,3) = 20 orderings one has U = 0 and one U = 9: p = 2/20.
        r = stats.mann_whitney_u([1, 2, 3], [4, 5, 6])
        self.assertEqual((r.u1, r.u2), (0.0, 9.0))
        self.assertEqual(r.method, "exact")
        self.assertAlmostEqual(r.p, 0.1, places=15)
        self.assertAlmostEqual(r.min_p, 0.1, places=15)
        self.assertAlmostEqual(stats.mann_whitney_u([1, 2, 3], [4, 5, 6], "less").p, 0.05)
        self.assertAlmostEqual(stats.mann_whitney_u([1, 2, 3], [4, 5, 6], "greater").p, 1.0)

    def test_separated_samples_of_five(self):
        # p = 2 / C(10, 5) = 2/252.
        r = stats.mann_whitney_u([6, 7, 8, 9, 10], [1, 2, 3, 4, 5])
        self.assertEqual(r.u1, 25.0)
        self.assertAlmostEqual(r.p, 2 / 252, places=15)

    def test_exact_distribution_of_3_and_3(self):
        self.assertEqual(stats._u_distribution(3, 3), [1, 1, 2, 3, 3, 3, 3, 2, 1, 1])

    def test_exact_p_equals_enumeration(self):
        x = [0.95, 1.05, 1.5, 1.6, 1.7]
        y = [1.0, 1.1, 1.2, 1.3, 1.4]
        r = stats.mann_whitney_u(x, y)
        self.assertEqual(r.u1, 16.0)  # 0 + 1 + 5 + 5 + 5 pairs with x > y
        self.assertAlmostEqual(r.p, brute_force_p(x, y), places=12)
        x, y = [3.1, 0.2, 5.5, 2.2], [1.0, 4.0, 0.5, 0.7, 6.0, 0.1]
        self.assertAlmostEqual(stats.mann_whitney_u(x, y).p, brute_force_p(x, y), places=12)

    def test_normal_approximation_with_ties_by_hand(self):
        # Pooled 1,2,2,3 | 2,3,4,5: ranks 1; 2,2,2 -> 3; 3,3 -> 5.5; 4 -> 7; 5 -> 8.
        # R1 = 1 + 3 + 3 + 5.5 = 12.5, U1 = 12.5 - 10 = 2.5. mu = 8.
        # Ties: t = 3 and t = 2: sum(t^3 - t) = 24 + 6 = 30.
        # var = (16/12) (9 - 30/56) = 11.2857...; z = (|2.5 - 8| - 0.5) / sqrt(var).
        r = stats.mann_whitney_u([1, 2, 2, 3], [2, 3, 4, 5])
        self.assertEqual(r.u1, 2.5)
        self.assertEqual(r.method, "normal")
        var = 16 / 12 * (9 - 30 / 56)
        z = 5.0 / math.sqrt(var)
        self.assertAlmostEqual(r.p, math.erfc(z / math.sqrt(2)), places=12)
        self.assertAlmostEqual(r.p, 0.1367, places=4)

    def test_all_equal_gives_p_1(self):
        self.assertEqual(stats.mann_whitney_u([1, 1, 1], [1, 1]).p, 1.0)

    def test_exact_refuses_ties(self):
        with self.assertRaises(ValueError):
            stats.mann_whitney_u([1, 2], [2, 3], method="exact")


if __name__ == "__main__":
    unittest.main()
