#!/usr/bin/env python3
"""Per-kernel tables, in Markdown, from Nsight Compute's raw CSV pages (tools/device-check.sh's
phase 4: `ncu --page raw --csv --log-file FILE`, optionally gzipped), for the convolutions' speed
work done without a GPU: what bounds each kernel, read from the hardware counters.

    python3 tools/ncu_table.py FILE [FILE ...] [--top N] [--source SOURCE_FILE ...]

For each file, one table, kernels by duration (longest first), one row per profiled launch:
duration; SM and memory throughput and DRAM throughput (% of peak over the launch); the tensor
pipe's active cycles (% of peak, the largest of the tensor-pipe utilisation metrics collected:
HMMA for mma.sync, GMMA for wgmma, as the chip names them); issue slots busy (% of the sub-
partitions' one instruction a cycle); achieved occupancy; registers per thread; shared-memory
bank conflicts per shared load wavefront; and the three largest warp stall reasons, in warp
cycles per issued instruction (WarpStateStats: long_scoreboard = global memory, barrier =
__syncthreads, mio_throttle/short_scoreboard = shared memory and ldmatrix, math_pipe_throttle = a
busy pipe, wait = fixed-latency dependencies, not_selected = more warps ready than issue slots).

--source files are ncu's source page (`--section SourceCounters --page source --print-source sass
--csv`): for each, the instructions with the most warp stall samples (where the kernel's warps
wait, instruction by instruction), with every column ncu printed for them.

The raw page: a header row starting "ID","Process ID", a row of units, then a row per profiled
kernel; ncu's own messages (==PROF==, ==WARNING==) are skipped. A metric a file lacks shows as
"–" (ncu names some differently across versions and chips). Standard library only.
"""
import argparse
import csv
import gzip
import re
import sys

DURATION = ("gpu__time_duration.sum",)
TIME_UNITS = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3, "s": 1e6,
              "second": 1e6}
# The fixed columns: (table heading, metric names to try in order; the first one present is used).
FIXED = [
    ("SM %", ("sm__throughput.avg.pct_of_peak_sustained_elapsed",)),
    ("mem %", ("gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",)),
    ("DRAM %", ("dram__throughput.avg.pct_of_peak_sustained_elapsed",
                "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed")),
    ("issue %", ("sm__inst_issued.avg.pct_of_peak_sustained_active",
                 "smsp__issue_active.avg.pct_of_peak_sustained_active")),
    ("occupancy %", ("sm__warps_active.avg.pct_of_peak_sustained_active",)),
    ("regs", ("launch__registers_per_thread",)),
]
TENSOR_PIPE = re.compile(r"pipe_tensor\w*cycles_active\.avg\.pct_of_peak_sustained_active$")
STALL = re.compile(r"^smsp__average_warps?_issue_stalled_(\w+?)_per_issue_active\.ratio$")
BANK_CONFLICTS = "l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum"
SHARED_LOAD_WAVEFRONTS = "l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum"


def open_text(path):
    return gzip.open(path, "rt", errors="replace") if path.endswith(".gz") else open(path, errors="replace")


def read_raw_page(path):
    """(header, units, rows) of one raw CSV page; rows are lists of strings."""
    with open_text(path) as f:
        lines = [line for line in f if line.startswith('"')]
    parsed = list(csv.reader(lines))
    start = next((i for i, r in enumerate(parsed) if r[:2] == ["ID", "Process ID"]), None)
    if start is None or start + 1 >= len(parsed):
        return None, None, []
    header, units = parsed[start], parsed[start + 1]
    rows = [r for r in parsed[start + 2:] if len(r) == len(header) and r[0] != "ID"]
    return header, units, rows


def number(text):
    """A metric's value as a float ("1,234.5" -> 1234.5), or None for "n/a" and the like."""
    try:
        return float(text.replace(",", ""))
    except (AttributeError, ValueError):
        return None


def fmt(value, digits=1):
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if digits else f"{value:.0f}"


