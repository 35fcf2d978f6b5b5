#!/usr/bin/env bash
# The GPU check of issue 16 (item 5), run ON the lent device from the repository root, after
# benchmarks/gpu_stage.sh has filled .gpu/ here (it prints the exact `run` tool call):
#
#   bash benchmarks/gpu_check.sh      # full: CUDA, D4D at 512x640 (estimated 5-7 min on an H100)
#   OUT=DIR bash benchmarks/gpu_check.sh --stage STAGE --smoke --device cpu   # tiny, on a CPU
#
# 1. installs the carried wheels (.gpu/wheels/*.whl) offline into $WORK/site, on
#    PYTHONPATH (the device's python3 is itself a venv: a --system-site-packages venv made from
#    it would lose its torch), with src/ first, so `python3 -m instrument_seg` is this tree;
# 2. runs benchmarks/gpu_check.py run: environment, CUDA tests, cue cache primed from the carried
#    objectness, train + export + evaluate of the defaults and of the authors' recipe (Lite0
#    encoder) at 512x640, CUDA latency, TensorRT and the ROS node where they import; one
#    PASS/SKIP/FAIL line per stage, each stage under its own time limit inside one budget
#    (--budget, default 540 s: the whole call stays under the tool's 600 s);
# 3. writes gpu_check.json, gpu_check.md, gpu_check.log and the runs' loss.csv to $OUT (or
#    ./gpu_check_out); runs, models and stage logs go to $WORK (default a /tmp folder when $OUT
#    is set, else $OUT_DIR/work).
# Exit status: 0 all stages PASS or SKIP, 1 a stage FAILed, 2 bad setup. Options other than
# --stage/--python go to gpu_check.py run (--help lists them).
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 2

PY=${PYTHON:-python3}
STAGE=.gpu
ARGS=()
while [ $# -gt 0 ]; do
    case "$1" in
        --stage) STAGE=$2; shift 2 ;;
        --python) PY=$2; shift 2 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
OUT_DIR=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT_DIR" || exit 2
export PYTHONUNBUFFERED=1

LOG="$OUT_DIR/gpu_check.log"
: >"$LOG"
say() { echo "$*"; echo "$*" >>"$LOG"; }

# runs, models, stage logs and the carried wheels' install: outside $OUT on the device (the
# tool returns 8 files at most)
if [ -n "${OUT:-}" ]; then WORK=${WORK:-$(mktemp -d /tmp/gpu_check_work.XXXXXX)}; fi
WORK=${WORK:-$OUT_DIR/work}
mkdir -p "$WORK" || exit 2

started=$(date +%s)
shopt -s nullglob
wheels=("$STAGE"/wheels/*.whl)
SITE=""
wheels_failed=0
if [ ${#wheels[@]} -gt 0 ]; then
    SITE=$WORK/site
    rm -rf "$SITE"
    if "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$SITE" "${wheels[@]}" >"$OUT_DIR/wheels.log" 2>&1; then
        say "PASS wheels ($(( $(date +%s) - started )) s): ${#wheels[@]} carried wheel(s)" \
            "installed into $SITE"
    else
        say "FAIL wheels: pip install of ${wheels[*]} failed: $(tail -n 1 "$OUT_DIR/wheels.log")"
        wheels_failed=1
    fi
else
    say "SKIP wheels: none staged in $STAGE/wheels"
fi
export PYTHONPATH="$PWD/src${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"

"$PY" benchmarks/gpu_check.py run --stage "$STAGE" --out "$OUT_DIR" --work "$WORK" "${ARGS[@]}"
status=$?
[ "$wheels_failed" = 1 ] && status=1
exit $status
