# syntax=docker/dockerfile:1
# speechmill Ballista scheduler. Build from the repository root:
#   docker build -f deploy/docker/scheduler.Dockerfile -t speechmill-scheduler .
# Listens on 50050 (gRPC: clients submit plans, executors register and poll).

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

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libopus0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/speechmill --create-home speechmill
COPY --from=build /usr/local/bin/speechmill /usr/local/bin/speechmill
USER 10001
EXPOSE 50050
ENTRYPOINT ["speechmill"]
CMD ["scheduler", "--bind", "0.0.0.0:50050"]
