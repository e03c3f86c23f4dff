"""scripts/report: render attnbench results files into index.html, report.md, plots and CSV."""

import argparse
import csv
import json
import os
import re
import sys

from . import analysis as A
from .doc import Doc
from .fmt import fmt_bytes, fmt_fixed, fmt_num, fmt_pct, fmt_time
from .load import STATUSES, InputError, canonical, dedupe, finite, load_runs

ERROR_LABELS = {
    "rel_fro": "relative Frobenius error |O'-O|/|O|",
    "rel_fro_mean": "relative Frobenius error (mean over heads)",
    "rel_fro_max": "relative Frobenius error (max over heads)",
    "rel_uniform": "error relative to uniform attention",
    "max_abs": "max abs error",
    "max_abs_over_max_v": "max abs error / max |V|",
}


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="scripts/report",
        description="Render attnbench results (JSONL, schema version 1) into DIR: index.html, "
                    "report.md, plots/ (PNG and SVG) and CSV tables.")
    ap.add_argument("files", nargs="+", metavar="RUN.jsonl", help="results files (one or more; "
                    "shards and runs from several machines may be mixed)")
    ap.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    ap.add_argument("--title", default="attnbench report")
    ap.add_argument("--error-metric", default="rel_fro", metavar="NAME",
                    help="error field used for Pareto frontiers (default rel_fro; e.g. "
                         "rel_uniform)")
    ap.add_argument("--memory", default="peak", metavar="FIELD",
                    choices=["peak", "forward_peak", "setup_peak", "peak_rss", "analytic"],
                    help="memory figure: peak (max of setup_peak and forward_peak, default), "
                         "forward_peak, setup_peak, peak_rss or analytic")
    ap.add_argument("--fit-min", type=int, default=None, metavar="N",
                    help="fit exponents on lengths >= N only")
    ap.add_argument("--fit-max", type=int, default=None, metavar="N",
                    help="fit exponents on lengths <= N only")
    ap.add_argument("--no-svg", action="store_true", help="PNG plots only (faster)")
    ap.add_argument("--notes", metavar="FILE",
                    help="Markdown text (e.g. a paragraph per family on what the figures show) "
                         "placed after the run context: '#' headings and paragraphs, with "
                         "`code` and [links](url)")
    return ap.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        runs = load_runs(args.files)
        build_report(runs, args)
    except InputError as e:
        print("scripts/report: error: %s" % e, file=sys.stderr)
        return 2
    except OSError as e:
        print("scripts/report: error: cannot write the report: %s" % e, file=sys.stderr)
        return 2
    except Exception as e:  # never a traceback for users; say where it broke
        if os.environ.get("ATTNBENCH_REPORT_DEBUG"):
            raise
        print("scripts/report: internal error (%s: %s); please report it with the input file"
              % (type(e).__name__, e), file=sys.stderr)
        return 3
    print("report written to %s (index.html, report.md)" % os.path.join(args.out, "index.html"))
    return 0


class Names:
    """Unique, readable file names for plots."""

    def __init__(self):
        self.used = set()

    def __call__(self, *parts):
        base = "-".join(re.sub(r"[^A-Za-z0-9.=]+", "_", str(p)).strip("_") for p in parts if p)
        base = base[:110] or "plot"
        name, i = base, 2
        while name in self.used:
            name = "%s-%d" % (base, i)
            i += 1
        self.used.add(name)
        return name


def group_title(machine, workload, shape, threads, multi_machine):
    wname, wparams = workload
    s = "%s · %s · %s thread%s" % (A.workload_text(wname, json.loads(wparams)),
                                   A.shape_text(shape), "?" if threads is None else threads,
                                   "" if threads == 1 else "s")
    if multi_machine:
        s += " · machine %s" % machine
    return s


