#!/usr/bin/env bash
# GPU check of dropkit's Triton dropout kernel: run on a machine with a CUDA GPU.
#   bash tools/gpu_check.sh            # results under $OUT (default: out/gpu_check)
# 1. the GPU tests (CUDA == CPU bit for bit for every dtype, backward, saved bytes,
#    non-contiguous, in-place) and the Triton-vs-reference hash test;
# 2. the kernel benchmark on cuda (F.dropout vs dropkit vs clone, fwd and fwd+bwd).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu_check}"
mkdir -p "$OUT"
PY="${PY:-.venv/bin/python}"
"$PY" - <<'PY' > "$OUT/env.txt" 2>&1
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
try:
    import triton
    print("triton", triton.__version__)
except ImportError as exc:
    print("triton missing:", exc)
PY
cat "$OUT/env.txt"
"$PY" -m pytest tests/kernels/test_gpu.py tests/kernels/test_reference.py -q -rs -p no:cacheprovider \
    --junitxml="$OUT/gpu_tests.xml" 2>&1 | tee "$OUT/gpu_tests.txt"
tests=${PIPESTATUS[0]}
"$PY" -m dropkit.bench.kernels --device cuda --repeats 21 --out "$OUT/kernels_cuda.json" 2>&1 \
    | tee "$OUT/kernels_cuda.txt"
bench=${PIPESTATUS[0]}
echo "tests exit $tests, bench exit $bench" | tee "$OUT/status.txt"
exit $(( tests != 0 || bench != 0 ))
