from setuptools import find_packages, setup

setup(
    name="detectlab",
    version="0.1.0",
    description="Mask R-CNN, Faster R-CNN and YOLOv3 on TensorFlow 2 / Keras 3",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # tools/ and datasets/ are installed as detectlab.tools and detectlab.datasets, so the
    # `detectlab` command works outside a clone
    packages=find_packages(include=["detectlab", "detectlab.*"]) + ["detectlab.tools", "detectlab.datasets"],
    package_dir={"detectlab.tools": "tools", "detectlab.datasets": "datasets"},
    entry_points={"console_scripts": ["detectlab = detectlab.commands:main"]},
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "keras>=3.3",
        "numpy>=1.26",
        "opencv-python-headless>=4.8",
        "pycocotools>=2.0.7",
        "albumentations>=2.0,<2.1",
        "tensorboard>=2.16",
        "pyyaml>=6.0",
        "h5py>=3.8",
        "matplotlib>=3.7",  # evaluation plots and dataset stats (Agg backend, headless)
    ],
    extras_require={
        "test": ["pytest>=7.4"],
        "onnx": ["tf2onnx>=1.17", "onnx>=1.16", "onnxruntime>=1.18"],  # --format onnx (its test skips without)
        "cuda": ["tensorflow[and-cuda]>=2.16,<2.22"],
    },
)
