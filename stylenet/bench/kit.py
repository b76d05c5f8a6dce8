"""What a GPU machine without package registries needs to run ``stylenet-bench --suite gpu``
from a copy of the source tree: the VGG16 layers up to relu4_3 in fp16 (about 15 MB) and wheels
of the pure-Python packages it lacks (Hydra, OmegaConf, ANTLR's runtime).

    stylenet-bench --gpu-kit .gpu-kit        # here, where PyPI is reachable

then, on the GPU machine, from the copied tree (docs/gpu.md):

    pip install --no-index --no-deps --target /tmp/site .gpu-kit/*.whl
    PYTHONPATH=/tmp/site:. python -m stylenet.cli.bench --suite gpu \
        --vgg-weights-path .gpu-kit/vgg16_relu43_fp16.pth --results-dir "$OUT"
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Pure-Python wheels the device machine lacks (its package list has torch, Lightning,
# TensorBoard, Pillow, onnx and onnxruntime): hydra-core and what it needs.
KIT_WHEELS = ("hydra-core==1.3.2", "omegaconf==2.3.0", "antlr4-python3-runtime==4.9.3")


def prepare_kit(out: Path, python_version: str = "3.12") -> list[Path]:
    from stylenet.losses.weights import export_compact

    out.mkdir(parents=True, exist_ok=True)
    made = [export_compact(out / "vgg16_relu43_fp16.pth")]
    for req in KIT_WHEELS:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "py", "--abi", "none",
               "--platform", "any", "-d", str(out), req]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            # antlr4's runtime is published as an sdist only: build its (pure-Python) wheel here
            r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                                "-w", str(out), req], capture_output=True, text=True)  # fmt: skip
            if r.returncode != 0:
                raise RuntimeError(f"cannot fetch {req}: {(r.stderr or r.stdout).strip()[-300:]}")
    made += sorted(out.glob("*.whl"))
    return made
