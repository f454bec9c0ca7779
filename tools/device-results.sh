#!/usr/bin/env bash
# Files a device check's outputs (what tools/device-check.sh left under $OUT: summary.txt and
# raw.tar.gz) into the repository, where the README's GPU figures point:
#
#   tools/device-results.sh FILES_AT [LABEL]
#
# FILES_AT is the folder the device tool's reply names (files_at). The raw outputs go to
# docs/<gpu>/<today>-callN (<gpu> from nvidia-smi's output: h200, h100, ...; the next free N; LABEL,
# when given, is appended: -callN-LABEL), files over
# 1 MiB are left out (checkpoints, data; the list is printed), and the tables of
# tools/device_table.py are printed, ready for the README's "On an H200".
set -euo pipefail
cd "$(dirname "$0")/.."

src=${1:?usage: tools/device-results.sh FILES_AT [LABEL]}
label=${2:-}
archive=$(find "$src" -name raw.tar.gz | head -1)
[ -n "$archive" ] || {
    echo "error: no raw.tar.gz under $src (did the device check reach its end?)" >&2
    exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -C "$tmp" -xzf "$archive"
# The GPU's model (H200, H100, ...) from the first line naming one in nvidia-smi's table.
gpu=$(grep -oE "NVIDIA [A-Z][0-9]+" "$tmp/device-raw/nvidia-smi.txt" 2>/dev/null | head -1 | cut -d' ' -f2 |
    tr '[:upper:]' '[:lower:]')
gpu=${gpu:-unknown-gpu}
day=$(date -u +%F)
n=1
while compgen -G "docs/$gpu/$day-call$n*" >/dev/null; do
    n=$((n + 1))
done
dest="docs/$gpu/$day-call$n${label:+-$label}"
mkdir -p "$dest"
# The archive holds one folder, device-raw/.
cp -r "$tmp"/device-raw/. "$dest"/
find "$dest" -type f -size +1M -print -delete | sed 's/^/left out (over 1 MiB): /'
find "$dest" -type d -empty -delete
echo "filed under $dest ($(du -sh "$dest" | cut -f1))"
echo
python3 tools/device_table.py "$dest"
