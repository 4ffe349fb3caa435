# syntax=docker/dockerfile:1
# The etlhost image, built from source: `docker build -t etlhost:latest .` at the repository root.
# Stage 1 builds everything with the README's command (`cargo xtask build --release`: the binary
# with the WASM engine, every connector plugin, the WASM example transforms); stage 2 is a slim
# Debian with the binary, its plugins and the transforms, run as a non-root user.

# The toolchain the project is built and tested with (wasmtime 48 needs Rust 1.95: see Cargo.toml).
ARG RUST_VERSION=1.95.0

# Node.js 20 for componentize-js (the JS transforms); Debian bookworm's own nodejs is 18.
FROM node:20-bookworm-slim AS node

FROM rust:${RUST_VERSION}-bookworm AS build
# python3-venv: componentize-py (the Python transforms) is installed from PyPI into a venv.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
# target/ is a cache mount (kept between builds, not part of the image), so what the runtime
# stage needs is copied out in the same step. The plugins go into a `plugins/` folder next to
# the binary, where etlhost looks for plugins named without a path. Paths as xtask builds them:
# target/release/ (cargo) and target/transforms/ (xtask/src/transforms.rs); faulty.wasm is the
# tests' misbehaving transform. The image was never built where this file was written (no
# Docker engine there): see README, "Running on Kubernetes".
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo xtask build --release \
    && mkdir -p /out/plugins /out/transforms \
    && cp target/release/etlhost /out/ \
    && cp target/release/libetlhost_mysql.so target/release/libetlhost_bolt.so \
          target/release/libetlhost_console.so target/release/libetlhost_jsonl.so /out/plugins/ \
    && cp target/transforms/*.wasm /out/transforms/ \
    && rm /out/transforms/faulty.wasm

FROM debian:bookworm-slim
# ca-certificates: `bolt+s://` and `neo4j+s://` trust the system's roots (/etc/ssl/certs).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 etlhost \
    && useradd --system --uid 10001 --gid etlhost --home-dir /var/lib/etlhost --create-home etlhost
# /opt/etlhost/etlhost, /opt/etlhost/plugins/*.so, /opt/etlhost/transforms/*.wasm (a spec names
# a transform by path, e.g. `component: /opt/etlhost/transforms/field-map.wasm`).
COPY --from=build /out/ /opt/etlhost/
ENV PATH=/opt/etlhost:$PATH
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001:10001
# The working directory holds the dead-letter file, the transform cache (.etlhost/cache) and
# local checkpoints (.etlhost/checkpoints); the Job mounts an emptyDir here.
WORKDIR /var/lib/etlhost
ENTRYPOINT ["etlhost"]
CMD ["--help"]
