"""PyTorch exact attention on this machine, the external baseline of the exact family's goals.

Times softmax(Q Kᵀ / √d) V written the way research scripts write it (two matmuls and a softmax,
float32, CPU), so that attnbench's numbers can be set beside PyTorch's measured on the same machine in
the same session rather than beside figures from another machine. Two forms are timed:

  eager         s = (q · scale) @ kᵀ; p = softmax(s); o = p @ v, with fresh tensors every call: what a
                script does. Each call faults in n²·heads·4 bytes of new pages twice.
  preallocated  the same three operations into buffers allocated once (`out=`): PyTorch's best case,
                with no first-touch page faults in the timed call.

Both scale Q (n·d work) rather than the n² scores, so neither pays a pass over the scores for it.

The comparison in scripts/bench-goals uses the faster of the two, so the baseline is never the weaker
form. Before timing, the output is checked against float64 NumPy attention on a few rows, so a broken
installation cannot pass for a fast one.

Run through scripts/torch-baseline (Debian's python3, with python3-torch and OpenBLAS installed by
`scripts/setup --torch`).
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def parse_lengths(text):
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("'%s' is not a comma-separated list of integers" % text)
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("'%s': expected positive integers" % text)
    return values


def positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("'%s' is not an integer" % text)
    if value < 1:
        raise argparse.ArgumentTypeError("%d; expected >= 1" % value)
    return value


def blas_library():
    """Which shared library backs libblas.so.3 (Debian's alternatives), or None."""
    for link in ("/etc/alternatives/libblas.so.3-x86_64-linux-gnu",
                 "/etc/alternatives/libblas.so.3-aarch64-linux-gnu"):
        if os.path.exists(link):
            return os.path.realpath(link)
    return None


def max_error_vs_float64(q, k, v, out, causal, rows=16):
    """Max abs error of `out` against float64 attention on `rows` spread-out query rows of every head.

    q, k, v, out: NumPy arrays [heads, n, d] (v and out [heads, n, dv]). Causal masking is bottom-right
    aligned, as attnbench's. Returns inf when a compared value is not finite.
    """
    qd, kd, vd, od = (np.asarray(a, dtype=np.float64) for a in (q, k, v, out))
    n_q, n_k, d = qd.shape[1], kd.shape[1], qd.shape[2]
    worst = 0.0
    for h in range(qd.shape[0]):
        for i in np.unique(np.linspace(0, n_q - 1, rows).astype(int)):
            s = kd[h] @ qd[h, i] / np.sqrt(d)
            if causal:
                s[i + n_k - n_q + 1:] = -np.inf
            w = np.exp(s - s.max())
            err = np.abs((w / w.sum()) @ vd[h] - od[h, i]).max()
            worst = max(worst, float(err) if np.isfinite(err) else float("inf"))
    return worst


def main(argv):
    parser = argparse.ArgumentParser(
        prog="scripts/torch-baseline",
        description="Time PyTorch exact attention (matmul + softmax + matmul, float32, CPU) at the "
        "shapes of attnbench's exact-family goals.")
    parser.add_argument("--n", type=parse_lengths, default=[4096, 8192],
                        help="sequence lengths, comma-separated (default 4096,8192)")
    parser.add_argument("--heads", type=positive, default=8, help="heads (default 8)")
    parser.add_argument("--d", type=positive, default=64, help="head dimension (default 64)")
    parser.add_argument("--threads", type=positive, default=2,
                        help="intra-op threads, PyTorch's and OpenBLAS's (default 2)")
    parser.add_argument("--reps", type=positive, default=5,
                        help="timed calls per form after two warm-up calls (default 5)")
    parser.add_argument("--causal", action="store_true",
                        help="mask keys after each query (bottom-right aligned, as attnbench)")
    parser.add_argument("--seed", type=int, default=0, help="input seed (default 0)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    args = parser.parse_args(argv)

    # Thread counts must be fixed before the libraries start their pools.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    try:
        import torch
    except ImportError as err:
        print("torch-baseline: %s; install PyTorch with `scripts/setup --torch` "
              "(Debian's python3-torch and libopenblas0-pthread)" % err, file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    blas = blas_library()
    if blas is None or "openblas" not in blas:
        print("torch-baseline: warning: libblas.so.3 is %s, not OpenBLAS; the baseline is slower "
              "than it should be (apt-get install libopenblas0-pthread)" % blas, file=sys.stderr)

    results = []
    print("PyTorch %s, BLAS %s, %d threads, heads=%d, d=%d%s" % (
        torch.__version__, blas, args.threads, args.heads, args.d, ", causal" if args.causal else ""))
    for n in args.n:
        gen = torch.Generator().manual_seed(args.seed)
        q, k, v = (torch.randn(1, args.heads, n, args.d, generator=gen) for _ in range(3))
        scale = args.d ** -0.5
        mask = torch.ones(n, n, dtype=torch.bool).triu(1) if args.causal else None

        def eager():
            s = torch.matmul(q * scale, k.transpose(-1, -2))
            if mask is not None:
                s = s.masked_fill(mask, float("-inf"))
            return torch.matmul(torch.softmax(s, dim=-1), v)

        s_buf = torch.empty(1, args.heads, n, n)
        p_buf = torch.empty(1, args.heads, n, n)
        o_buf = torch.empty(1, args.heads, n, args.d)
        q_buf = torch.empty_like(q)

        def preallocated():
            torch.mul(q, scale, out=q_buf)
            torch.matmul(q_buf, k.transpose(-1, -2), out=s_buf)
            if mask is not None:
                s_buf.masked_fill_(mask, float("-inf"))
            torch.softmax(s_buf, dim=-1, out=p_buf)
            torch.matmul(p_buf, v, out=o_buf)
            return o_buf

        row = {"n": n, "heads": args.heads, "d": args.d, "threads": args.threads,
               "causal": args.causal}
        with torch.no_grad():
            for name, fn in (("eager", eager), ("preallocated", preallocated)):
                out = fn()
                err = max_error_vs_float64(q[0].numpy(), k[0].numpy(), v[0].numpy(),
                                           out[0].numpy(), args.causal)
                if not err < 1e-4:
                    print("torch-baseline: %s output differs from float64 attention by %.3g at "
                          "n=%d; not timing a wrong result" % (name, err, n), file=sys.stderr)
                    return 1
                fn()
                times = []
                for _ in range(args.reps):
                    start = time.perf_counter()
                    fn()
                    times.append((time.perf_counter() - start) * 1e3)
                row[name] = {"median_ms": statistics.median(times), "min_ms": min(times),
                             "times_ms": times, "max_abs_error": err}
                print("  n=%-7d %-13s median %9.1f ms   min %9.1f ms   (%d calls, max abs error "
                      "%.1e)" % (n, name, row[name]["median_ms"], row[name]["min_ms"], args.reps,
                                 err), flush=True)
        del s_buf, p_buf, o_buf
        row["best_median_ms"] = min(row["eager"]["median_ms"], row["preallocated"]["median_ms"])
        results.append(row)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "blas": blas, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
