"""Figures (matplotlib, Agg backend): each saved as PNG (for the pages) and SVG (for papers)."""

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter  # noqa: E402

from .analysis import fmt_n, total_variation  # noqa: E402
from .fmt import fmt_bytes, fmt_time  # noqa: E402
from .load import finite  # noqa: E402

BASELINE_STYLE = {
    "full": dict(color="black", linestyle="--", marker="s", linewidth=1.6),
    "flash": dict(color="#555555", linestyle="-.", marker="D", linewidth=1.6),
}
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#17becf", "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39"]
MARKERS = ["o", "^", "v", "<", ">", "p", "h", "*", "X", "P", "d", "8"]

plt.rcParams.update({
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "svg.fonttype": "none",
    "svg.hashsalt": "attnbench",  # reproducible SVG ids
})


SAVE_SVG = True  # set False for PNG only (scripts/report --no-svg)


def _save(fig, outdir, name):
    png = name + ".png"
    svg = name + ".svg" if SAVE_SVG else None
    fig.savefig(os.path.join(outdir, png), bbox_inches="tight", metadata={"Software": None})
    if svg:
        fig.savefig(os.path.join(outdir, svg), bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return png, svg


# Tick labels are plain text in the quantity's unit ("100 µs", "4 MiB", "1e-7"): more readable
# than 10^k, and much cheaper to draw than mathtext.
def _time_tick(v, _=None):
    return fmt_time(v).replace(" ", "\u2009") if v > 0 else ""


def _bytes_tick(v, _=None):
    return fmt_bytes(v).replace(" ", "\u2009") if v > 0 else ""


def _plain_tick(v, _=None):
    if v <= 0:
        return ""
    k = math.log10(v)
    if abs(k - round(k)) < 1e-9 and not -2 <= round(k) <= 3:
        return "1e%d" % round(k)
    return "%g" % v


def _log_axis(axis, kind):
    """A log axis: "time" (seconds, decades), "bytes" (powers of 2), "length" (powers of 2),
    or "plain" (decades). Two minor ticks per decade at most: each tick is a costly artist."""
    if kind in ("bytes", "length"):
        axis.set_major_locator(LogLocator(base=2, numticks=9))
        axis.set_minor_locator(matplotlib.ticker.NullLocator())
    else:
        axis.set_major_locator(LogLocator(base=10, numticks=9))
        axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0), numticks=9))
    axis.set_minor_formatter(NullFormatter())
    fmt = {"time": _time_tick, "bytes": _bytes_tick, "length": _len_tick,
           "plain": _plain_tick}[kind]
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(fmt))


def _loglog(ax, ykind="time"):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2 if ykind == "bytes" else 10)
    _log_axis(ax.xaxis, "length")
    _log_axis(ax.yaxis, ykind)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)


