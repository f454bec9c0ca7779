#!/usr/bin/env python3
"""What the tensor-core convolutions' main loops cost in instructions, read from the machine code.

Compiles the convolution kernels for sm_90 (sm_90a for the wgmma files) with nvcc, disassembles them
with cuobjdump (which runs nvdisasm), finds each kernel's main loop (the loop, closed by a backward
branch, that holds the most HMMA or HGMMA instructions) and prints, per kernel, its registers and
the loop's instructions per tensor-core instruction. No GPU is needed.

Why it matters: an SM sub-partition issues one instruction a cycle, and on an H100/H200 an
mma.m16n8k16 (HMMA.16816) keeps the tensor core busy for a few cycles only; a loop that spends many
integer instructions per HMMA on addresses, bounds and divisions is limited by issue, not by the
tensor cores. The count is static (every instruction of the loop body once): branches taken rarely
(a tap's channel wrapping) are counted as if taken.

    python3 tools/sass_mainloop.py                      # every kernel of the three passes
    python3 tools/sass_mainloop.py --filter '128x128'   # those whose name matches
    python3 tools/sass_mainloop.py --kernels DIR        # another checkout's kernels/ (a comparison)
    python3 tools/sass_mainloop.py --check              # CI: no kernel above its budget (below)
    python3 tools/sass_mainloop.py --fatbins OUT_DIR    # read the build's fatbins instead of compiling
    python3 tools/sass_mainloop.py --write-budget       # records today's counts, 15% headroom

The budget (tools/sass_mainloop_budget.txt: kernel, then the most main-loop instructions per
tensor-core instruction it may take) keeps the loops lean without a GPU: `--check` fails, naming the
kernel, when one takes more, or when a kernel has no budget. A change that needs more writes a new
budget in the same commit, and says why.

nvcc: $NVCC, else tools/install-nvcc.sh. cuobjdump and nvdisasm: on PATH or beside nvcc, else
installed from NVIDIA's PyPI wheels into $RESNET_SASS_TOOLS (default ~/.cache/resnet-cuda/sass-tools).
"""

import argparse
import collections
import concurrent.futures
import os
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
SASS_WHEELS = ["nvidia-cuda-cuobjdump==13.5.37", "nvidia-cuda-nvdisasm==13.5.37"]
BUDGET = ROOT / "tools/sass_mainloop_budget.txt"
HEADROOM = 1.15
SOURCES = [
    ("conv_tc_forward.cu", "sm_90"),
    ("conv_tc_backward_data.cu", "sm_90"),
    ("conv_tc_backward_filter.cu", "sm_90"),
    ("conv_wgmma_forward_sm90a.cu", "sm_90a"),
    ("conv_wgmma_backward_sm90a.cu", "sm_90a"),
    ("conv_wgmma_tma_sm90a.cu", "sm_90a"),
    ("conv_wgmma_tma_im2col_sm90a.cu", "sm_90a"),
]


