#!/usr/bin/env bash
# Fetches ONNX Runtime with the CUDA execution provider for the CUDA executor image:
# downloads the pinned onnxruntime-gpu wheel from PyPI with pip, checks its sha256 and
# extracts the shared libraries into DEST. speechmill finds it through
# ORT_DYLIB_PATH=DEST/libonnxruntime.so.<version>; ONNX Runtime loads the provider
# libraries from the same folder.
#
#   PYTHON=/path/to/python bash deploy/onnxruntime-gpu.sh /opt/onnxruntime-gpu
#
# Pin: onnxruntime-gpu 1.32.0 (the CPU version of models/registry.toml) is not on PyPI;
# 1.31.1 is the newest, and speechmill's ort crate (feature api-31) loads any ONNX
# Runtime >= 1.31. This wheel is built for CUDA 13 and cuDNN 9 (its `cuda`/`cudnn` extras
# name nvidia-cuda-runtime~=13.0 and nvidia-cudnn-cu13~=9.0); libonnxruntime_providers_cuda.so
# needs libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10 and the
# driver's libcuda.so.1, and opens cuDNN 9 and cuFFT at run time: an
# nvidia/cuda:13.x-cudnn-runtime image has all of them.
set -euo pipefail

ORT_GPU_VERSION="1.31.1"
ORT_GPU_WHEEL="onnxruntime_gpu-${ORT_GPU_VERSION}-cp311-cp311-manylinux_2_28_x86_64.whl"
ORT_GPU_SHA256="e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6"
LIBS=("libonnxruntime.so.${ORT_GPU_VERSION}" libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so)

die() { echo "onnxruntime-gpu: error: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 DEST"
DEST="$1"
PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null || die "$PY not found (set PYTHON to a python3 with pip)"

if [ -f "$DEST/.stamp" ] && [ "$(cat "$DEST/.stamp")" = "$ORT_GPU_SHA256" ]; then
  echo "[onnxruntime-gpu] $DEST present ($ORT_GPU_VERSION)"
  exit 0
fi
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "[onnxruntime-gpu] pip download onnxruntime-gpu==$ORT_GPU_VERSION"
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 \
  -d "$TMP" "onnxruntime-gpu==$ORT_GPU_VERSION" || die "pip download onnxruntime-gpu==$ORT_GPU_VERSION failed"
[ -f "$TMP/$ORT_GPU_WHEEL" ] || die "pip did not save $ORT_GPU_WHEEL"
got="$(sha256sum "$TMP/$ORT_GPU_WHEEL" | cut -d' ' -f1)"
[ "$got" = "$ORT_GPU_SHA256" ] || die "sha256 mismatch for $ORT_GPU_WHEEL: got $got, pinned $ORT_GPU_SHA256"
mkdir -p "$DEST"
"$PY" - "$TMP/$ORT_GPU_WHEEL" "$DEST" "${LIBS[@]}" <<'PY'
import os, shutil, sys, zipfile
wheel, dest, libs = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for lib in libs:
        with z.open("onnxruntime/capi/" + lib) as src, open(os.path.join(dest, lib + ".tmp"), "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(os.path.join(dest, lib + ".tmp"), 0o755)
        os.replace(os.path.join(dest, lib + ".tmp"), os.path.join(dest, lib))
PY
echo "$ORT_GPU_SHA256" >"$DEST/.stamp"
echo "[onnxruntime-gpu] $DEST: ${LIBS[*]} (set ORT_DYLIB_PATH=$DEST/${LIBS[0]})"
