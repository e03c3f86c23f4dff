"""Reading attnbench results files (JSONL, schema version 1; see results/README.md).

A file is a context line followed by one record per configuration. Fatal problems (a missing or
empty file, an unknown schema version, malformed JSON before the last line, a field of the wrong
type) raise InputError with the file, the line and what was expected; the command-line entry
points turn it into a message on stderr and exit code 2. A truncated last line (a sweep killed
while writing) is skipped with a warning. Unknown fields are ignored.
"""

import json
import math
import sys

SCHEMA_VERSION = 1
STATUSES = ("ok", "error", "timeout", "oom", "crash", "skipped", "unsupported")


class InputError(Exception):
    """A problem with an input file that stops the script (exit code 2)."""


def warn(message):
    print("warning: " + message, file=sys.stderr)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Context:
    """The run context of one file (the first line)."""

    def __init__(self, raw, path):
        self.raw = raw
        self.path = path

    def get(self, key, default=None):
        v = self.raw.get(key)
        return default if v is None else v

    @property
    def machine_id(self):
        mid = self.raw.get("machine_id")
        if mid is None:
            # Older or foreign files: fall back on what the id is a hash of.
            parts = [str(self.raw.get(k, "")) for k in ("cpu_model", "cores", "memory_bytes")]
            mid = "|".join(parts) if any(parts) else "unknown"
        return str(mid)

    def gemm_rate(self, threads):
        rates = self.raw.get("gemm_gflops")
        if not isinstance(rates, dict) or threads is None:
            return None
        v = rates.get(str(int(threads)))
        return float(v) if _is_number(v) else None

    def variant_info(self, name):
        """The variant's listing (family, complexity text) if the context carries one.

        Accepted: "variants" as a list of objects with "name" (the `attnbench list --json`
        form), or as an object keyed by variant name.
        """
        listing = self.raw.get("variants")
        if isinstance(listing, dict):
            info = listing.get(name)
            return info if isinstance(info, dict) else None
        if isinstance(listing, list):
            for info in listing:
                if isinstance(info, dict) and info.get("name") == name:
                    return info
        return None


class Record:
    """One configuration's record, with the file context it came from."""

    def __init__(self, raw, context, path, line):
        self.raw = raw
        self.context = context
        self.path = path
        self.line = line

    # Identity -------------------------------------------------------------------------------
    @property
    def machine_id(self):
        return self.context.machine_id

    @property
    def variant(self):
        return self.raw["variant"]

    @property
    def family(self):
        fam = self.raw.get("family")
        if fam is None:
            info = self.context.variant_info(self.variant)
            fam = info.get("family") if info else None
        return fam or ""

    @property
    def status(self):
        return self.raw["status"]

    @property
    def message(self):
        return self.raw.get("message") or ""

    @property
    def params(self):
        p = self.raw.get("params")
        return p if isinstance(p, dict) else {}

    @property
    def spec_params(self):
        """The parameters as written in the spec: the same for every length of a sweep, whereas
        resolved `params` may hold auto values derived from the length. Falls back on params."""
        p = self.raw.get("spec_params")
        return p if isinstance(p, dict) else self.params

    @property
    def workload_name(self):
        w = self.raw.get("workload")
        if isinstance(w, dict):
            return str(w.get("name") or "")
        return str(w or "")

    @property
    def workload_params(self):
        w = self.raw.get("workload")
        if isinstance(w, dict) and isinstance(w.get("params"), dict):
            return w["params"]
        return {}

    def num(self, *path):
        """A numeric field by path (validated at load), or None."""
        v = self.raw
        for key in path:
            if not isinstance(v, dict):
                return None
            v = v.get(key)
        return float(v) if _is_number(v) else None

    def int_field(self, key):
        v = self.raw.get(key)
        return int(v) if _is_number(v) else None

    @property
    def n_q(self):
        return self.int_field("n_q")

    @property
    def n_k(self):
        return self.int_field("n_k")

    @property
    def n(self):
        """The sequence length used on the x axis: n_k (equal to n_q for self-attention)."""
        nk = self.n_k
        return nk if nk is not None else self.n_q

    @property
    def threads(self):
        return self.int_field("threads")

    @property
    def seed(self):
        return self.int_field("seed")

    @property
    def config_id(self):
        cid = self.raw.get("config_id")
        return None if cid is None else str(cid)

    # Measurements ---------------------------------------------------------------------------
    @property
    def time(self):
        """Median per-forward time in seconds (None unless measured)."""
        return self.num("time", "median")

    @property
    def repetitions(self):
        t = self.raw.get("time")
        reps = t.get("repetitions") if isinstance(t, dict) else None
        return [float(r) for r in reps] if isinstance(reps, list) else []

    def memory(self, which="peak"):
        """Memory in bytes. "peak" is the larger of setup_peak and forward_peak (heap growth
        above the baseline during setup and during forward); other names read that field."""
        if which == "peak":
            vals = [self.num("memory", k) for k in ("setup_peak", "forward_peak")]
            vals = [v for v in vals if v is not None and math.isfinite(v)]
            return max(vals) if vals else None
        return self.num("memory", which)

    def error(self, metric="rel_fro"):
        return self.num("error", metric)

    @property
    def flops(self):
        return self.num("flops")

    @property
    def gflops(self):
        g = self.num("gflops")
        if g is None and self.flops is not None and self.time:
            g = self.flops / self.time / 1e9
        return g

    @property
    def weights(self):
        w = self.raw.get("weights")
        return w if isinstance(w, dict) else None

    def theory(self):
        """(time complexity, memory complexity) text from the record or the context listing."""
        info = self.context.variant_info(self.variant) or {}
        traits = self.raw.get("traits") if isinstance(self.raw.get("traits"), dict) else {}
        out = []
        for key in ("time_complexity", "memory_complexity"):
            v = self.raw.get(key) or traits.get(key) or info.get(key) or ""
            out.append(str(v))
        return tuple(out)

    def shape_key(self):
        """Everything about the problem but the length (and the variant)."""
        nq, nk = self.n_q, self.n_k
        ratio = "1" if nq == nk else "%s/%s" % (nq, nk)
        return (self.int_field("batch"), self.int_field("heads"), self.int_field("d"),
                self.int_field("d_v"), bool(self.raw.get("causal")),
                bool(self.raw.get("key_padding")), ratio)

    def workload_key(self):
        return (self.workload_name, canonical(self.workload_params))

    def where(self):
        return "%s:%d" % (self.path, self.line)


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