def kernel_rows(header, units, rows):
    col = {name: i for i, name in enumerate(header)}

    def first(row, names):
        for name in names:
            if name in col:
                value = number(row[col[name]])
                if value is not None:
                    return value
        return None

    tensor_cols = [i for name, i in col.items() if TENSOR_PIPE.search(name)]
    stall_cols = [(m[1], i) for name, i in col.items() if (m := STALL.match(name))]
    duration_col = next((col[n] for n in DURATION if n in col), None)
    out = []
    for row in rows:
        micros = None
        if duration_col is not None:
            value = number(row[duration_col])
            scale = TIME_UNITS.get(units[duration_col].strip())
            micros = value * scale if value is not None and scale is not None else None
        tensor = [v for v in (number(row[i]) for i in tensor_cols) if v is not None]
        stalls = sorted(((number(row[i]), reason) for reason, i in stall_cols if number(row[i]) is not None),
                        reverse=True)
        # "selected" is the issue itself (1 cycle per issued instruction), not a stall.
        stalls = [(v, r) for v, r in stalls if r != "selected" and v > 0][:3]
        conflicts, wavefronts = first(row, (BANK_CONFLICTS,)), first(row, (SHARED_LOAD_WAVEFRONTS,))
        out.append({
            "kernel": row[col["Kernel Name"]] if "Kernel Name" in col else "?",
            "grid": row[col["Grid Size"]] if "Grid Size" in col else "",
            "block": row[col["Block Size"]] if "Block Size" in col else "",
            "us": micros,
            "fixed": [first(row, names) for _, names in FIXED],
            "tensor": max(tensor) if tensor else None,
            "stalls": stalls,
            "conflicts": conflicts / wavefronts if conflicts is not None and wavefronts else None,
        })
    return out


def table(path, top):
    header, units, rows = read_raw_page(path)
    if header is None:
        return f"### {path}\n\nno raw page found (no header row \"ID\",\"Process ID\",...)\n"
    kernels = sorted(kernel_rows(header, units, rows), key=lambda k: -(k["us"] or 0.0))
    total = sum(k["us"] or 0.0 for k in kernels)
    lines = [f"### {path}", "",
             f"{len(kernels)} profiled launches, {total / 1e3:.3f} ms in all (each alone, caches flushed)", "",
             "| kernel | grid | block | µs | " + " | ".join(h for h, _ in FIXED) +
             " | tensor pipe % | bank conflicts / ld wavefront | top stalls (cycles per issue) |",
             "|---|---|---|---" + "|---" * len(FIXED) + "|---|---|---|"]
    for k in kernels[:top] if top else kernels:
        fixed = [fmt(v, 0 if h == "regs" else 1) for (h, _), v in zip(FIXED, k["fixed"])]
        stalls = ", ".join(f"{r} {v:.2f}" for v, r in k["stalls"]) or "–"
        lines.append(f"| {k['kernel']} | {k['grid']} | {k['block']} | {fmt(k['us'])} | " + " | ".join(fixed) +
                     f" | {fmt(k['tensor'])} | {fmt(k['conflicts'], 2)} | {stalls} |")
    return "\n".join(lines) + "\n"


def hot_instructions(path, top):
    """The rows of a source page with the most warp stall samples: the columns whose heading starts
    "Warp Stall Sampling (All" rank them; every page ncu printed in the file (one per kernel) is
    ranked on its own."""
    with open_text(path) as f:
        parsed = list(csv.reader(line for line in f if line.startswith('"')))
    out = [f"### {path}", ""]
    pages = [i for i, r in enumerate(parsed) if any(c.startswith("Warp Stall Sampling (All") for c in r)]
    if not pages:
        return "\n".join(out + ["no source page found (no \"Warp Stall Sampling (All Samples)\" column)", ""])
    for n, start in enumerate(pages):
        header = parsed[start]
        end = pages[n + 1] if n + 1 < len(pages) else len(parsed)
        rows = [r for r in parsed[start + 1:end] if len(r) == len(header)]
        samples = next(i for i, c in enumerate(header) if c.startswith("Warp Stall Sampling (All"))
        total = sum(number(r[samples]) or 0.0 for r in rows)
        ranked = sorted(rows, key=lambda r: -(number(r[samples]) or 0.0))[:top or 25]
        out += [f"page {n + 1}: {len(rows)} instructions, {total:.0f} samples", "",
                "| share | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
        for r in ranked:
            share = 100.0 * (number(r[samples]) or 0.0) / total if total else 0.0
            out.append(f"| {share:.1f}% | " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
        out.append("")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="raw pages")
    parser.add_argument("--top", type=int, default=0, help="rows per table (0: all; source pages: 25)")
    parser.add_argument("--source", nargs="*", default=[], help="source pages (SourceCounters)")
    args = parser.parse_args()
    status = 0
    for path, render in [(p, table) for p in args.files] + [(p, hot_instructions) for p in args.source]:
        try:
            print(render(path, args.top))
        except OSError as e:
            print(f"error: {path}: {e.strerror}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
