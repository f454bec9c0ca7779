#!/usr/bin/env bash
# Checks, without a GPU, that every test step of tools/device-check.sh selects tests of the test
# executables `cargo test` has just built, and that every GPU test is run by a step (the check's
# LIST=1 mode, which tools/device-bundle.sh also runs over the release bundle): a renamed or moved
# test then fails CI at the commit that renames it, not a device call that "passes" with 0 tests.
# The executables are linked into a scratch copy of the layout device-check.sh expects
# (tools/ and device/), so a device/ folder here (the bundle) is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
suites=(kernels conv_kernels tensor_core wgmma tma conv_tc bf16_kernels mixed_precision cuda_graph
    device_data nccl_device)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/tools" "$scratch/device"
cp tools/device-check.sh "$scratch/tools/"
cargo test --no-run --message-format=json "${suites[@]/#/--test=}" 2>/dev/null | python3 -c '
import json, os, sys
for line in sys.stdin:
    if not line.startswith("{"):
        continue
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        os.symlink(m["executable"], os.path.join(sys.argv[1], m["target"]["name"]))
' "$scratch/device"
for suite in "${suites[@]}"; do
    [ -x "$scratch/device/$suite" ] || {
        echo "error: cargo test built no executable for the test suite $suite" >&2
        exit 1
    }
done
LIST=1 PHASES="1 2 3 4" FULL=1 OUT="$scratch/out" "$scratch/tools/device-check.sh" >/dev/null
echo "every test step of tools/device-check.sh selects tests, and every GPU test is in one"
