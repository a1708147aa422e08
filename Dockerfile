# syntax=docker/dockerfile:1
# One image with every sipcapture binary; a target per service sets the entrypoint.
#
#   docker build -t sipcapture/sipcapture:0.1.0 .                       # all binaries, `sipcapture up`
#   docker build --target collector -t sipcapture/collector:0.1.0 .     # or storer, control
#
# The Helm chart uses the default (all-binaries) image and sets each container's command.

ARG RUST_VERSION=1.94

FROM rust:${RUST_VERSION}-bookworm AS build
# The commit for the *_build_info metric (the build context has no .git):
#   docker build --build-arg GIT_COMMIT=$(git rev-parse --short=12 HEAD) .
ARG GIT_COMMIT=unknown
ENV SIPCAPTURE_GIT_COMMIT=${GIT_COMMIT}
WORKDIR /src
COPY . .
# protox compiles the .proto files in pure Rust (no protoc); rustls (no OpenSSL); SQLite is
# bundled. The caches keep the registry and target directory between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      --bin sipcapture-collector --bin sipcapture-storer --bin sipcapture-control --bin sipcapture \
 && mkdir -p /out /data \
 && cp target/release/sipcapture-collector target/release/sipcapture-storer \
       target/release/sipcapture-control target/release/sipcapture /out/

# glibc + libgcc, CA certificates, no shell; runs as the "nonroot" user (65532).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/ /usr/local/bin/
# Working directory writable by the runtime user: `sipcapture up` keeps sipcapture.db, the spool
# and control's state file there unless configured elsewhere (mount a volume to keep them).
COPY --from=build --chown=65532:65532 /data /var/lib/sipcapture
WORKDIR /var/lib/sipcapture
USER 65532:65532
# HEP (UDP and TCP), control, collector and storer gRPC.
EXPOSE 9060/udp 9060/tcp 9061/tcp 9062/tcp 9063/tcp
ENTRYPOINT ["/usr/local/bin/sipcapture"]
CMD ["up"]

FROM runtime AS collector
ENTRYPOINT ["/usr/local/bin/sipcapture-collector"]
CMD []

FROM runtime AS storer
ENTRYPOINT ["/usr/local/bin/sipcapture-storer"]
CMD []

FROM runtime AS control
ENTRYPOINT ["/usr/local/bin/sipcapture-control"]
CMD []

# The default target: every binary, `sipcapture up`.
FROM runtime AS all
