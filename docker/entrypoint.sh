#!/usr/bin/env bash
# Entrypoint of docker/Dockerfile.ros (docs/deployment.md):
#   1. BACKEND=tensorrt (default): build or reuse the TensorRT engine of $MODEL_ONNX for this
#      GPU (NAME.engine + NAME.engine.json next to it; instrument_seg.inference.Segmenter
#      rebuilds it when the sidecar names another GPU or TensorRT version);
#      BACKEND=onnxruntime: run the ONNX itself;
#   2. exec ros2 launch instrument_seg seg.launch.py model_path:=... backend:=... "$@".
# Bad input ends with one "error: ..." line and exit status 2, before ROS starts.
set -euo pipefail

MODEL_ONNX="${MODEL_ONNX:-/models/model.onnx}"
BACKEND="${BACKEND:-tensorrt}"

fail() {
    echo "error: $*" >&2
    exit 2
}

for setup in "${ROS_SETUP:-/opt/ros/jazzy/setup.bash}" "${WS_SETUP:-/ws/install/setup.bash}"; do
    [[ -f "$setup" ]] || fail "ROS setup file $setup does not exist"
    # shellcheck disable=SC1090  # the paths come from the image's environment
    set +u && source "$setup" && set -u
done

[[ "$MODEL_ONNX" == *.onnx ]] || fail "MODEL_ONNX must name an .onnx file, got '$MODEL_ONNX'"
[[ -f "$MODEL_ONNX" ]] || fail "no model at $MODEL_ONNX (mount the folder of the exported ONNX \
at /models, or set MODEL_ONNX)"

case "$BACKEND" in
    tensorrt)
        MODEL="${MODEL_ONNX%.onnx}.engine"
        echo "entrypoint: TensorRT engine $MODEL from $MODEL_ONNX (built on first start)" >&2
        python3 - "$MODEL_ONNX" <<'PY' || exit $?
import sys

from instrument_seg.errors import InputError
from instrument_seg.inference import Segmenter

try:
    Segmenter.from_path(sys.argv[1], backend="tensorrt").close()
except InputError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
PY
        ;;
    onnxruntime)
        MODEL="$MODEL_ONNX"
        ;;
    *)
        fail "BACKEND must be tensorrt or onnxruntime, got '$BACKEND'"
        ;;
esac

exec ros2 launch instrument_seg seg.launch.py model_path:="$MODEL" backend:="$BACKEND" "$@"