# Validation ------------------------------------------------------------------------------------
_INT_FIELDS = ("batch", "heads", "n_q", "n_k", "d", "d_v", "seed", "threads")
_NUM_FIELDS = ("flops", "gflops", "wall")
_OBJ_NUM_FIELDS = {
    "time": ("median", "mean", "stddev", "min", "cv", "iterations", "cold", "setup"),
    "memory": ("setup_peak", "forward_peak", "peak_rss", "analytic"),
}


def _type_error(where, field, expected, value):
    shown = json.dumps(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return InputError("%s: field '%s': expected %s, got %s" % (where, field, expected, shown))


def _check_record(raw, where):
    for key in ("variant", "status"):
        if not isinstance(raw.get(key), str) or not raw.get(key):
            raise InputError("%s: record has no '%s' (a non-empty string is required)"
                             % (where, key))
    for key in _INT_FIELDS:
        v = raw.get(key)
        if v is not None and not (_is_number(v) and math.isfinite(v) and float(v) == int(v)):
            raise _type_error(where, key, "an integer", v)
    for key in ("family", "message", "config_id"):
        v = raw.get(key)
        if v is not None and not isinstance(v, str):
            raise _type_error(where, key, "a string", v)
    for key in _NUM_FIELDS:
        v = raw.get(key)
        if v is not None and not _is_number(v):
            raise _type_error(where, key, "a number", v)
    for obj, keys in _OBJ_NUM_FIELDS.items():
        o = raw.get(obj)
        if o is None:
            continue
        if not isinstance(o, dict):
            raise _type_error(where, obj, "an object", o)
        for key in keys:
            v = o.get(key)
            if v is not None and not _is_number(v):
                raise _type_error(where, obj + "." + key, "a number", v)
    t = raw.get("time")
    if isinstance(t, dict) and t.get("repetitions") is not None:
        reps = t["repetitions"]
        if not isinstance(reps, list) or not all(_is_number(r) for r in reps):
            raise _type_error(where, "time.repetitions", "a list of numbers", reps)
    err = raw.get("error")
    if err is not None:
        if not isinstance(err, dict):
            raise _type_error(where, "error", "an object", err)
        for key, v in err.items():
            if key in ("reference", "exact_stats"):
                continue
            if v is not None and not _is_number(v):
                raise _type_error(where, "error." + key, "a number", v)
    for key in ("params", "spec_params", "diagnostics"):
        v = raw.get(key)
        if v is not None and not isinstance(v, dict):
            raise _type_error(where, key, "an object", v)
    w = raw.get("workload")
    if w is not None and not isinstance(w, (dict, str)):
        raise _type_error(where, "workload", "an object {name, params}", w)
    if raw.get("weights") is not None:
        _check_weights(raw["weights"], where)


def _check_weights(w, where):
    if not isinstance(w, dict):
        raise _type_error(where, "weights", "an object", w)
    for key in ("values", "exact"):
        m = w.get(key)
        if m is None:
            if key == "values":
                raise InputError("%s: field 'weights.values' is missing" % where)
            continue
        ok = (isinstance(m, list) and m and all(isinstance(r, list) for r in m)
              and len({len(r) for r in m}) == 1
              and all(_is_number(x) for r in m for x in r))
        if not ok:
            raise _type_error(where, "weights." + key,
                              "a non-empty rectangular list of rows of numbers", m)
    if w.get("exact") is not None:
        a, b = w["values"], w["exact"]
        if len(a) != len(b) or len(a[0]) != len(b[0]):
            raise InputError("%s: 'weights.values' and 'weights.exact' differ in shape" % where)


class Run:
    """One results file: its context and its records."""

    def __init__(self, path, context, records, skipped_lines):
        self.path = path
        self.context = context
        self.records = records
        self.skipped_lines = skipped_lines  # (line, reason) not read


def load_run(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError("%s: no such file" % path)
    except IsADirectoryError:
        raise InputError("%s: is a directory, not a results file" % path)
    except OSError as e:
        raise InputError("%s: cannot read (%s)" % (path, e.strerror or e))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError("%s: not UTF-8 text (byte offset %d); is this a results file?"
                         % (path, e.start))
    if not text.strip():
        raise InputError("%s: empty file (expected a context line and records)" % path)
    lines = text.split("\n")
    ends_with_newline = text.endswith("\n")
    if ends_with_newline:
        lines.pop()  # the empty string after the final newline
    # The last non-blank line: the only one a killed writer can leave unfinished.
    last = max(i for i, l in enumerate(lines) if l.strip())
    context = None
    records = []
    skipped = []
    for i, line in enumerate(lines):
        lineno = i + 1
        if not line.strip():
            continue
        where = "%s:%d" % (path, lineno)
        try:
            obj = json.loads(line)  # NaN and Infinity are read, then treated as missing
        except ValueError as e:
            if i == last:
                reason = ("truncated last line (no final newline)" if not ends_with_newline
                          else "malformed last line")
                warn("%s: %s, skipped: %s" % (where, reason, _short(e)))
                skipped.append((lineno, reason))
                continue
            raise InputError("%s: malformed JSON (%s)" % (where, _short(e)))
        if not isinstance(obj, dict):
            if i == last:
                warn("%s: last line is not a JSON object, skipped" % where)
                skipped.append((lineno, "not an object"))
                continue
            raise InputError("%s: expected a JSON object, got %s" % (where, type(obj).__name__))
        if context is None:
            if obj.get("type") != "context":
                raise InputError("%s: the first line must be the run context "
                                 "(\"type\": \"context\"), got type %s"
                                 % (where, json.dumps(obj.get("type"))))
            version = obj.get("schema_version")
            if version is None:
                raise InputError("%s: the context has no schema_version" % where)
            if version != SCHEMA_VERSION:
                raise InputError("%s: unknown schema version %s (this script reads version %d)"
                                 % (where, json.dumps(version), SCHEMA_VERSION))
            context = Context(obj, path)
            continue
        kind = obj.get("type")
        if kind == "context":
            raise InputError("%s: a second context line; concatenated files? Pass each run file "
                             "separately" % where)
        if kind != "result":
            warn("%s: unknown line type %s, ignored" % (where, json.dumps(kind)))
            skipped.append((lineno, "unknown type"))
            continue
        _check_record(obj, where)
        if obj["status"] not in STATUSES:
            warn("%s: unknown status '%s' (listed with the failures)" % (where, obj["status"]))
        records.append(Record(obj, context, path, lineno))
    if context is None:
        raise InputError("%s: no context line could be read" % path)
    return Run(path, context, records, skipped)


def _short(e):
    s = str(e)
    return s if len(s) < 120 else s[:117] + "..."


def load_runs(paths):
    if not paths:
        raise InputError("no results files given")
    runs = [load_run(p) for p in paths]
    machines = sorted({r.context.machine_id for r in runs})
    if len(machines) > 1:
        warn("results from %d machines (%s): plots and tables label them by machine_id"
             % (len(machines), ", ".join(machines)))
    return runs


def dedupe(records):
    """Keep one record per (machine, configuration): the later one, with a warning."""
    seen = {}
    index = {}
    out = []
    repeats = {}  # (later file, earlier file) -> [(later, earlier)]
    for r in records:
        cid = r.config_id or identity_key(r)
        key = (r.machine_id, cid)
        if key in seen:
            prev = seen[key]
            repeats.setdefault((r.path, prev.path), []).append((r, prev))
            out[index[key]] = r
        else:
            index[key] = len(out)
            out.append(r)
        seen[key] = r
    for (later, earlier), pairs in repeats.items():
        r, prev = pairs[0]
        warn("%d configuration(s) in %s repeat records of %s (first: line %d repeats line %d, "
             "%s); using the later records" % (len(pairs), later, earlier, r.line, prev.line,
                                                r.config_id or "no config_id"))
    return out


def identity_key(r):
    """The configuration without config_id: variant, resolved params, shape, workload, seed,
    threads (the fields config_id hashes)."""
    return canonical([r.variant, r.params, r.n_q, r.n_k, r.shape_key(), r.workload_key(),
                      r.seed, r.threads])


def finite(x):
    return x is not None and math.isfinite(x)
