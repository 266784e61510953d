#!/usr/bin/env bash
# Everything a session with a lent GPU should run, in one command (device tool, repo root):
#     bash benchmarks/gpu_session.sh
# The device image has torch, triton, sympy, jinja2, mpmath, pytest, hypothesis, scipy and tqdm;
# fluxact runs from the source tree. Results go to $OUT (the device tool brings them back):
# the GPU test suite (kernels compiled, not interpreted) and the benchmark tables to paste
# into docs/benchmarks.md with the device name. Each step has its own time limit, so the whole
# run stays within 9 minutes (a step cut short says so in its file: "timed out").
set -u
export PYTHONPATH="$PWD" HYPOTHESIS_PROFILE=ci
out="${OUT:-/tmp/fluxact-gpu}"
mkdir -p "$out"
step() {  # step SECONDS FILE COMMAND...: run COMMAND into $out/FILE, cut at SECONDS
    local seconds=$1 file=$2
    shift 2
    timeout "$seconds" "$@" > "$out/$file" 2>&1 || echo "exit $? (124: timed out)" >> "$out/$file"
}
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} > "$out/device.txt" 2>&1
# the kernels, fused and coupled steps, values and run-time checks, compiled on the GPU
step 240 gpu_tests.txt python3 -m pytest -q -p no:cacheprovider --maxfail=5 tests/kernels \
    tests/blocks/test_fused.py tests/blocks/test_coupled_kernels.py \
    tests/blocks/test_runtime_safety.py tests/codegen/test_values.py tests/blocks/test_grid_fused.py
step 90 gpu_blocks_tests.txt python3 -m pytest -q -p no:cacheprovider tests/blocks/test_blocks.py \
    tests/blocks/test_mixed_precision.py tests/blocks/test_learned.py \
    tests/blocks/test_checkpoints.py -k "not new_process and not without_fluxact"
# DDP with NCCL on the one GPU (one process: NCCL refuses two ranks on the same device)
step 60 ddp_nccl.txt python3 -m torch.distributed.run --standalone --nproc_per_node 1 \
    examples/train_ddp.py --smoke --out "$out/train_ddp"
step 60 bench_activation.txt python3 benchmarks/activation.py --sizes 24 28 --threads 0
step 45 bench_blocks.txt python3 benchmarks/blocks.py --threads 0
step 45 bench_blocks_bf16.txt python3 benchmarks/blocks.py --threads 0 --dtype bfloat16
tail -n 3 "$out"/*.txt
