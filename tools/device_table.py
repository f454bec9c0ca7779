#!/usr/bin/env python3
"""The summary tables of a device check (tools/device-check.sh), in Markdown, from its raw outputs:

1. the training step, ours (`bench-*.txt`, the JSON of `resnet-cuda bench --json`) against PyTorch's
   (`pytorch-step.json`, eager bf16, `pytorch-step-f32.json`, eager fp32 and TF32, and
   `pytorch-compiled.json`, torch.compile with CUDA graphs, where those phases ran) measured in the
   same call, with the speed ratio PyTorch ms / our ms (above 1: we are faster);
2. where our step's time goes (bench's synchronised per-layer-type pass);
3. per convolution shape of one model and batch, the TFLOP/s of forward, backward-data and
   backward-filter from the criterion kernel benchmarks (`bench-kernels.txt`), against the ceilings
   measured in the same call (`ceilings.json`);
4. the paper's CIFAR schedule timed end to end (`cifar-schedule` in summary.txt, its metrics.jsonl).

    python3 tools/device_table.py RAW_DIR [RAW_DIR ...] [--shapes resnet50/n256]

Several folders (one per device call): the step table has the rows of each, every ratio within its
own call (a "call" column names the folder); the layer tables take the first folder's run of each
model, batch and variant; the kernel benchmarks of all
of them are merged (a later folder's figure wins), for a suite split across calls; the ceilings and
the CIFAR schedule come from the first folder that has them. Standard library only.
"""
import argparse
import json
import os
import re

UNITS = {"Kelem/s": 1e3, "Melem/s": 1e6, "Gelem/s": 1e9, "Telem/s": 1e12, "elem/s": 1.0}


