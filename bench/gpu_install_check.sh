#!/bin/bash
# Issue 12 on a GPU machine: does the installer's detection offer the right PyTorch build, and does
# its verification report the device honestly? Run from the repository root with the machine's own
# Python (which holds a CUDA build of torch); writes verify_*.json to $OUT (or ./out/gpu-check).
# One short call: bash bench/gpu_install_check.sh
set -u
OUT=${OUT:-out/gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
echo "== nvidia-smi"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader,nounits
echo "== what the installer detects and offers"
$PY -c "
from spectralx_qgis import gpu_detect, python_finder
gpus = gpu_detect.nvidia_gpus()
print('GPU:', gpu_detect.describe(gpus))
for b in gpu_detect.builds(gpus):
    print('offer:', b.id, '|', b.label, '|', b.index_url, '|', b.torch_line('torch==2.13.0'))
print('QGIS-style interpreter check:', python_finder.find().describe())
"
modules=numpy,torch,safetensors; engine="--engine engine"
for dev in auto cuda cpu; do
  echo "== verify --device $dev"
  $PY spectralx_qgis/verify_install.py --device $dev --modules $modules $engine > "$OUT/verify_$dev.json"; echo "exit $?"
  $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['device']['line'])" "$OUT/verify_$dev.json"
done
echo "== verify --device auto with the GPU hidden (CUDA_VISIBLE_DEVICES='')"
CUDA_VISIBLE_DEVICES= $PY spectralx_qgis/verify_install.py --device auto --modules $modules $engine > "$OUT/verify_hidden.json"; echo "exit $?"
$PY -c "import json,sys; print(json.load(open(sys.argv[1]))['device']['line'])" "$OUT/verify_hidden.json"
echo "== verify --device cuda with the GPU hidden"
CUDA_VISIBLE_DEVICES= $PY spectralx_qgis/verify_install.py --device cuda --modules $modules $engine > "$OUT/verify_hidden_cuda.json"; echo "exit $?"
$PY -c "import json,sys; print(json.load(open(sys.argv[1]))['device']['line'])" "$OUT/verify_hidden_cuda.json"
