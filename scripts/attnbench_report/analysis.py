"""The numbers of a report: scaling series, fitted exponents, crossover lengths, Pareto frontiers,
achieved GFLOP/s and thread scaling. Pure functions of the loaded records (no plotting here).

A *series* is one variant with one parameter setting (as written in the spec, so auto values that
depend on the length do not split it), on one machine, workload, shape (batch, heads, d, d_v,
causal, key padding) and thread count, over the measured lengths. Several seeds at one length are
combined: the median of their median times and memories, the mean of their errors.
"""

import math
import statistics

from .load import canonical, finite
from .stats import linear_fit

EXACT_BASELINES = ("flash", "full")


def params_text(params):
    if not params:
        return ""
    return ",".join("%s=%s" % (k, _value_text(params[k])) for k in sorted(params))


def _value_text(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isfinite(v) and v == int(v) and abs(v) < 1e15:
        return str(int(v))
    if isinstance(v, list):
        return "[" + " ".join(_value_text(x) for x in v) + "]"
    return str(v)


def params_sort_key(params):
    """Orders parameter settings naturally: width=64 before width=128."""
    key = []
    for k in sorted(params):
        v = params[k]
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            key.append((k, 0, float(v), ""))
        else:
            key.append((k, 1, 0.0, canonical(v)))
    return tuple(key)


def workload_text(name, params):
    p = params_text(params)
    return "%s(%s)" % (name, p) if p else (name or "?")


def shape_text(shape):
    batch, heads, d, d_v, causal, key_padding, ratio = shape
    parts = ["b=%s" % batch, "h=%s" % heads, "d=%s" % d]
    if d_v is not None and d_v != d:
        parts.append("d_v=%s" % d_v)
    parts.append("causal" if causal else "non-causal")
    if key_padding:
        parts.append("key padding")
    if ratio != "1":
        parts.append("n_q/n_k=%s" % ratio)
    return " ".join(parts)


class Point:
    def __init__(self, n, records, error_metric, memory_field):
        self.n = n
        self.records = records
        times = [r.time for r in records if finite(r.time)]
        mems = [r.memory(memory_field) for r in records if finite(r.memory(memory_field))]
        errs = [r.error(error_metric) for r in records if finite(r.error(error_metric))]
        self.time = statistics.median(times) if times else None
        self.memory = statistics.median(mems) if mems else None
        self.error = statistics.fmean(errs) if errs else None
        self.error_std = statistics.stdev(errs) if len(errs) > 1 else None
        self.seeds = len(records)


class Series:
    def __init__(self, key, records, error_metric, memory_field):
        (self.machine, self.variant, _, self.workload, self.shape, self.threads) = key
        self.key = key
        first = records[0]
        self.spec_params = first.spec_params
        self.workload_name, _ = first.workload_key()
        self.workload_params = first.workload_params
        self.family = first.family
        self.theory_time, self.theory_memory = first.theory()
        by_n = {}
        for r in records:
            by_n.setdefault(r.n, []).append(r)
        self.points = [Point(n, by_n[n], error_metric, memory_field) for n in sorted(by_n)]

    @property
    def label(self):
        p = params_text(self.spec_params)
        return "%s %s" % (self.variant, p) if p else self.variant

    def values(self, metric):
        """{n: value} of the points with a positive finite value of metric (time | memory)."""
        out = {}
        for p in self.points:
            v = getattr(p, metric)
            if finite(v) and v > 0:
                out[p.n] = v
        return out

    def nonpositive(self, metric):
        vals = [(p.n, getattr(p, metric)) for p in self.points]
        return [n for n, v in vals if v is not None and v <= 0]

    def context_key(self):
        """What a baseline must share with this series."""
        return (self.machine, self.workload, self.shape, self.threads)


def build_series(records, error_metric="rel_fro", memory_field="peak"):
    """Series of the measured (status ok, with a time) records, in a stable order."""
    groups = {}
    for r in records:
        if r.status != "ok" or not finite(r.time) or r.n is None:
            continue
        key = (r.machine_id, r.variant, canonical(r.spec_params), r.workload_key(), r.shape_key(),
               r.threads)
        groups.setdefault(key, []).append(r)
    series = [Series(k, v, error_metric, memory_field) for k, v in groups.items()]
    series.sort(key=lambda s: (s.workload, _sortable(s.shape), s.threads or 0, s.machine,
                               _variant_order(s), s.variant, params_sort_key(s.spec_params)))
    return series


def _sortable(t):
    return tuple("" if x is None else str(x) for x in t)


def _variant_order(s):
    # Exact attention first, then by family.
    if s.variant in EXACT_BASELINES:
        return (0, EXACT_BASELINES.index(s.variant))
    return (1, s.family or "~")


# Exponents --------------------------------------------------------------------------------------
class ExponentFit:
    def __init__(self, series, metric, fit, n_lo, n_hi, excluded, reason=None):
        self.series = series
        self.metric = metric
        self.fit = fit  # LinearFit of log v on log n, or None
        self.n_lo = n_lo
        self.n_hi = n_hi
        self.excluded = excluded  # lengths left out (outside the fit range, or value <= 0)
        self.reason = reason  # why there is no fit

    @property
    def slope(self):
        return self.fit.slope if self.fit else None

    def predict_log(self, n):
        return self.fit.predict(math.log(n))


def fit_exponent(series, metric, fit_min=None, fit_max=None, confidence=0.95):
    """Slope of log(metric) against log(n) over the points within [fit_min, fit_max]."""
    vals = series.values(metric)
    excluded = [n for n in vals if (fit_min and n < fit_min) or (fit_max and n > fit_max)]
    excluded += series.nonpositive(metric)
    pts = sorted((n, v) for n, v in vals.items() if n not in excluded)
    if len(pts) < 2:
        reason = "1 length" if len(pts) == 1 else "no lengths"
        if metric == "memory" and series.nonpositive(metric):
            reason += " (memory 0 excluded)"
        return ExponentFit(series, metric, None, pts[0][0] if pts else None,
                           pts[-1][0] if pts else None, sorted(excluded), reason)
    fit = linear_fit([math.log(n) for n, _ in pts], [math.log(v) for _, v in pts], confidence)
    return ExponentFit(series, metric, fit, pts[0][0], pts[-1][0], sorted(excluded))


# Crossovers -------------------------------------------------------------------------------------
class Crossover:
    """Where a series becomes faster (or smaller) than a baseline.

    kind: "crosses" (sign change within the measured range, interpolated in log-log between the
    two lengths around it), "extrapolated" (no change in range; the fitted power laws meet
    outside it), "always" (better at every common length), "never" (worse at every common length
    and not growing slower), "reverse" (better at short lengths only: n is where it stops being
    better), "no-overlap" (no common lengths).
    """

    def __init__(self, kind, n=None, lo=None, hi=None, changes=0, common=()):
        self.kind = kind
        self.n = n
        self.lo = lo
        self.hi = hi
        self.changes = changes
        self.common = tuple(common)

    def text(self, metric):
        better = "faster" if metric == "time" else "smaller"
        if self.kind == "crosses":
            s = "%s (between %s and %s)" % (fmt_n(self.n), fmt_n(self.lo), fmt_n(self.hi))
            if abs(self.n - self.lo) <= 1e-9 * self.lo:
                s = "%s (equal there)" % fmt_n(self.n)
            if self.changes > 1:
                s += "; crosses %d times, last shown" % self.changes
            return s
        if self.kind == "extrapolated":
            side = "above" if self.n > self.common[-1] else "below"
            return "≈%s (extrapolated %s the measured %s–%s)" % (
                fmt_n(self.n), side, fmt_n(self.common[0]), fmt_n(self.common[-1]))
        if self.kind == "always" and len(self.common) == 1:
            return "%s at the one common length (%s)" % (better, fmt_n(self.common[0]))
        if self.kind == "never" and len(self.common) == 1:
            return "not %s at the one common length (%s)" % (better, fmt_n(self.common[0]))
        if self.kind == "always":
            return "%s at every measured length (%s–%s)" % (
                better, fmt_n(self.common[0]), fmt_n(self.common[-1]))
        if self.kind == "never":
            return "none in range (%s–%s)" % (fmt_n(self.common[0]), fmt_n(self.common[-1]))
        if self.kind == "reverse":
            return "%s only below %s" % (better, fmt_n(self.n))
        return "no common lengths"


def fmt_n(n):
    if n is None:
        return "–"
    if abs(n - round(n)) < 1e-6 * max(1.0, abs(n)):
        return str(int(round(n)))
    if n >= 100:
        return str(int(round(n)))
    return "%.3g" % n


def _intersect(lo_n, hi_n, d_lo, d_hi):
    """Where d (log-ratio, linear in log n between the two lengths) is zero."""
    if d_lo == d_hi:
        return lo_n
    t = d_lo / (d_lo - d_hi)
    return math.exp(math.log(lo_n) + t * (math.log(hi_n) - math.log(lo_n)))


def crossover(values, base_values, fit=None, base_fit=None):
    """values, base_values: {n: metric} of the series and the baseline; fits for extrapolation.

    d(n) = log(v / base); "better" means d < 0. The crossover is where the series becomes (and
    stays, within the range) better: between the last common length where it is not better and
    the next one. Between measured lengths both curves are taken as straight lines in log-log,
    so d is linear in log n and the crossing is exact for power laws.
    """
    common = sorted(set(values) & set(base_values))
    if not common:
        return Crossover("no-overlap")
    d = [math.log(values[n]) - math.log(base_values[n]) for n in common]
    better = [x < 0 for x in d]
    changes = sum(1 for a, b in zip(better, better[1:]) if a != b)
    if better[-1]:
        not_better = [i for i, b in enumerate(better) if not b]
        if not_better:
            j = not_better[-1]
            n = _intersect(common[j], common[j + 1], d[j], d[j + 1])
            return Crossover("crosses", n, common[j], common[j + 1], changes, common)
        n = _fit_meeting(fit, base_fit)
        if n is not None and n < common[0] and fit.slope < base_fit.slope:
            return Crossover("extrapolated", n, changes=changes, common=common)
        return Crossover("always", changes=changes, common=common)
    was_better = [i for i, b in enumerate(better) if b]
    if was_better:
        j = was_better[-1]
        n = _intersect(common[j], common[j + 1], d[j], d[j + 1])
        return Crossover("reverse", n, common[j], common[j + 1], changes, common)
    n = _fit_meeting(fit, base_fit)
    if n is not None and n > common[-1] and fit.slope < base_fit.slope:
        return Crossover("extrapolated", n, changes=changes, common=common)
    return Crossover("never", changes=changes, common=common)


def _fit_meeting(fit, base_fit):
    """n where the two fitted power laws are equal, or None."""
    if fit is None or base_fit is None or fit.slope == base_fit.slope:
        return None
    log_n = (base_fit.intercept - fit.intercept) / (fit.slope - base_fit.slope)
    if log_n > 700 or log_n < -700:
        return None
    return math.exp(log_n)


def pick_baseline(series_list, variant, context_key):
    """The baseline series of `variant` sharing machine, workload, shape and threads: the one
    with default (empty) spec parameters if any, else the one with the most lengths."""
    cands = [s for s in series_list if s.variant == variant and s.context_key() == context_key]
    if not cands:
        return None
    cands.sort(key=lambda s: (bool(s.spec_params), -len(s.points), s.key[2]))
    return cands[0]


# Pareto frontiers -------------------------------------------------------------------------------
class ParetoPoint:
    def __init__(self, variant, spec_params, params, cost_time, cost_memory, error, records):
        self.variant = variant
        self.spec_params = spec_params
        self.params = params
        self.time = cost_time
        self.memory = cost_memory
        self.error = error
        self.records = records
        self.family = records[0].family

    @property
    def label(self):
        p = params_text(self.spec_params)
        return "%s %s" % (self.variant, p) if p else self.variant


def dominated_flags(points, cost):
    """For each point, whether another point is at least as good in both cost and error and
    strictly better in one. Points without a cost or error are None."""
    flags = []
    for p in points:
        pc = getattr(p, cost)
        if not (finite(pc) and finite(p.error)):
            flags.append(None)
            continue
        dom = False
        for q in points:
            qc = getattr(q, cost)
            if q is p or not (finite(qc) and finite(q.error)):
                continue
            if qc <= pc and q.error <= p.error and (qc < pc or q.error < p.error):
                dom = True
                break
        flags.append(dom)
    return flags


class ParetoGroup:
    def __init__(self, key, points):
        self.machine, self.n, self.workload, self.shape, self.threads = key
        self.key = key
        self.points = points
        self.dominated_time = dominated_flags(points, "time")
        self.dominated_memory = dominated_flags(points, "memory")

    def frontier(self, cost):
        flags = self.dominated_time if cost == "time" else self.dominated_memory
        front = [p for p, f in zip(self.points, flags) if f is False]
        return sorted(front, key=lambda p: (getattr(p, cost), p.error))

    @property
    def workload_name(self):
        return self.points[0].records[0].workload_name

    @property
    def workload_params(self):
        return self.points[0].records[0].workload_params


def pareto_groups(records, error_metric="rel_fro", memory_field="peak", min_points=2):
    """Per (machine, length, workload, shape, threads): every measured configuration (variants and
    their parameter grids, seeds combined) with its time, memory and error."""
    groups = {}
    for r in records:
        if r.status != "ok" or not finite(r.time) or r.n is None:
            continue
        gkey = (r.machine_id, r.n, r.workload_key(), r.shape_key(), r.threads)
        pkey = (r.variant, canonical(r.params))
        groups.setdefault(gkey, {}).setdefault(pkey, []).append(r)
    out = []
    for gkey, by_cfg in groups.items():
        pts = []
        for (variant, _), recs in by_cfg.items():
            times = [r.time for r in recs if finite(r.time)]
            mems = [r.memory(memory_field) for r in recs if finite(r.memory(memory_field))]
            errs = [r.error(error_metric) for r in recs if finite(r.error(error_metric))]
            pts.append(ParetoPoint(variant, recs[0].spec_params, recs[0].params,
                                   statistics.median(times) if times else None,
                                   statistics.median(mems) if mems else None,
                                   statistics.fmean(errs) if errs else None, recs))
        pts.sort(key=lambda p: (p.variant, params_sort_key(p.spec_params), canonical(p.params)))
        if len(pts) >= min_points:
            out.append(ParetoGroup(gkey, pts))
    out.sort(key=lambda g: (g.workload, _sortable(g.shape), g.threads or 0, g.machine, g.n))
    return out


# Throughput and threads -------------------------------------------------------------------------
def gflops_rows(records):
    """Achieved GFLOP/s of every measured record against the GEMM rate at its thread count."""
    rows = []
    for r in records:
        if r.status != "ok" or not finite(r.time):
            continue
        g = r.gflops
        gemm = r.context.gemm_rate(r.threads)
        rows.append({
            "record": r,
            "gflops": g,
            "gemm": gemm,
            "fraction": (g / gemm) if (finite(g) and gemm) else None,
        })
    return rows


class ThreadScaling:
    def __init__(self, records_by_threads):
        self.by_threads = dict(sorted(records_by_threads.items()))
        self.base_threads = min(self.by_threads)
        self.base_time = self.by_threads[self.base_threads].time
        first = self.by_threads[self.base_threads]
        self.record = first

    def rows(self):
        out = []
        for t, r in self.by_threads.items():
            speedup = self.base_time / r.time
            eff = speedup / (t / self.base_threads)
            out.append((t, r.time, speedup, eff))
        return out


def thread_scaling(records):
    """Configurations measured at several thread counts: speedup over the smallest count and
    efficiency = speedup / (threads / smallest threads)."""
    groups = {}
    for r in records:
        if r.status != "ok" or not finite(r.time) or r.time <= 0 or r.threads is None:
            continue
        key = (r.machine_id, r.variant, canonical(r.params), r.workload_key(), r.shape_key(),
               r.n, r.seed)
        groups.setdefault(key, {})[r.threads] = r
    out = [ThreadScaling(g) for g in groups.values() if len(g) > 1]
    out.sort(key=lambda s: (s.record.workload_key(), _sortable(s.record.shape_key()),
                            s.record.variant, canonical(s.record.params), s.record.n))
    return out


# Attention weights ------------------------------------------------------------------------------
def weight_panels(records):
    """(record, exact matrix or None, exact source) for every record carrying `weights`.

    The exact weights come from the record's own weights.exact, else from an exact variant's
    record (full, then flash, then any exact-family variant) with weights on the same machine,
    workload, shape, length and seed, and the same rows and columns."""
    with_w = [r for r in records if r.weights is not None]
    out = []
    for r in with_w:
        if r.variant in EXACT_BASELINES or r.family == "exact":
            continue
        w = r.weights
        if w.get("exact") is not None:
            out.append((r, w["exact"], "weights.exact"))
            continue
        src = None
        for cand_variant in EXACT_BASELINES + (None,):
            for e in with_w:
                if e is r or (cand_variant and e.variant != cand_variant):
                    continue
                if cand_variant is None and e.family != "exact":
                    continue
                same = (e.machine_id == r.machine_id and e.workload_key() == r.workload_key()
                        and e.shape_key() == r.shape_key() and e.n == r.n and e.seed == r.seed
                        and _same_entries(e.weights, w))
                if same:
                    src = e
                    break
            if src:
                break
        out.append((r, src.weights["values"] if src else None, src.variant if src else None))
    exact_only = [r for r in with_w if (r.variant in EXACT_BASELINES or r.family == "exact")]
    return out, exact_only


def _same_entries(a, b):
    for key in ("batch", "head", "rows", "cols"):
        if a.get(key) != b.get(key):
            return False
    return (len(a["values"]) == len(b["values"]) and len(a["values"][0]) == len(b["values"][0]))


def total_variation(p, q):
    """Mean over rows of 1/2 sum_j |p_ij - q_ij|."""
    tv = [0.5 * math.fsum(abs(x - y) for x, y in zip(pr, qr)) for pr, qr in zip(p, q)]
    return statistics.fmean(tv)
