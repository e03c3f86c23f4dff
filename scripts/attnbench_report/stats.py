"""Statistics without SciPy: Student t quantiles, least squares with confidence intervals, and the
Mann-Whitney U test (exact without ties, normal approximation with tie and continuity corrections).

Only the standard library is used here, so these functions can be checked against hand-computed
values in isolation.
"""

import math

__all__ = [
    "normal_cdf",
    "betainc",
    "student_t_cdf",
    "student_t_quantile",
    "LinearFit",
    "linear_fit",
    "MannWhitney",
    "mann_whitney_u",
    "rank_average",
]


def normal_cdf(z):
    """Standard normal distribution function Phi(z)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _betacf(a, b, x):
    """Continued fraction of the incomplete beta function (modified Lentz method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    if abs(d) < tiny:
        d = tiny
    d = 1.0 / d
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a, b, x):
    """Regularised incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x)
                 + b * math.log1p(-x))
    front = math.exp(log_front)
    # The continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    # I_x(a, b) = 1 - I_{1-x}(b, a) on the other side.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t, df):
    """P(T <= t) for Student's t distribution with df > 0 degrees of freedom."""
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(p, df):
    """The t with P(T <= t) = p, for 0 < p < 1 (closed forms for df = 1 and 2, else bisection)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if df <= 0:
        raise ValueError("degrees of freedom must be positive")
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2.0 * p - 1.0) / math.sqrt(2.0 * p * (1.0 - p))
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-14 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


class LinearFit:
    """Least-squares line y = intercept + slope * x with the slope's confidence interval."""

    def __init__(self, slope, intercept, r2, n, se_slope, ci_low, ci_high, confidence):
        self.slope = slope
        self.intercept = intercept
        self.r2 = r2  # None when undefined
        self.n = n
        self.se_slope = se_slope  # None with fewer than 3 points
        self.ci_low = ci_low  # None with fewer than 3 points
        self.ci_high = ci_high
        self.confidence = confidence

    def predict(self, x):
        return self.intercept + self.slope * x

    def __repr__(self):
        return ("LinearFit(slope=%r, intercept=%r, r2=%r, n=%r, ci=(%r, %r))"
                % (self.slope, self.intercept, self.r2, self.n, self.ci_low, self.ci_high))


def linear_fit(xs, ys, confidence=0.95):
    """Ordinary least squares of ys on xs.

    The slope's interval is slope +- t_{(1+confidence)/2, n-2} * se, se^2 = s^2 / Sxx with
    s^2 = SSR / (n - 2). Needs at least 2 distinct x; the interval needs at least 3 points.
    R^2 = 1 - SSR / SST; when every y is equal (SST = 0) R^2 is 1 if the fit is exact, else None.
    """
    n = len(xs)
    if n != len(ys):
        raise ValueError("xs and ys differ in length")
    if n < 2:
        raise ValueError("a line needs at least 2 points")
    mx = math.fsum(xs) / n
    my = math.fsum(ys) / n
    sxx = math.fsum((x - mx) ** 2 for x in xs)
    if sxx == 0.0:
        raise ValueError("a line needs at least 2 distinct x values")
    sxy = math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys))
    slope = sxy / sxx
    intercept = my - slope * mx
    ssr = math.fsum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys))
    sst = math.fsum((y - my) ** 2 for y in ys)
    # Rounding leaves an SSR of order eps^2 * SST for exact data; call that exact.
    scale = max(sst, math.fsum(y * y for y in ys), 1e-300)
    if ssr <= 1e-24 * scale:
        ssr = 0.0
    if sst > 0.0:
        r2 = 1.0 - ssr / sst
    else:
        r2 = 1.0 if ssr == 0.0 else None
    se = lo = hi = None
    if n >= 3:
        se = math.sqrt(ssr / (n - 2) / sxx)
        t = student_t_quantile(0.5 + confidence / 2.0, n - 2)
        lo, hi = slope - t * se, slope + t * se
    return LinearFit(slope, intercept, r2, n, se, lo, hi, confidence)


