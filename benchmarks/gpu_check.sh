#!/usr/bin/env bash
# The GPU check of embed (issue 7): under 6 minutes on a GPU machine without network.
#
#   ../shared/device/make-kit.sh                    # here, once: builds .devkit/ (Ray...)
#   then on the GPU machine, from the project root, with .devkit carried along:
#   source .devkit/setup.sh && bash benchmarks/gpu_check.sh
#
# Runs the GPU-marked tests if pytest is there (the Embedder, nvJPEG decode against
# the CPU path, and embed end to end on a GPU), then benchmarks/gpu_check.py
# (resnet50 @224 bf16 on 24000 links to 2048 generated 500x375 JPEGs) and prints
# its table.
# Its 16 cores also answer which CPU actor layout is best (benchmarks/README.md):
#   python3 benchmarks/cpu_sizing.py --layouts 1,2,4 --counts 1200,3600 --repeat 2
# Dry run without a GPU: bash benchmarks/gpu_check.sh --device cpu --num-images 400 \
#   --unique 100 --model torchvision/resnet18 --batch-size 32 --seconds 2
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
if python3 -c "import pytest" 2>/dev/null; then
  timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu -o addopts="" -rs \
    tests/embedding/test_embedder.py tests/data/test_device_decode.py \
    tests/embedding/test_pipeline.py || true
fi
PYTHONUNBUFFERED=1 timeout 420 python3 benchmarks/gpu_check.py "$@"