def nvcc_path():
    if os.environ.get("NVCC") and os.environ["NVCC"] != "none":
        return os.environ["NVCC"]
    out = subprocess.run([str(ROOT / "tools/install-nvcc.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"sass_mainloop: tools/install-nvcc.sh failed:\n{out.stderr}")
    return out.stdout.strip()


def sass_tools(nvcc):
    """A folder holding cuobjdump and nvdisasm (installed from PyPI when neither PATH nor nvcc's has them)."""
    beside = pathlib.Path(nvcc).parent
    for folder in [beside] + [pathlib.Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]:
        if (folder / "cuobjdump").exists() and (folder / "nvdisasm").exists():
            return folder
    cache = pathlib.Path(os.environ.get("RESNET_SASS_TOOLS", pathlib.Path.home() / ".cache/resnet-cuda/sass-tools"))
    folder = cache / "nvidia/cu13/bin"
    if not (folder / "cuobjdump").exists() or not (folder / "nvdisasm").exists():
        print(f"sass_mainloop: installing {' '.join(SASS_WHEELS)} into {cache}", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-deps",
               "--only-binary=:all:", "--target", str(cache)] + SASS_WHEELS
        if subprocess.run(cmd, stdout=sys.stderr).returncode != 0:
            sys.exit("sass_mainloop: pip could not install cuobjdump and nvdisasm")
        for tool in folder.iterdir():
            tool.chmod(0o755)  # wheels do not keep the executable bit
    return folder


def compile_and_disassemble(nvcc, tools, kernels, source, arch, work):
    cubin = work / (source + ".cubin")
    cmd = [nvcc, "-cubin", "-std=c++17", "-O3", f"-arch={arch}", "-Xptxas", "-v", "-I", str(kernels),
           str(kernels / source), "-o", str(cubin)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"sass_mainloop: nvcc failed on {source}:\n{out.stderr}")
    registers = {m.group(1): int(m.group(2)) for m in re.finditer(
        r"Compiling entry function '(\w+)' for '\w+'\n(?:.*\n){2}.*Used (\d+) registers", out.stderr)}
    env = dict(os.environ, PATH=f"{tools}{os.pathsep}{os.environ.get('PATH', '')}")
    sass = subprocess.run([str(tools / "cuobjdump"), "-sass", str(cubin)], capture_output=True, text=True,
                          env=env)
    if sass.returncode != 0:
        sys.exit(f"sass_mainloop: cuobjdump failed on {source}:\n{sass.stderr}")
    return registers, sass.stdout


def disassemble_fatbin(tools, folder, source, arch):
    """The registers and machine code of `source`'s `arch` cubin in the fatbin build.rs made of it
    (`<stem>.fatbin` in its OUT_DIR: the same nvcc, options and architectures, so the same code as
    compile_and_disassemble's, without compiling again)."""
    fatbin = folder / (pathlib.Path(source).stem + ".fatbin")
    if not fatbin.exists():
        sys.exit(f"sass_mainloop: no {fatbin} (--fatbins names the build's OUT_DIR)")
    newer = [f.name for f in (ROOT / "kernels").rglob("*") if f.is_file() and f.stat().st_mtime > fatbin.stat().st_mtime]
    if newer:
        sys.exit(f"sass_mainloop: {fatbin} is older than kernels/{newer[0]}: build again, or leave out --fatbins")
    env = dict(os.environ, PATH=f"{tools}{os.pathsep}{os.environ.get('PATH', '')}")
    runs = [subprocess.run([str(tools / "cuobjdump"), what, "-arch", arch, str(fatbin)], capture_output=True,
                           text=True, env=env) for what in ("-res-usage", "-sass")]
    for run in runs:
        if run.returncode != 0 or not run.stdout.strip():
            sys.exit(f"sass_mainloop: cuobjdump found no {arch} code in {fatbin}:\n{run.stderr}")
    return res_usage_registers(runs[0].stdout), runs[1].stdout


def res_usage_registers(page):
    """Registers a thread of each function on a `cuobjdump -res-usage` page (`Function F:` then
    `REG:N STACK:...`)."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"Function (\w+):\n\s*REG:(\d+)", page)}


def opcode(instruction):
    body = re.sub(r"^@!?U?P\w+\s+", "", instruction)
    return body.split()[0].split(".")[0]


def main_loops(sass):
    """Per function: the instructions (opcodes) of the loop with the most tensor-core instructions,
    as `name`; a kernel with two main loops of as many, apart from each other (the wgmma kernels fed
    by TMA run the pipeline with or without a producer warp, as their launch asks), gets the
    second as `name#2` (the longer one is `name`)."""
    loops = {}
    for chunk in re.split(r"\n\s*Function : ", sass)[1:]:
        name = chunk.split("\n", 1)[0].strip()
        code = [(int(a, 16), text.strip()) for a, text in re.findall(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", chunk)]
        at = {address: i for i, (address, _) in enumerate(code)}
        candidates = []  # (tensor-core instructions, length, first index, last index, opcodes)
        for i, (address, text) in enumerate(code):
            target = re.search(r"BRA\s+(?:`\(\.L_x_\d+\)\s*)?(0x[0-9a-f]+)", text)
            if not target or int(target.group(1), 16) >= address or int(target.group(1), 16) not in at:
                continue
            first = at[int(target.group(1), 16)]
            body = [opcode(t) for _, t in code[first:i + 1]]
            if "EXIT" in body:
                # Not a loop but a jump back from code placed after the kernel's end: ptxas puts an
                # mbarrier wait's retry there (TRYWAIT, then a branch back into the main loop).
                continue
            mma = sum(op in ("HMMA", "HGMMA") for op in body)
            if mma:
                candidates.append((mma, len(body), first, i, body))
        if not candidates:
            continue
        most = max(c[0] for c in candidates)
        # The longest of them first (an outer loop before the loop it holds), then any that lies
        # apart from every one taken.
        taken = []
        for c in sorted((c for c in candidates if c[0] == most), key=lambda c: (-c[1], c[2])):
            if all(c[3] < t[2] or c[2] > t[3] for t in taken):
                taken.append(c)
        for k, c in enumerate(taken[:2]):
            loops[name if k == 0 else f"{name}#2"] = c[4]
    return loops


def measure(nvcc, tools, kernels, fatbins=None):
    """(kernel, registers, main-loop opcodes) of every kernel with a tensor-core main loop, compiled
    from `kernels`, or read from the build's `fatbins` folder."""
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        if fatbins:
            jobs = [pool.submit(disassemble_fatbin, tools, fatbins, source, arch) for source, arch in SOURCES]
        else:
            jobs = [pool.submit(compile_and_disassemble, nvcc, tools, kernels, source, arch, pathlib.Path(tmp))
                    for source, arch in SOURCES]
        results = []
        for job in jobs:
            registers, sass = job.result()
            for name, body in sorted(main_loops(sass).items()):
                results.append((name, registers.get(name.split("#")[0], "?"), body))
        return results


def per_mma(body):
    count = collections.Counter(body)
    return len(body) / (count["HMMA"] + count["HGMMA"])


def read_budget():
    budget = {}
    for line in BUDGET.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, limit = line.split()
            budget[name] = float(limit)
    return budget


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--filter", default="", help="only kernels whose name matches this regex")
    parser.add_argument("--kernels", default=str(ROOT / "kernels"), help="the kernels/ folder to compile")
    parser.add_argument("--fatbins", help="build.rs's OUT_DIR: disassemble its fatbins instead of compiling")
    parser.add_argument("--check", action="store_true", help="fail if a kernel is above its budget")
    parser.add_argument("--write-budget", action="store_true", help="record the counts (15%% headroom)")
    args = parser.parse_args()
    nvcc = nvcc_path()
    tools = sass_tools(nvcc)
    fatbins = pathlib.Path(args.fatbins).resolve() if args.fatbins else None
    results = [r for r in measure(nvcc, tools, pathlib.Path(args.kernels).resolve(), fatbins)
               if re.search(args.filter, r[0])]
    if args.write_budget:
        lines = ["# tools/sass_mainloop.py --write-budget: per kernel, the most main-loop instructions per",
                 f"# tensor-core instruction (sm_90, nvcc 13.0), {HEADROOM:.2f} x the count when written."]
        lines += [f"{name} {per_mma(body) * HEADROOM:.1f}" for name, _, body in results]
        BUDGET.write_text("\n".join(lines) + "\n")
        print(f"wrote {BUDGET} ({len(results)} kernels)")
        return
    if args.check:
        budget = read_budget()
        over = [f"{name}: {per_mma(body):.1f} main-loop instructions per tensor-core instruction, budget "
                f"{budget[name]}" if name in budget else f"{name}: no budget in {BUDGET.name}"
                for name, _, body in results if name not in budget or per_mma(body) > budget[name]]
        for line in over:
            print(f"sass_mainloop: {line}", file=sys.stderr)
        if over:
            sys.exit(1)
        print(f"sass_mainloop: {len(results)} kernels within their main-loop budgets")
        return
    print("| kernel | registers | main-loop instructions | tensor-core instructions | per tensor-core instruction "
          "| ldmatrix | cp.async | other |")
    print("|---|---|---|---|---|---|---|---|")
    for name, registers, body in results:
        count = collections.Counter(body)
        mma = count["HMMA"] + count["HGMMA"]
        other = len(body) - mma - count["LDSM"] - count["LDGSTS"]
        print(f"| {name} | {registers} | {len(body)} | {mma} | {len(body) / mma:.1f} "
              f"| {count['LDSM']} | {count['LDGSTS']} | {other} |")


if __name__ == "__main__":
    main()