def bench_json(path):
    """The JSON object a `bench --json` run printed (its last line starting with '{')."""
    with open(path) as f:
        lines = [line for line in f if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def step_rows(raw):
    ours = {}
    for name in sorted(os.listdir(raw)):
        m = re.fullmatch(r"bench-(resnet\d+)-b(\d+)(?:-(f32|bf16|eager|nopdl|wgmma|wgmma-tma|wgmma-tma-noproducer|tuned|nofusebn|nofusebnin|plain))?\.txt", name)
        if m:
            j = bench_json(os.path.join(raw, name))
            if j:
                # Runs before --precision existed were f32, and eager (no CUDA graphs).
                label = j.get("precision", "f32")
                if "cuda_graph" in j:
                    label += ", graph" if j["cuda_graph"] else ", eager"
                if m[3] == "nopdl":
                    label += ", no PDL"
                if m[3] == "wgmma":
                    label += ", wgmma"
                if m[3] == "wgmma-tma":
                    label += ", wgmma + TMA"
                if m[3] == "wgmma-tma-noproducer":
                    label += ", wgmma + TMA, no producer warp"
                if m[3] == "tuned":
                    label += ", conv tuning"
                if m[3] == "nofusebn":
                    label += ", BN sums unfused"
                if m[3] == "nofusebnin":
                    label += ", BN output stored"
                if m[3] == "plain":
                    label += ", no fusion, no PDL (retry)"
                ours[(m[1], int(m[2]), label)] = j
    theirs = {}
    for file in ("pytorch-step.json", "pytorch-step-f32.json", "pytorch-compiled.json"):
        path = os.path.join(raw, file)
        if os.path.exists(path):
            for r in json.load(open(path)):
                # Files from before torch.compile was measured have no "mode": they are eager.
                compiled = r.get("mode", "eager") != "eager"
                key = r["precision"] + (" compiled" if compiled else "")
                theirs[(r["model"], r["batch_size"], key)] = r["median_ms"]
    return ours, theirs


def fmt_ratio(ours_ms, theirs_ms):
    if theirs_ms is None:
        return "–", "–"
    return f"{theirs_ms:.2f}", f"{theirs_ms / ours_ms:.2f}x"


def step_table(calls):
    """`calls`: (folder label or None, ours, theirs) per call; ratios only within a call."""
    named = any(label for label, _, _ in calls)
    out = [
        ("| call " if named else "")
        + "| model | batch | ours | ours ms/step | ours images/s | PyTorch fp32 ms | ratio | PyTorch TF32 ms "
        "| ratio | PyTorch bf16 ms | ratio | PyTorch bf16 compiled ms | ratio |",
        ("|---" if named else "") + "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, ours, theirs in calls:
        for (model, batch, precision), j in sorted(ours.items(), key=lambda kv: (kv[0][0] != "resnet20", kv[0])):
            ms = j["ms_per_step"]
            cells = ([label] if named else []) + [model, str(batch), precision, f"{ms:.2f}", f"{j['images_per_sec']:.0f}"]
            for precision in ("fp32", "tf32", "bf16", "bf16 compiled"):
                cells += fmt_ratio(ms, theirs.get((model, batch, precision)))
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def layer_table(ours):
    out = [
        "| model | batch | precision | step ms | conv ms | batch norm ms | elementwise ms | other ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (model, batch, precision), j in sorted(ours.items()):
        t = j["per_layer_type_ms"]
        out.append(
            f"| {model} | {batch} | {precision} | {j['ms_per_step']:.2f} | {t['conv_ms']:.2f} | {t['bn_ms']:.2f} "
            f"| {t['elementwise_ms']:.2f} | {t['other_ms']:.2f} |"
        )
    return "\n".join(out)


def kernel_tables(ours, shown=12):
    """Per step run, the kernels that take most of the device's time (bench's per_kernel, each
    launch timed by itself), and the busy time against the step's."""
    out = []
    for (model, batch, precision), j in sorted(ours.items()):
        rows = j.get("per_kernel")
        if not rows:
            continue
        busy = j["kernel_ms_per_step"]
        launches = sum(r["calls_per_step"] for r in rows)
        out.append(
            f"\n{model} b{batch} ({precision}): {launches:.0f} launches, {busy:.3f} ms busy in a "
            f"{j['ms_per_step']:.3f} ms step\n"
        )
        out.append("| kernel | calls | ms | share |")
        out.append("|---|---|---|---|")
        for r in rows[:shown]:
            out.append(
                f"| {r['kernel']} | {r['calls_per_step']:.0f} | {r['ms_per_step']:.3f} "
                f"| {100 * r['ms_per_step'] / busy:.1f}% |"
            )
    return "\n".join(out)


def kernel_figures(raw):
    """{benchmark id: (median seconds, median throughput per second)} from criterion's text output."""
    path = os.path.join(raw, "bench-kernels.txt")
    figures = {}
    if not os.path.exists(path):
        return figures
    name = None
    time_s = None
    for line in open(path):
        line = line.rstrip("\n")
        if re.fullmatch(r"[a-z0-9_]+/[a-z0-9]+/\S+", line):
            name, time_s = line, None
        elif name and "time:" in line:
            v, unit = re.search(r"\[\S+ \S+ (\S+) (\S+)", line).groups()
            time_s = float(v) * {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
        elif name and "thrpt:" in line:
            v, unit = re.search(r"\[\s*\S+ \S+\s+(\S+) (\S+)", line).groups()
            figures[name] = (time_s, float(v) * UNITS[unit])
            name = None
    return figures


def conv_table(figures, shapes, ceilings, suffix=""):
    """Per shape, the TFLOP/s of the three passes in one precision: f32 (group names as they are)
    or bf16 (`suffix` "_bf16"), against that precision's ceiling measured in the same call."""
    ops = tuple(op + suffix for op in ("conv_forward", "conv_backward_data", "conv_backward_filter"))
    prefix = shapes + "_"
    rows = {}
    for key, (_, rate) in figures.items():
        op, model, shape = key.split("/", 2)
        if op in ops and f"{model}/{shape}".startswith(prefix):
            rows.setdefault(shape[len(prefix) - len(model) - 1 :], {})[op] = rate / 1e12
    fp32 = ceilings.get("fp32_tflops")
    bf16 = ceilings.get("bf16_tensor_tflops")
    ceiling, ceiling_name = (bf16, "bf16 tensor-core") if suffix == "_bf16" else (fp32, "fp32")
    out = [
        f"Ceilings measured in the same call: fp32 (cuBLAS SGEMM, TF32 off) {fp32:.1f} TFLOP/s, "
        f"bf16 tensor cores {bf16:.0f} TFLOP/s, copy {ceilings.get('copy_tb_per_s', 0):.2f} TB/s."
        if fp32 and bf16
        else "No ceilings measured.",
        "",
        "| shape (HxW, C, K, RxS, stride) | forward TFLOP/s | backward-data | backward-filter "
        f"| best, % of {ceiling_name} ceiling |",
        "|---|---|---|---|---|",
    ]
    for shape in sorted(rows, key=lambda s: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", s)]):
        r = rows[shape]
        cells = [f"{r[op]:.1f}" if op in r else "not measured" for op in ops]
        best = max(r.values())
        pct = f"{100 * best / ceiling:.0f}%" if ceiling else "–"
        out.append(f"| {shape} | " + " | ".join(cells) + f" | {pct} |")
    return "\n".join(out)


def cifar_schedule(raw):
    """The paper's CIFAR schedule run (step `cifar-schedule`): end-to-end seconds and exit code from
    summary.txt, the last logged iteration and the last test error from its metrics.jsonl."""
    seconds = rc = None
    summary = os.path.join(raw, "summary.txt")
    if os.path.exists(summary):
        for line in open(summary):
            m = re.match(r"cifar-schedule\s+rc=(\S+)\s+(\d+)s", line)
            if m:
                rc, seconds = m[1], int(m[2])
    metrics = os.path.join(raw, "run-cifar-schedule", "metrics.jsonl")
    if seconds is None or not os.path.exists(metrics):
        return None
    last_iter, test_err = 0, None
    for line in open(metrics):
        j = json.loads(line)
        last_iter = max(last_iter, j.get("iter", 0))
        if "test_err" in j:
            test_err = j["test_err"]
    err = "–" if test_err is None else f"{100 * test_err:.2f}%"
    return (
        "| iterations reached | seconds (end to end) | exit | last test error |\n|---|---|---|---|\n"
        f"| {last_iter} of 64000 | {seconds} | {rc} | {err} |"
    )


def tuning_table(ours):
    """The passes a tuned bench (`--conv-tuning on`) kept on another launch than the plan's."""
    out = []
    for (model, batch, label), j in sorted(ours.items()):
        records = j.get("conv_tuning") or []
        if not records:
            continue
        planned = sum(r["planned_ms"] for r in records)
        chosen = sum(r["chosen_ms"] for r in records)
        out.append(f"\n{model} b{batch} ({label}): {len(records)} passes timed, one call of each "
                   f"{chosen:.3f} ms against the plan's {planned:.3f} ms\n")
        out.append("| pass | shape | plan's launch | ms | kept | ms | plan / kept |")
        out.append("|---|---|---|---|---|---|---|")
        for r in records:
            if r["chosen"] != r["planned"]:
                ratio = r["planned_ms"] / r["chosen_ms"] if r["chosen_ms"] > 0 else float("inf")
                out.append(f"| {r['pass']} | {r['shape']} | {r['planned']} | {r['planned_ms']:.3f} "
                           f"| {r['chosen']} | {r['chosen_ms']:.3f} | {ratio:.2f} |")
        for r in records:
            for failure in r.get("failed", []):
                out.append(f"left out of {r['pass']} {r['shape']}: {failure}")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("raw", nargs="+")
    p.add_argument("--shapes", default="resnet50/n256")
    args = p.parse_args()
    several = len(set(args.raw)) > 1
    calls = []
    ours = {}
    for raw in dict.fromkeys(args.raw):
        call_ours, call_theirs = step_rows(raw)
        if call_ours or not several:
            calls.append((os.path.basename(os.path.normpath(raw)) if several else None, call_ours, call_theirs))
        for key, run in call_ours.items():  # the per-layer and per-kernel tables: the first call's run
            ours.setdefault(key, run)
    figures = {}
    for raw in args.raw:
        figures.update(kernel_figures(raw))
    ceilings_paths = [os.path.join(raw, "ceilings.json") for raw in args.raw]
    ceilings_path = next((p for p in ceilings_paths if os.path.exists(p)), None)
    ceilings = json.load(open(ceilings_path)) if ceilings_path else {}
    print("Training step (ratio: PyTorch ms / ours, measured in the same call; above 1, ours is faster)\n")
    print(step_table(calls))
    print("\nOur step by layer type (bench's synchronised pass)\n")
    print(layer_table(ours))
    kernels = kernel_tables(ours)
    if kernels:
        print("\nWhere the device's time goes, kernel by kernel (bench's synchronised pass)")
        print(kernels)
    tuning = tuning_table(ours)
    if tuning:
        print("\nConvolution tuning: the passes kept on another launch than the plan's (bench's first step)")
        print(tuning)
    schedule = next((s for s in map(cifar_schedule, args.raw) if s), None)
    if schedule:
        print("\nThe paper's CIFAR schedule (resnet20, 64,000 iterations of 128; goal: 60 s)\n")
        print(schedule)
    for suffix, name in (("", "f32"), ("_bf16", "bf16")):
        if any(key.split("/", 1)[0] == "conv_forward" + suffix for key in figures) or suffix == "":
            print(f"\nConvolutions of {args.shapes} in {name} (criterion, median)\n")
            print(conv_table(figures, args.shapes, ceilings, suffix))


if __name__ == "__main__":
    main()