def _len_tick(x, _=None):
    if x <= 0:
        return ""
    if x >= 1024 and (x / 1024) == int(x / 1024):
        k = int(x / 1024)
        return "%dM" % (k // 1024) if k >= 1024 and k % 1024 == 0 else "%dK" % k
    return "%g" % x


def _series_label(s, multi_machine, with_variant=True):
    lab = s.label if with_variant else (s.label[len(s.variant):].strip() or "(defaults)")
    if multi_machine:
        lab += " [%s]" % s.machine
    return lab


def _plot_series(ax, s, metric, style, label):
    vals = s.values(metric)
    if not vals:
        return False
    ns = sorted(vals)
    ax.plot(ns, [vals[n] for n in ns], label=label, markersize=4, **style)
    return True


def scaling_figure(outdir, name, title, series, baselines, multi_machine):
    """Time and memory against n, log-log: the variant's series plus full and flash."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    notes = []
    for ax, metric, ylabel, ykind in ((axes[0], "time", "time per forward", "time"),
                                      (axes[1], "memory", "peak extra memory", "bytes")):
        drawn = 0
        for b in baselines:
            drawn += _plot_series(ax, b, metric, BASELINE_STYLE.get(b.variant, {}),
                                  _series_label(b, multi_machine))
        for i, s in enumerate(series):
            style = dict(color=PALETTE[i % len(PALETTE)], marker=MARKERS[i % len(MARKERS)],
                         linestyle="-", linewidth=1.4)
            drawn += _plot_series(ax, s, metric, style, _series_label(s, multi_machine))
            zero = s.nonpositive(metric)
            if zero:
                notes.append("%s: %s 0 at n=%s (not drawn)" % (s.label, metric,
                                                             ",".join(fmt_n(n) for n in zero)))
        _loglog(ax, ykind)
        ax.set_xlabel("sequence length n")
        ax.set_ylabel(ylabel)
        if not drawn:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
    handles, labels = axes[0].get_legend_handles_labels()
    h2, l2 = axes[1].get_legend_handles_labels()
    for h, l in zip(h2, l2):
        if l not in labels:
            handles.append(h)
            labels.append(l)
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.92), frameon=False)
    fig.suptitle(title, fontsize=10)
    if notes:
        fig.text(0.01, -0.02, "; ".join(notes), fontsize=7, va="top")
    fig.tight_layout()
    return _save(fig, outdir, name)


def overview_figure(outdir, name, title, series, multi_machine):
    """Time against n for one series per variant (exact attention emphasised)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    i = 0
    for s in series:
        if s.variant in BASELINE_STYLE:
            style = BASELINE_STYLE[s.variant]
        else:
            style = dict(color=PALETTE[i % len(PALETTE)], marker=MARKERS[i % len(MARKERS)],
                         linestyle="-", linewidth=1.3)
            i += 1
        _plot_series(ax, s, "time", style, _series_label(s, multi_machine))
    _loglog(ax, "time")
    ax.set_xlabel("sequence length n")
    ax.set_ylabel("time per forward")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return _save(fig, outdir, name)


def pareto_figure(outdir, name, title, group, error_label, multi_machine):
    """Error against time and against memory; frontier points joined, dominated points faded."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    variants = []
    for p in group.points:
        if p.variant not in variants:
            variants.append(p.variant)
    colour = {}
    marker = {}
    j = 0
    for v in variants:
        if v in BASELINE_STYLE:
            colour[v] = BASELINE_STYLE[v]["color"]
            marker[v] = BASELINE_STYLE[v]["marker"]
        else:
            colour[v] = PALETTE[j % len(PALETTE)]
            marker[v] = MARKERS[j % len(MARKERS)]
            j += 1
    errs = [p.error for p in group.points if finite(p.error)]
    positive = [e for e in errs if e > 0]
    floor = (min(positive) / 10.0) if positive else 1e-12
    note = None
    if any(e <= 0 for e in errs):
        note = "error 0 drawn at %.2g" % floor
    for ax, cost, flags, xlabel, xkind in (
            (axes[0], "time", group.dominated_time, "time per forward", "time"),
            (axes[1], "memory", group.dominated_memory, "peak extra memory", "bytes")):
        drawn = 0
        for p, dom in zip(group.points, flags):
            if dom is None:
                continue
            c = getattr(p, cost)
            if not (finite(c) and c > 0):
                continue
            e = max(p.error, floor)
            ax.scatter([c], [e], color=colour[p.variant], marker=marker[p.variant],
                       alpha=0.22 if dom else 1.0, s=26 if dom else 40,
                       edgecolors="none", zorder=2 if dom else 3)
            drawn += 1
        front = [p for p in group.frontier(cost)
                 if finite(getattr(p, cost)) and getattr(p, cost) > 0]
        if front:
            xs = [getattr(p, cost) for p in front]
            ys = [max(p.error, floor) for p in front]
            ax.step(xs, ys, where="post", color="black", linewidth=0.9, alpha=0.7, zorder=1)
            for p, x, y in zip(front, xs, ys):
                short = p.label[len(p.variant):].strip()
                if short:
                    ax.annotate(short, (x, y), textcoords="offset points", xytext=(4, 3),
                                fontsize=6.5, color=colour[p.variant])
        ax.set_xscale("log", base=2 if xkind == "bytes" else 10)
        ax.set_yscale("log")
        _log_axis(ax.xaxis, xkind)
        _log_axis(ax.yaxis, "plain")
        ax.grid(True, which="major", alpha=0.35)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(error_label)
        if not drawn:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center")
    # Proxy handles: the scatter artists themselves carry the faded alpha of their point.
    handles = [Line2D([], [], linestyle="none", marker=marker[v], color=colour[v], markersize=6)
               for v in variants]
    handles.append(Line2D([], [], linestyle="none", marker="o", color="#888888", alpha=0.25,
                          markersize=6))
    fig.legend(handles, variants + ["dominated (faded)"], loc="upper left",
               bbox_to_anchor=(1.0, 0.92), frameon=False)
    fig.suptitle(title + "\nfrontier joined; dominated configurations faded", fontsize=10)
    if note:
        fig.text(0.01, -0.02, note, fontsize=7, va="top")
    fig.tight_layout()
    return _save(fig, outdir, name)


def gflops_figure(outdir, name, title, series, gemm_rates, multi_machine):
    """Achieved GFLOP/s against n, with the calibrated GEMM rate as a horizontal line."""
    fig, ax = plt.subplots(figsize=(8, 4.6))
    i = 0
    for s in series:
        pts = []
        for p in s.points:
            g = [r.gflops for r in p.records if finite(r.gflops)]
            if g:
                pts.append((p.n, sorted(g)[len(g) // 2]))
        if not pts:
            continue
        if s.variant in BASELINE_STYLE:
            style = BASELINE_STYLE[s.variant]
        else:
            style = dict(color=PALETTE[i % len(PALETTE)], marker=MARKERS[i % len(MARKERS)],
                         linestyle="-", linewidth=1.3)
            i += 1
        ax.plot([n for n, _ in pts], [g for _, g in pts], label=_series_label(s, multi_machine),
                markersize=4, **style)
    for label, rate in gemm_rates:
        ax.axhline(rate, color="#b22222", linewidth=1.0, linestyle=":")
        ax.annotate(label, (1.0, rate), xycoords=("axes fraction", "data"), xytext=(-4, 3),
                    textcoords="offset points", ha="right", fontsize=7, color="#b22222")
    ax.set_xscale("log", base=2)
    _log_axis(ax.xaxis, "length")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.35)
    ax.set_xlabel("sequence length n")
    ax.set_ylabel("achieved GFLOP/s (analytic FLOPs / median time)")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return _save(fig, outdir, name)


def threads_figure(outdir, name, title, scalings):
    """Parallel efficiency against thread count, one line per configuration."""
    fig, ax = plt.subplots(figsize=(7, 4.3))
    for i, sc in enumerate(scalings):
        rows = sc.rows()
        r = sc.record
        who = r.variant + (" " + _params_short(r.spec_params) if r.spec_params else "")
        label = "%s n=%s" % (who, fmt_n(r.n))
        ax.plot([t for t, *_ in rows], [e for *_, e in rows], marker=MARKERS[i % len(MARKERS)],
                color=PALETTE[i % len(PALETTE)], label=label)
    ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(
        sorted({t for sc in scalings for t in sc.by_threads})))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: "%g" % x))
    ax.set_ylim(0, 1.15)
    ax.grid(True, alpha=0.35)
    ax.set_xlabel("threads")
    ax.set_ylabel("efficiency = speedup / thread ratio")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return _save(fig, outdir, name)


def _params_short(p):
    return ",".join("%s=%s" % (k, p[k]) for k in sorted(p))


def weights_figure(outdir, name, title, exact, values, exact_label, variant_label, rows=None,
                   cols=None):
    """One head's attention weights: exact next to the variant, on one colour scale."""
    import numpy as np

    a = np.asarray(values, dtype=float)
    fig, axes = plt.subplots(1, 2 if exact is not None else 1, figsize=(9.5, 4.6), squeeze=False,
                             layout="constrained")
    axes = axes[0]
    mats = [(exact, exact_label)] if exact is not None else []
    mats.append((a, variant_label))
    vmax = max(float(np.nanmax(np.abs(np.asarray(m, dtype=float)))) for m, _ in mats) or 1.0
    im = None
    for ax, (m, lab) in zip(axes, mats):
        m = np.asarray(m, dtype=float)
        # Weights of some approximations can be negative (Nystrom): a diverging map shows the sign.
        if np.nanmin(m) < 0:
            im = ax.imshow(m, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest",
                           aspect="auto")
        else:
            im = ax.imshow(m, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest",
                           aspect="auto")
        ax.set_title(lab)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        # Sampled rows or columns: label the axes with the sequence positions they stand for.
        for axis, idx, size in ((ax.yaxis, rows, m.shape[0]), (ax.xaxis, cols, m.shape[1])):
            if isinstance(idx, list) and len(idx) == size:
                axis.set_major_formatter(matplotlib.ticker.FuncFormatter(
                    lambda v, _, idx=idx: str(idx[int(round(v))]) if 0 <= round(v) < len(idx)
                    else ""))
    fig.colorbar(im, ax=list(axes), shrink=0.85)
    sub = ""
    if exact is not None:
        sub = "\nmean row total variation to exact: %.3g" % total_variation(values, exact)
    fig.suptitle(title + sub, fontsize=10)
    return _save(fig, outdir, name)

