# syntax=docker/dockerfile:1
# speechmill Ballista executor with CUDA. Build from the repository root:
#   docker build -f deploy/docker/executor-cuda.Dockerfile -t speechmill-executor-cuda .
# Like executor.Dockerfile, plus ONNX Runtime with the CUDA execution provider
# (onnxruntime-gpu 1.31.1 from PyPI, sha256-checked: deploy/onnxruntime-gpu.sh), selected
# with ORT_DYLIB_PATH, on NVIDIA's CUDA 13 + cuDNN 9 runtime image (that wheel's CUDA).
# Needs an NVIDIA driver for CUDA 13 (>= 580) and the NVIDIA container toolkit / device
# plugin on the host. A stage uses the GPU when asked: `--set asr.device=cuda`.

# ---------------------------------------------------------------- build
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libopus-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY audio audio
COPY pipeline pipeline
COPY stages stages
COPY models models
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin speechmill \
 && install -m 755 target/release/speechmill /usr/local/bin/speechmill

# ---------------------------------------------------------------- models + onnxruntime-gpu
FROM debian:bookworm-slim AS models
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
COPY models/registry.toml models/registry.toml
COPY models/tools models/tools
COPY deploy/onnxruntime-gpu.sh deploy/onnxruntime-gpu.sh
RUN SPEECHMILL_CACHE=/opt/speechmill/cache bash scripts/setup.sh \
 && PYTHON=/opt/speechmill/cache/venv/bin/python bash deploy/onnxruntime-gpu.sh /opt/onnxruntime-gpu

# ---------------------------------------------------------------- runtime
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libopus0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/speechmill --create-home speechmill \
 && install -d -o 10001 -g 10001 /var/lib/speechmill/work
COPY --from=build /usr/local/bin/speechmill /usr/local/bin/speechmill
COPY --from=models /opt/speechmill/cache/models /opt/speechmill/cache/models
COPY --from=models /opt/speechmill/cache/onnxruntime /opt/speechmill/cache/onnxruntime
COPY --from=models /opt/onnxruntime-gpu /opt/onnxruntime-gpu
COPY dags /opt/speechmill/dags
ENV SPEECHMILL_CACHE=/opt/speechmill/cache \
    ORT_DYLIB_PATH=/opt/onnxruntime-gpu/libonnxruntime.so.1.31.1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /var/lib/speechmill
USER 10001
EXPOSE 50051 50052
ENTRYPOINT ["speechmill"]
CMD ["executor", "--scheduler", "speechmill-scheduler:50050", "--bind", "0.0.0.0", \
     "--port", "50051", "--grpc-port", "50052", "--work-dir", "/var/lib/speechmill/work"]
