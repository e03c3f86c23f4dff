"""scripts/compare: diff two attnbench runs configuration by configuration, as a regression gate.

For each configuration in both runs (matched by config_id, else by variant, resolved parameters,
shape, workload, seed and threads): the ratio of median times B/A with a two-sided Mann-Whitney U
test on the per-repetition times, and the memory and error deltas. Exit status: 0 when nothing
regressed, 1 when a configuration is slower than --threshold times A with p < --alpha (or was
measured in A and failed in B), 2 on bad input.
"""

import argparse
import csv
import os
import sys

from .analysis import params_text, workload_text
from .fmt import fmt_bytes, fmt_num, fmt_time
from .load import InputError, dedupe, finite, identity_key, load_run, warn
from .stats import mann_whitney_u


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="scripts/compare",
        description="Compare two attnbench results files (A = baseline, B = candidate). Exit 1 "
                    "when a configuration regresses beyond the threshold with significance.")
    ap.add_argument("a", metavar="A.jsonl", help="baseline run")
    ap.add_argument("b", metavar="B.jsonl", help="candidate run")
    ap.add_argument("--threshold", type=float, default=1.10,
                    help="time ratio B/A above which a significant slowdown is a regression "
                         "(default 1.10)")
    ap.add_argument("--alpha", type=float, default=0.05,
                    help="significance level of the two-sided Mann-Whitney U test (default 0.05)")
    ap.add_argument("--csv", metavar="FILE", help="also write the comparison as CSV")
    ap.add_argument("--error-metric", default="rel_fro", metavar="NAME",
                    help="error field compared (default rel_fro)")
    args = ap.parse_args(argv)
    if not args.threshold > 0:
        ap.error("--threshold must be positive")
    if not 0 < args.alpha < 1:
        ap.error("--alpha must be in (0, 1)")
    return args


class Row:
    def __init__(self, a, b):
        self.a = a
        self.b = b
        self.ratio = None
        self.test = None
        self.verdict = ""
        self.regression = False
        self.note = ""


def match(recs_a, recs_b):
    """Pairs (a, b), then the records only in A and only in B."""
    by_id_b = {r.config_id: r for r in recs_b if r.config_id}
    by_key_b = {}
    for r in recs_b:
        by_key_b.setdefault(identity_key(r), r)
    used = set()
    pairs, only_a = [], []
    for a in recs_a:
        b = by_id_b.get(a.config_id) if a.config_id else None
        if b is None or id(b) in used:
            b = by_key_b.get(identity_key(a))
            if b is not None and id(b) in used:
                b = None
        if b is None:
            only_a.append(a)
        else:
            used.add(id(b))
            pairs.append((a, b))
    only_b = [r for r in recs_b if id(r) not in used]
    return pairs, only_a, only_b


def assess(a, b, threshold, alpha):
    row = Row(a, b)
    a_ok = a.status == "ok" and finite(a.time)
    b_ok = b.status == "ok" and finite(b.time)
    if a_ok and not b_ok:
        row.verdict = "REGRESSION: %s in B" % b.status
        row.note = b.message
        row.regression = True
        return row
    if not a_ok and b_ok:
        row.verdict = "fixed: %s in A, ok in B" % a.status
        return row
    if not a_ok and not b_ok:
        row.verdict = "not measured (A %s, B %s)" % (a.status, b.status)
        return row
    row.ratio = b.time / a.time if a.time > 0 else None
    ra, rb = a.repetitions, b.repetitions
    if len(ra) >= 2 and len(rb) >= 2:
        row.test = mann_whitney_u(rb, ra)
    if row.ratio is None:
        row.verdict = "A time is 0"
        return row
    significant = row.test is not None and row.test.p < alpha
    if row.ratio > threshold:
        if significant:
            row.verdict = "REGRESSION"
            row.regression = True
        elif row.test is None:
            row.verdict = "slower, untested (fewer than 2 repetitions)"
        else:
            row.verdict = "slower, not significant"
            if row.test.min_p is not None and row.test.min_p >= alpha:
                row.note = ("%d vs %d repetitions cannot reach p < %g (smallest p %.3g)"
                            % (len(ra), len(rb), alpha, row.test.min_p))
    elif row.ratio < 1.0 / threshold:
        row.verdict = "faster" if significant else "faster, not significant"
    else:
        row.verdict = "within threshold"
    return row


def describe(r):
    p = params_text(r.spec_params)
    s = r.variant + (" " + p if p else "")
    batch, heads, d, d_v, causal, key_padding, ratio = r.shape_key()
    s += " n=%s %s b%sh%sd%s" % (r.n, workload_text(r.workload_name, r.workload_params), batch,
                                 heads, d)
    if d_v is not None and d_v != d:
        s += "dv%s" % d_v
    if ratio != "1":
        s += " n_q/n_k=%s" % ratio
    if causal:
        s += " causal"
    if key_padding:
        s += " padded"
    return s + " t=%s seed=%s" % (r.threads, r.seed)