def rank_average(values):
    """Ranks 1..n of values, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    return ranks


def _u_distribution(m, n):
    """Counts of U = 0..m*n over the C(m+n, m) orderings of two samples without ties.

    They are the coefficients of the Gaussian binomial [m+n choose m]_q
    = prod_{i=1..m} (1 - q^(n+i)) / (1 - q^i), computed in exact integers.
    """
    deg = m * n
    poly = [0] * (deg + 1)
    poly[0] = 1
    for i in range(1, m + 1):
        k = n + i
        for u in range(deg, k - 1, -1):  # multiply by (1 - q^k)
            poly[u] -= poly[u - k]
        for u in range(i, deg + 1):  # divide by (1 - q^i): exact, the quotient is a polynomial
            poly[u] += poly[u - i]
    return poly


class MannWhitney:
    def __init__(self, u1, u2, p, method, n1, n2, min_p):
        self.u1 = u1  # U of the first sample: pairs (x, y) with x > y, ties counting 1/2
        self.u2 = u2  # n1 * n2 - u1
        self.p = p
        self.method = method  # "exact" or "normal"
        self.n1 = n1
        self.n2 = n2
        self.min_p = min_p  # the smallest p attainable with these sample sizes (exact only)

    def __repr__(self):
        return ("MannWhitney(u1=%r, u2=%r, p=%r, method=%r)"
                % (self.u1, self.u2, self.p, self.method))


def mann_whitney_u(x, y, alternative="two-sided", method="auto"):
    """Mann-Whitney U test of sample x against sample y.

    alternative: "two-sided", "greater" (x tends to be larger than y) or "less".
    method: "exact" (no ties allowed), "normal" (with tie correction of the variance and a 0.5
    continuity correction), or "auto": exact when there are no ties and n1 + n2 <= 100.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError("alternative must be two-sided, greater or less")
    values = list(x) + list(y)
    ranks = rank_average(values)
    r1 = math.fsum(ranks[:n1])
    u1 = r1 - n1 * (n1 + 1) / 2.0
    u2 = n1 * n2 - u1
    has_ties = len(set(values)) < len(values)
    if method == "auto":
        method = "exact" if (not has_ties and n1 + n2 <= 100) else "normal"
    if method == "exact":
        if has_ties:
            raise ValueError("the exact test needs samples without ties")
        counts = _u_distribution(n1, n2)
        total = sum(counts)
        k = int(round(u1))
        p_le = sum(counts[: k + 1]) / total  # P(U <= u1)
        p_ge = sum(counts[k:]) / total  # P(U >= u1)
        if alternative == "greater":
            p = p_ge
        elif alternative == "less":
            p = p_le
        else:
            p = min(1.0, 2.0 * min(p_le, p_ge))
        extreme = counts[0] / total
        min_p = extreme if alternative != "two-sided" else min(1.0, 2.0 * extreme)
        return MannWhitney(u1, u2, p, "exact", n1, n2, min_p)
    if method != "normal":
        raise ValueError("method must be auto, exact or normal")
    n = n1 + n2
    mu = n1 * n2 / 2.0
    tie_sum = 0.0
    for v in set(values):
        t = values.count(v)
        tie_sum += t ** 3 - t
    var = n1 * n2 / 12.0 * ((n + 1) - tie_sum / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0.0:  # every value equal: no evidence either way
        return MannWhitney(u1, u2, 1.0, "normal", n1, n2, None)
    sd = math.sqrt(var)
    if alternative == "two-sided":
        z = max(0.0, abs(u1 - mu) - 0.5) / sd
        p = min(1.0, 2.0 * (1.0 - normal_cdf(z)))
    elif alternative == "greater":
        p = 1.0 - normal_cdf((u1 - mu - 0.5) / sd)
    else:
        p = normal_cdf((u1 - mu + 0.5) / sd)
    return MannWhitney(u1, u2, p, "normal", n1, n2, None)
