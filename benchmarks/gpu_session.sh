#!/usr/bin/env bash
# Everything a session with a lent GPU should run, in one command (device tool, repo root):
#     bash benchmarks/gpu_session.sh
# The device image has torch, triton, sympy, jinja2, mpmath, pytest, hypothesis, scipy and tqdm;
# fluxact runs from the source tree. Results go to $OUT (the device tool brings them back):
# the GPU test suite (kernels compiled, not interpreted) and the benchmark tables to paste
# into docs/benchmarks.md with the device name.
set -u
export PYTHONPATH="$PWD" HYPOTHESIS_PROFILE=ci
out="${OUT:-/tmp/fluxact-gpu}"
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} > "$out/device.txt" 2>&1
python3 -m pytest -q -p no:cacheprovider tests/kernels tests/blocks/test_fused.py \
    tests/blocks/test_blocks.py > "$out/gpu_tests.txt" 2>&1
python3 benchmarks/activation.py --sizes 24 28 --threads 0 > "$out/bench_activation.txt" 2>&1
python3 benchmarks/blocks.py --threads 0 > "$out/bench_blocks.txt" 2>&1
python3 benchmarks/blocks.py --threads 0 --dtype bfloat16 > "$out/bench_blocks_bf16.txt" 2>&1
tail -n 3 "$out"/*.txt