def build_report(runs, args):
    out = args.out
    plots_dir = os.path.join(out, "plots")
    os.makedirs(plots_dir, exist_ok=True)
    # Figures of an earlier rendering into the same directory would linger unlinked.
    for f in os.listdir(plots_dir):
        if f.endswith((".png", ".svg")):
            os.remove(os.path.join(plots_dir, f))
    records = dedupe([r for run in runs for r in run.records])
    machines = sorted({run.context.machine_id for run in runs})
    multi = len(machines) > 1
    names = Names()
    em = args.error_metric
    error_label = ERROR_LABELS.get(em, em)

    series = A.build_series(records, em, args.memory)
    fits = {}
    for s in series:
        for metric in ("time", "memory"):
            fits[(id(s), metric)] = A.fit_exponent(s, metric, args.fit_min, args.fit_max)

    doc = Doc(args.title)
    measured = [r for r in records if r.status == "ok" and finite(r.time)]
    problems = [r for r in records if not (r.status == "ok" and finite(r.time))]
    counts = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1

    # First page: what was run, where -----------------------------------------------------------
    doc.p("%d configuration record%s from %d file%s; %d measured, %d not measured "
          "([listed with reasons](#configurations-not-measured))."
          % (len(records), "" if len(records) == 1 else "s", len(runs),
             "" if len(runs) == 1 else "s", len(measured), len(problems)))
    doc.toc()
    doc.h(2, "Run context")
    if multi:
        doc.p("Results from %d machines (%s). Every series, table row and plot line is labelled "
              "with its machine id; series from different machines are never merged."
              % (len(machines), ", ".join("`%s`" % m for m in machines)))
    context_table(doc, runs)
    doc.p("Records by status: " + ", ".join(
        "%s %d" % (s, counts[s]) for s in list(STATUSES) + sorted(set(counts) - set(STATUSES))
        if s in counts) + ".")
    for run in runs:
        for line, reason in run.skipped_lines:
            doc.p("`%s` line %d not read: %s." % (run.path, line, reason))
    if args.notes:
        add_notes(doc, args.notes)

    all_groups = {}
    for s in series:
        all_groups.setdefault(s.context_key(), []).append(s)
    # Scaling needs lengths: groups measured at one length only go to the Pareto section.
    groups = {k: ss for k, ss in all_groups.items() if any(len(s.points) > 1 for s in ss)}
    single = [k for k in all_groups if k not in groups]

    # Exponents ---------------------------------------------------------------------------------
    doc.h(2, "Complexity exponents")
    doc.p("Slope of log(time) and of log(memory) against log(n), least squares over the fit range "
          "(measured lengths%s; seeds combined by their median), with its 95%% confidence interval "
          "(Student t, n−2 degrees of freedom; needs 3 lengths) and R². Time is the median "
          "per-forward time; memory is `%s`. Theoretical complexity is the variant's own "
          "statement where the results carry it."
          % (_range_text(args.fit_min, args.fit_max), args.memory))
    exp_rows_csv = []
    if not series:
        doc.p("No measured configurations.")
    elif not groups:
        doc.p("Every workload and shape was measured at a single length: no scaling to fit.")
    if single:
        doc.p("Measured at a single length only (no exponents, crossovers or scaling plots; see "
              "the [Pareto frontiers](#error-versus-cost-pareto-frontiers) and throughput): "
              + "; ".join(group_title(*k, multi_machine=multi) for k in single) + ".")
    for key, ss in groups.items():
        doc.h(3, group_title(*key, multi_machine=multi))
        rows = []
        for s in ss:
            ft, fm = fits[(id(s), "time")], fits[(id(s), "memory")]
            rows.append([s.variant, A.params_text(s.spec_params) or "–", s.family or "–",
                         s.theory_time or "", _slope(ft), _r2(ft), _fit_range(ft),
                         s.theory_memory or "", _slope(fm), _r2(fm), _fit_range(fm)])
            exp_rows_csv.append(_exp_csv(s, ft, fm))
        doc.table(["variant", "params", "family", "theory time", "time exponent [95% CI]", "R²",
                   "fit range (points)", "theory memory", "memory exponent [95% CI]", "R²",
                   "fit range (points)"], rows,
                  align=["l", "l", "l", "l", "r", "r", "r", "l", "r", "r", "r"])

    # Crossovers --------------------------------------------------------------------------------
    doc.h(2, "Crossover lengths")
    doc.p("The length from which a variant is faster (smaller) than exact attention, and stays so "
          "up to the longest common length: interpolated in log-log between the two measured "
          "lengths around the change. When the curves do not cross within the measured range, the "
          "fitted power laws give an extrapolated crossing if the variant grows more slowly; "
          "otherwise \"none in range\".")
    cross_rows_csv = []
    for key, ss in groups.items():
        bases = {b: A.pick_baseline(ss, b, key) for b in A.EXACT_BASELINES}
        rows = []
        for s in ss:
            if s in bases.values():
                continue
            row = [s.variant, A.params_text(s.spec_params) or "–"]
            for metric in ("time", "memory"):
                for b in A.EXACT_BASELINES:
                    base = bases[b]
                    if base is None:
                        row.append("no %s series" % b)
                        continue
                    c = A.crossover(s.values(metric), base.values(metric),
                                    fits[(id(s), metric)].fit, fits[(id(base), metric)].fit)
                    row.append(c.text(metric))
                    cross_rows_csv.append(_cross_csv(s, base, metric, c))
            rows.append(row)
        if rows:
            doc.h(3, group_title(*key, multi_machine=multi))
            doc.table(["variant", "params", "faster than flash from n", "faster than full from n",
                       "smaller than flash from n", "smaller than full from n"], rows)

    # Scaling plots ----------------------------------------------------------------------------
    doc.h(2, "Time and memory versus length")
    doc.p("Log-log, per variant and workload; exact attention (`full` dashed black, `flash` "
          "dash-dotted grey) on every plot.")
    for key, ss in groups.items():
        title = group_title(*key, multi_machine=multi)
        doc.h(3, title)
        bases = [b for b in (A.pick_baseline(ss, v, key) for v in ("full", "flash")) if b]
        reps = _one_per_variant(ss)
        if len(reps) > 1:
            png, svg = _plot(args, "overview_figure", plots_dir, names("overview", *_key_slug(key)),
                             "all variants — " + title, reps, multi)
            doc.image("plots/" + png, _svg(svg), "time versus n, all variants: " + title)
        by_variant = {}
        for s in ss:
            by_variant.setdefault(s.variant, []).append(s)
        exact_series = [s for v in A.EXACT_BASELINES for s in by_variant.get(v, [])]
        if exact_series:
            extra = [s for s in exact_series if s not in bases]
            png, svg = _plot(args, "scaling_figure", plots_dir, names("scaling", "exact",
                                                                      *_key_slug(key)),
                             "exact attention — " + title, extra, bases, multi)
            doc.image("plots/" + png, _svg(svg), "exact attention: " + title)
        for v, vs in by_variant.items():
            if v in A.EXACT_BASELINES:
                continue
            png, svg = _plot(args, "scaling_figure", plots_dir,
                             names("scaling", v, *_key_slug(key)), "%s — %s" % (v, title), vs,
                             bases, multi)
            doc.image("plots/" + png, _svg(svg), "%s: %s" % (v, title))

    # Pareto ------------------------------------------------------------------------------------
    doc.h(2, "Error versus cost: Pareto frontiers")
    pgroups = A.pareto_groups(records, em, args.memory)
    doc.p("Per length and workload, every measured configuration (the variants' parameter grids, "
          "seeds combined: median time and memory, mean error). A configuration is dominated when "
          "another is at least as fast (small) and at least as accurate, and strictly better in "
          "one: dominated points are faded in the plots, and table rows dominated on both "
          "frontiers are faded in the HTML page. Error: %s (`%s`)." % (error_label, em))
    pareto_csv = []
    if not pgroups:
        doc.p("No length and workload with two or more measured configurations.")
    for g in pgroups:
        title = "n=%s · %s" % (A.fmt_n(g.n), group_title(g.machine, g.workload, g.shape, g.threads,
                                                           multi))
        doc.h(3, title)
        png, svg = _plot(args, "pareto_figure", plots_dir,
                         names("pareto", "n%s" % g.n, *_key_slug((g.machine, g.workload, g.shape,
                                                                   g.threads))),
                         title, g, error_label, multi)
        doc.image("plots/" + png, _svg(svg), "Pareto frontiers: " + title)
        order = sorted(range(len(g.points)), key=lambda i: (g.points[i].time or 0))
        rows, faded = [], []
        for i in order:
            p = g.points[i]
            dt, dm = g.dominated_time[i], g.dominated_memory[i]
            rows.append([p.variant, A.params_text(p.spec_params) or "–", fmt_time(p.time),
                         fmt_bytes(p.memory), fmt_num(p.error), _front(dt), _front(dm)])
            faded.append(bool(dt) and bool(dm))
            pareto_csv.append(_pareto_csv(g, p, dt, dm, em))
        doc.table(["variant", "params", "time", "memory", em, "error-time frontier",
                   "error-memory frontier"], rows, faded,
                  align=["l", "l", "r", "r", "r", "l", "l"])

    # Throughput ----------------------------------------------------------------------------------
    doc.h(2, "Achieved GFLOP/s against the GEMM rate")
    doc.p("Analytic FLOPs of one forward divided by its median time, against the machine's "
          "calibrated single-precision GEMM rate at the same thread count (context `gemm_gflops`).")
    gemm_csv_by_record = {id(row["record"]): row for row in A.gflops_rows(records)}
    any_flops = False
    for key, ss in all_groups.items():
        machine, _, _, threads = key
        title = group_title(*key, multi_machine=multi)
        ctx = next(r.context for s in ss for p in s.points for r in p.records)
        rate = ctx.gemm_rate(threads)
        reps = _one_per_variant(ss)
        rows = []
        for s in ss:
            p = s.points[-1]
            g = [r.gflops for r in p.records if finite(r.gflops)]
            if not g:
                continue
            gv = sorted(g)[len(g) // 2]
            rows.append([s.variant, A.params_text(s.spec_params) or "–", A.fmt_n(p.n),
                         fmt_num(gv), fmt_num(rate), fmt_pct(gv / rate) if rate else "–"])
        if not rows:
            continue
        any_flops = True
        doc.h(3, title)
        if any(len(s.points) > 1 for s in ss):
            gemm_lines = [("GEMM %s thread%s: %.3g GFLOP/s" % (threads, "" if threads == 1 else "s",
                                                               rate), rate)] if rate else []
            png, svg = _plot(args, "gflops_figure", plots_dir, names("gflops", *_key_slug(key)),
                             "GFLOP/s — " + title, reps, gemm_lines, multi)
            doc.image("plots/" + png, _svg(svg), "GFLOP/s: " + title)
        if not rate:
            doc.p("No calibrated GEMM rate for %s thread%s in the run context."
                  % (threads, "" if threads == 1 else "s"))
        doc.table(["variant", "params", "at n", "GFLOP/s", "GEMM GFLOP/s", "of GEMM"], rows,
                  align=["l", "l", "r", "r", "r", "r"])
    if not any_flops:
        doc.p("No record carries analytic FLOPs: nothing to show.")

    # Threads -----------------------------------------------------------------------------------
    doc.h(2, "Thread scaling")
    scal = A.thread_scaling(records)
    thread_csv = []
    if not scal:
        doc.p("Every configuration ran at one thread count: no scaling to show.")
    else:
        doc.p("Speedup over the smallest thread count measured, and efficiency = speedup / "
              "(threads / smallest threads): 1 is perfect scaling.")
        rows = []
        for sc in scal:
            r = sc.record
            for t, time, sp, eff in sc.rows():
                rows.append([r.variant, A.params_text(r.spec_params) or "–",
                             A.workload_text(r.workload_name, r.workload_params), A.fmt_n(r.n),
                             str(t), fmt_time(time), fmt_fixed(sp), fmt_fixed(eff)])
                thread_csv.append({"machine_id": r.machine_id, "variant": r.variant,
                                   "params": canonical(r.params), "workload": r.workload_name,
                                   "workload_params": canonical(r.workload_params), "n": r.n,
                                   "seed": r.seed, "threads": t, "time": time, "speedup": sp,
                                   "efficiency": eff})
        doc.table(["variant", "params", "workload", "n", "threads", "time", "speedup",
                   "efficiency"], rows, align=["l", "l", "l", "r", "r", "r", "r", "r"])
        by_ctx = {}
        for sc in scal:
            r = sc.record
            by_ctx.setdefault((r.machine_id, r.workload_key(), r.shape_key()), []).append(sc)
        for (machine, wk, shape), scs in by_ctx.items():
            # The largest length of each configuration keeps the plot readable.
            best = {}
            for sc in scs:
                k = (sc.record.variant, canonical(sc.record.params))
                if k not in best or sc.record.n > best[k].record.n:
                    best[k] = sc
            title = "%s · %s" % (A.workload_text(wk[0], json.loads(wk[1])), A.shape_text(shape))
            png, svg = _plot(args, "threads_figure", plots_dir, names("threads", machine, wk[0]),
                             "thread scaling — " + title, list(best.values()))
            doc.image("plots/" + png, _svg(svg), "thread scaling: " + title)

    # Weights -----------------------------------------------------------------------------------
    doc.h(2, "Attention weights")
    panels, exact_only = A.weight_panels(records)
    if not panels and not exact_only:
        doc.p("Not recorded: no record carries a `weights` field (one head's attention weights, "
              "recovered with V = I; the expected form is described in "
              "`scripts/attnbench_report/README.md`).")
    for r, exact, src in panels:
        w = r.weights
        title = "%s %s · n=%s · %s · batch %s head %s" % (
            r.variant, A.params_text(r.spec_params), A.fmt_n(r.n),
            A.workload_text(r.workload_name, r.workload_params), w.get("batch", 0),
            w.get("head", 0))
        png, svg = _plot(args, "weights_figure", plots_dir, names("weights", r.variant, "n%s" % r.n,
                                                                  r.workload_name),
                         title, exact, w["values"], "exact (%s)" % src if src else "exact",
                         r.variant, w.get("rows"), w.get("cols"))
        doc.image("plots/" + png, _svg(svg), "attention weights: " + title)
        if exact is None:
            doc.p("Exact weights for this head not recorded (no `weights.exact` and no exact "
                  "variant's weights on the same inputs): the variant is shown alone.")
    if exact_only and not panels:
        doc.p("Only exact variants recorded weights; no approximation to compare.")

    # Failures ----------------------------------------------------------------------------------
    doc.h(2, "Configurations not measured")
    if not problems:
        doc.p("None: every configuration was measured.")
    else:
        doc.p("Every record without a measurement, with its reason. None of these enter the "
              "fits, crossovers or frontiers.")
        rows = []
        for r in sorted(problems, key=lambda r: (r.status, r.variant, r.n or 0)):
            status = r.status if r.status != "ok" else "ok (no time)"
            rows.append([status, r.variant, A.params_text(r.spec_params) or "–",
                         A.workload_text(r.workload_name, r.workload_params), A.fmt_n(r.n),
                         A.shape_text(r.shape_key()), str(r.threads), str(r.seed),
                         r.message or "(no message)", "%s:%d" % (os.path.basename(r.path), r.line)]
                        + ([r.machine_id] if multi else []))
        doc.table(["status", "variant", "params", "workload", "n", "shape", "threads", "seed",
                   "reason", "record"] + (["machine"] if multi else []), rows)

    # CSV ---------------------------------------------------------------------------------------
    doc.h(2, "Data files")
    files = [
        ("records.csv", records_csv(records, gemm_csv_by_record)),
        ("exponents.csv", exp_rows_csv),
        ("crossovers.csv", cross_rows_csv),
        ("pareto.csv", pareto_csv),
        ("thread_scaling.csv", thread_csv),
    ]
    for fname, rows in files:
        write_csv(os.path.join(out, fname), rows)
    doc.items("[%s](%s): %s" % (f, f, d) for f, d in (
        ("records.csv", "every record, any status, one row each"),
        ("exponents.csv", "fitted exponents per series"),
        ("crossovers.csv", "crossover lengths against flash and full"),
        ("pareto.csv", "Pareto points with their frontier membership"),
        ("thread_scaling.csv", "speedup and efficiency per thread count"),
    ))

    with open(os.path.join(out, "report.md"), "w", encoding="utf-8") as f:
        f.write(doc.markdown())
    with open(os.path.join(out, "index.html"), "w", encoding="utf-8") as f:
        f.write(doc.html())


def add_notes(doc, path):
    """The reader's commentary: '#' lines become headings (one level below the report's),
    blank-line separated blocks paragraphs, '- ' lines list items."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError("%s: cannot read the notes (%s)" % (path, e))
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.strip().splitlines()
        while lines and lines[0].startswith("#"):
            level = len(lines[0]) - len(lines[0].lstrip("#"))
            doc.h(min(level + 1, 4), lines[0].lstrip("#").strip())
            lines = lines[1:]
        if not lines:
            continue
        if all(l.startswith("- ") for l in lines):
            doc.items(l[2:].strip() for l in lines)
        else:
            doc.p(" ".join(l.strip() for l in lines))


def _plot(args, fn, plots_dir, name, *rest):
    """Draws a figure; returns the PNG and SVG paths relative to the report (SVG may be None)."""
    from . import plots

    plots.SAVE_SVG = not args.no_svg
    png, svg = getattr(plots, fn)(plots_dir, name, *rest)
    return png, svg


def _key_slug(key):
    machine, workload, shape, threads = key
    wname, wparams = workload
    wp = A.params_text(json.loads(wparams)).replace(",", "_")
    batch, heads, d, d_v, causal, kp, ratio = shape
    s = "b%sh%sd%s%s%s" % (batch, heads, d, "c" if causal else "", "p" if kp else "")
    return (wname, wp, s, "t%s" % threads, machine)


def _one_per_variant(ss):
    """One series per variant for overview plots: default parameters if measured, else the one
    with the most lengths."""
    best = {}
    for s in ss:
        cur = best.get(s.variant)
        rank = (bool(s.spec_params), -len(s.points), s.key[2])
        if cur is None or rank < cur[0]:
            best[s.variant] = (rank, s)
    return [s for s in ss if best.get(s.variant, (None, None))[1] is s]


def _range_text(lo, hi):
    if lo and hi:
        return " from n=%d to n=%d" % (lo, hi)
    if lo:
        return " from n=%d" % lo
    if hi:
        return " up to n=%d" % hi
    return ", all of them"


def _slope(f):
    if f.fit is None:
        return "– (%s)" % f.reason
    if f.fit.ci_low is None:
        return "%.3f [needs 3 lengths]" % f.fit.slope
    return "%.3f [%.3f, %.3f]" % (f.fit.slope, f.fit.ci_low, f.fit.ci_high)


def _r2(f):
    return fmt_fixed(f.fit.r2, 4) if (f.fit and f.fit.r2 is not None) else "–"


def _fit_range(f):
    if f.fit is None:
        return "–"
    s = "%s–%s (%d)" % (A.fmt_n(f.n_lo), A.fmt_n(f.n_hi), f.fit.n)
    zero = f.series.nonpositive(f.metric)
    if zero:
        s += "; n=%s left out: %s 0" % (",".join(A.fmt_n(n) for n in zero), f.metric)
    return s


def _front(flag):
    return "–" if flag is None else ("dominated" if flag else "frontier")


def _series_csv_base(s):
    return {"machine_id": s.machine, "variant": s.variant, "family": s.family,
            "spec_params": canonical(s.spec_params), "workload": s.workload_name,
            "workload_params": canonical(s.workload_params), "batch": s.shape[0],
            "heads": s.shape[1], "d": s.shape[2], "d_v": s.shape[3], "causal": s.shape[4],
            "key_padding": s.shape[5], "n_q_over_n_k": s.shape[6], "threads": s.threads}


def _exp_csv(s, ft, fm):
    row = _series_csv_base(s)
    row["theory_time"] = s.theory_time
    row["theory_memory"] = s.theory_memory
    for prefix, f in (("time", ft), ("memory", fm)):
        fit = f.fit
        row.update({
            prefix + "_exponent": fit.slope if fit else None,
            prefix + "_ci_low": fit.ci_low if fit else None,
            prefix + "_ci_high": fit.ci_high if fit else None,
            prefix + "_r2": fit.r2 if fit else None,
            prefix + "_n_min": f.n_lo, prefix + "_n_max": f.n_hi,
            prefix + "_points": fit.n if fit else 0,
            prefix + "_note": f.reason or "",
        })
    return row


def _cross_csv(s, base, metric, c):
    row = _series_csv_base(s)
    row.update({"metric": metric, "baseline": base.variant,
                "baseline_params": canonical(base.spec_params), "kind": c.kind,
                "crossover_n": c.n, "between_lo": c.lo, "between_hi": c.hi,
                "extrapolated": c.kind == "extrapolated", "text": c.text(metric)})
    return row


def _pareto_csv(g, p, dt, dm, em):
    shape = g.shape
    return {"machine_id": g.machine, "n": g.n, "workload": g.workload[0],
            "workload_params": g.workload[1], "batch": shape[0], "heads": shape[1], "d": shape[2],
            "causal": shape[4], "threads": g.threads, "variant": p.variant,
            "spec_params": canonical(p.spec_params), "params": canonical(p.params), "time": p.time,
            "memory": p.memory, "error_metric": em, "error": p.error,
            "time_frontier": None if dt is None else (not dt),
            "memory_frontier": None if dm is None else (not dm), "seeds": len(p.records)}


def records_csv(records, gemm_rows):
    rows = []
    for r in records:
        g = gemm_rows.get(id(r), {})
        err = r.raw.get("error") if isinstance(r.raw.get("error"), dict) else {}
        stats = err.get("exact_stats") if isinstance(err.get("exact_stats"), dict) else {}
        rows.append({
            "file": r.path, "line": r.line, "machine_id": r.machine_id, "config_id": r.config_id,
            "variant": r.variant, "family": r.family, "params": canonical(r.params),
            "spec_params": canonical(r.spec_params), "workload": r.workload_name,
            "workload_params": canonical(r.workload_params), "batch": r.int_field("batch"),
            "heads": r.int_field("heads"), "n_q": r.n_q, "n_k": r.n_k, "d": r.int_field("d"),
            "d_v": r.int_field("d_v"), "causal": r.raw.get("causal"),
            "key_padding": r.raw.get("key_padding"), "seed": r.seed, "threads": r.threads,
            "status": r.status, "message": r.message,
            "time_median": r.time, "time_mean": r.num("time", "mean"),
            "time_stddev": r.num("time", "stddev"), "time_min": r.num("time", "min"),
            "time_cv": r.num("time", "cv"), "time_cold": r.num("time", "cold"),
            "time_setup": r.num("time", "setup"), "repetitions": len(r.repetitions),
            "memory_peak": r.memory("peak"), "memory_setup_peak": r.memory("setup_peak"),
            "memory_forward_peak": r.memory("forward_peak"),
            "memory_peak_rss": r.memory("peak_rss"),
            "memory_analytic": r.memory("analytic"), "flops": r.flops, "gflops": r.gflops,
            "gemm_gflops": g.get("gemm"), "gemm_fraction": g.get("fraction"),
            "rel_fro": r.error("rel_fro"), "rel_fro_max": r.error("rel_fro_max"),
            "max_abs": r.error("max_abs"), "cos_mean": r.error("cos_mean"),
            "cos_min": r.error("cos_min"), "rel_uniform": r.error("rel_uniform"),
            "entropy_ratio": stats.get("entropy_ratio"), "n_eff_ratio": stats.get("n_eff_ratio"),
            "max_weight": stats.get("max_weight"), "wall": r.num("wall"),
        })
    return rows


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        if not rows:
            f.write("")
            return
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()), lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if v is None else (repr(v) if isinstance(v, float) else v))
                        for k, v in row.items()})


CONTEXT_FIELDS = [
    ("machine_id", "machine id"), ("cpu_model", "CPU"), ("isa", "ISA"), ("cores", "cores"),
    ("memory_bytes", "memory"), ("compiler", "compiler"), ("build_type", "build type"),
    ("compile_flags", "flags"), ("attnbench_version", "attnbench"), ("git_commit", "commit"),
    ("start_time", "started"), ("library_versions", "libraries"), ("gemm_gflops", "GEMM GFLOP/s"),
]


def context_table(doc, runs):
    headers = ["", ] + ["`%s`" % os.path.basename(r.path) for r in runs]
    rows = []
    for key, label in CONTEXT_FIELDS:
        row = [label]
        for run in runs:
            v = run.context.raw.get(key)
            if key == "machine_id":
                v = run.context.machine_id
            row.append(_context_value(key, v))
        rows.append(row)
    rows.append(["records"] + [str(len(r.records)) for r in runs])
    doc.table(headers, rows)


def _context_value(key, v):
    if v is None or v == "":
        return "–"
    if key == "memory_bytes" and isinstance(v, (int, float)):
        return fmt_bytes(v)
    if key == "isa" and isinstance(v, list):
        return " ".join(str(x) for x in v)
    if key == "gemm_gflops" and isinstance(v, dict):
        return ", ".join("%s thread%s: %s" % (k, "" if str(k) == "1" else "s", fmt_num(x, 4))
                         for k, x in sorted(v.items(), key=lambda kv: _int_or(kv[0])))
    if isinstance(v, dict):
        return ", ".join("%s %s" % (k, x) for k, x in v.items())
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    return str(v)


def _int_or(s):
    try:
        return int(s)
    except ValueError:
        return 1 << 30


def _svg(svg):
    return "plots/" + svg if svg else None


if __name__ == "__main__":
    sys.exit(main())