def _delta(a, b, fmt):
    if a is None and b is None:
        return "–"
    if a is None or b is None:
        return "%s → %s" % (fmt(a), fmt(b))
    return "%s → %s" % (fmt(a), fmt(b))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        run_a = load_run(args.a)
        run_b = load_run(args.b)
        return compare(run_a, run_b, args)
    except InputError as e:
        print("scripts/compare: error: %s" % e, file=sys.stderr)
        return 2
    except OSError as e:
        print("scripts/compare: error: %s" % e, file=sys.stderr)
        return 2
    except Exception as e:  # never a traceback for users
        if os.environ.get("ATTNBENCH_REPORT_DEBUG"):
            raise
        print("scripts/compare: internal error (%s: %s); please report it with the input files"
              % (type(e).__name__, e), file=sys.stderr)
        return 3


def compare(run_a, run_b, args):
    ca, cb = run_a.context, run_b.context
    if ca.machine_id != cb.machine_id:
        warn("A and B come from different machines (%s, %s): time ratios compare machines as "
             "well as code" % (ca.machine_id, cb.machine_id))
    recs_a, recs_b = dedupe(run_a.records), dedupe(run_b.records)
    pairs, only_a, only_b = match(recs_a, recs_b)
    if not pairs:
        print("scripts/compare: error: no configuration of %s matches one of %s"
              % (args.a, args.b), file=sys.stderr)
        return 2
    rows = [assess(a, b, args.threshold, args.alpha) for a, b in pairs]
    em = args.error_metric
    print("A: %s (commit %s, machine %s)" % (args.a, ca.get("git_commit", "?"), ca.machine_id))
    print("B: %s (commit %s, machine %s)" % (args.b, cb.get("git_commit", "?"), cb.machine_id))
    print("time ratio = median B / median A; p = two-sided Mann-Whitney U on the repetitions; "
          "regression: ratio > %g and p < %g" % (args.threshold, args.alpha))
    print()
    table = [["configuration", "time A", "time B", "B/A", "p", "memory A → B",
              em + " A → B", "verdict"]]
    for row in rows:
        a, b = row.a, row.b
        p = "–"
        if row.test is not None:
            p = "%.3g" % row.test.p
        table.append([describe(a), fmt_time(a.time), fmt_time(b.time),
                      "%.3f" % row.ratio if row.ratio is not None else "–", p,
                      _delta(a.memory(), b.memory(), fmt_bytes),
                      _delta(a.error(em), b.error(em), fmt_num),
                      row.verdict + (" (%s)" % row.note if row.note else "")])
    _print_table(table)
    for r in only_a:
        print("only in A: %s [%s]" % (describe(r), r.status))
    for r in only_b:
        print("only in B: %s [%s]" % (describe(r), r.status))
    untested = [r for r in rows if r.ratio is not None and r.ratio > args.threshold
                and r.test is None]
    if untested:
        warn("%d configuration(s) slower beyond the threshold could not be tested (fewer than 2 "
             "repetitions); they do not fail the gate" % len(untested))
    regressions = [r for r in rows if r.regression]
    if args.csv:
        write_csv(args.csv, rows, only_a, only_b, em)
    print()
    print("%d configuration(s) compared, %d regression(s) (threshold %g, alpha %g); "
          "%d only in A, %d only in B"
          % (len(rows), len(regressions), args.threshold, args.alpha, len(only_a), len(only_b)))
    return 1 if regressions else 0


def _print_table(table):
    widths = [max(len(str(r[i])) for r in table) for i in range(len(table[0]))]
    for k, r in enumerate(table):
        print("  ".join(str(c).ljust(w) if i in (0, len(r) - 1) else str(c).rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def write_csv(path, rows, only_a, only_b, em):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["config_id", "configuration", "status_a", "status_b", "time_a", "time_b",
                    "ratio", "u_b", "p", "test", "memory_a", "memory_b", em + "_a", em + "_b",
                    "verdict", "regression"])
        for row in rows:
            a, b, t = row.a, row.b, row.test
            w.writerow([a.config_id or "", describe(a), a.status, b.status, _c(a.time), _c(b.time),
                        _c(row.ratio), _c(t.u1 if t else None), _c(t.p if t else None),
                        t.method if t else "", _c(a.memory()), _c(b.memory()), _c(a.error(em)),
                        _c(b.error(em)), row.verdict, int(row.regression)])
        for r in only_a:
            w.writerow([r.config_id or "", describe(r), r.status, "", _c(r.time), "", "", "", "",
                        "", "", "", "", "", "only in A", 0])
        for r in only_b:
            w.writerow([r.config_id or "", describe(r), "", r.status, "", _c(r.time), "", "", "",
                        "", "", "", "", "", "only in B", 0])


def _c(v):
    return "" if v is None else repr(v)


if __name__ == "__main__":
    sys.exit(main())
