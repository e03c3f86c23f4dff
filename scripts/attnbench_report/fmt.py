"""Human-readable numbers for tables (CSV files keep the raw SI values)."""

import math


def fmt_time(s):
    if s is None or not math.isfinite(s):
        return "–"
    a = abs(s)
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if a >= scale or unit == "ns":
            return "%.3g %s" % (s / scale, unit)
    return "%.3g s" % s


def fmt_bytes(b):
    if b is None or not math.isfinite(b):
        return "–"
    a = abs(b)
    for unit, scale in (("GiB", 2.0 ** 30), ("MiB", 2.0 ** 20), ("KiB", 2.0 ** 10)):
        if a >= scale:
            return "%.3g %s" % (b / scale, unit)
    return "%d B" % b


def fmt_num(x, digits=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return str(x)
    return "%.*g" % (digits, x)


def fmt_fixed(x, places=2):
    if x is None or not math.isfinite(x):
        return "–"
    return "%.*f" % (places, x)


def fmt_pct(x):
    if x is None or not math.isfinite(x):
        return "–"
    return "%.1f%%" % (100.0 * x)
