#!/usr/bin/env python3
"""Reads wrk --latency reports and prints medians and ratios (scripts/bench.sh section 3).

`table.py parse PHASE NAME RUN [FILE...] >> results.tsv` appends one line: phase, name, run,
requests/s, p50 ms, p99 ms, errors, read from one wrk output on stdin, or from the outputs of
several wrk run at once against different servers (the cluster's nodes): their rates and errors
added up, their p50 and p99 the highest of them (percentiles of separate runs cannot be merged;
the slowest server's is the honest bound). `table.py report results.tsv` prints, per phase, the
median of each name's runs, its ratio to Alertmanager and to nginx, and the single runs.
"""
import statistics
import sys
from collections import defaultdict

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def ms(text):
    for unit in ("us", "ms", "s"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * UNITS[unit]
    raise ValueError(f"not a wrk latency: {text!r}")


def figures(lines, what):
    """(requests/s, p50 ms, p99 ms, errors) of one wrk --latency report."""
    rps = p50 = p99 = None
    errors = 0
    for line in lines:
        words = line.split()
        if line.startswith("Requests/sec:"):
            rps = float(words[1])
        elif len(words) == 2 and words[0] == "50%":
            p50 = ms(words[1])
        elif len(words) == 2 and words[0] == "99%":
            p99 = ms(words[1])
        elif "Non-2xx or 3xx responses" in line:
            errors = int(words[-1])
        elif line.lstrip().startswith("Socket errors"):
            errors += sum(int(w.strip(",")) for w in words if w.strip(",").isdigit())
    if rps is None or p50 is None or p99 is None:
        sys.exit(f"{what}: no figures in the wrk output")
    return rps, p50, p99, errors


def parse(phase, name, run, *files):
    what = f"{phase} {name} run {run}"
    if files:
        runs = []
        for path in files:
            with open(path) as f:
                runs.append(figures(f, f"{what} ({path})"))
    else:
        runs = [figures(sys.stdin, what)]
    rps = sum(r[0] for r in runs)
    p50 = max(r[1] for r in runs)
    p99 = max(r[2] for r in runs)
    errors = sum(r[3] for r in runs)
    print(f"{phase}\t{name}\t{run}\t{rps:.0f}\t{p50:.3f}\t{p99:.3f}\t{errors}")


def report(path):
    rows = defaultdict(list)
    order = []
    for line in open(path):
        phase, name, _run, rps, p50, p99, errors = line.rstrip("\n").split("\t")
        if (phase, name) not in rows:
            order.append((phase, name))
        rows[(phase, name)].append((float(rps), float(p50), float(p99), int(errors)))

    def med(phase, name, i):
        got = rows.get((phase, name))
        return statistics.median(r[i] for r in got) if got else None

    for phase in dict.fromkeys(p for p, _ in order):
        am = med(phase, "alertmanager", 0) or med("quiet", "alertmanager", 0)
        ceiling = med("quiet", "nginx", 0)
        print(f"-- {phase} (medians of {len(rows[order[0]])} runs; ratios of medians)")
        print(f"{'':28} {'req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'x AM':>6} {'of nginx':>9}  runs (req/s)")
        for p, name in order:
            if p != phase:
                continue
            rps, p50, p99 = (med(p, name, i) for i in range(3))
            bad = sum(r[3] for r in rows[(p, name)])
            base, top = am, ceiling
            if "batch" in name:
                # 100 alerts a POST: compared with Alertmanager's batches, not with nginx.
                base, top = med(phase, "alertmanager batch", 0), None
            x_am = f"{rps / base:.2f}" if base else "-"
            of_nginx = f"{100 * rps / top:.0f} %" if top else "-"
            runs = ", ".join(f"{r[0]:,.0f}" for r in rows[(p, name)])
            note = f"  ({bad} non-2xx or socket errors)" if bad else ""
            print(f"{name:28} {rps:>9,.0f} {p50:>7.2f} {p99:>7.2f} {x_am:>6} {of_nginx:>9}  {runs}{note}")


if __name__ == "__main__":
    if sys.argv[1] == "parse":
        parse(*sys.argv[2:])
    else:
        report(sys.argv[2])
