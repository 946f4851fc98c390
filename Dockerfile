# syntax=docker/dockerfile:1
# csr-warden: multi-stage build, static-enough release binary on a distroless non-root base.
#   docker build -t csr-warden .
#   docker run --rm csr-warden --version

# Build with the same toolchain and flags as CI (.ci/run): a locked release build of the
# csr-warden package only (the kube-standin dev tool is not built into the image).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY standin/Cargo.toml standin/Cargo.toml
COPY src src
COPY standin/src standin/src
COPY benches benches
COPY deploy/base/rbac.yaml deploy/base/rbac.yaml
RUN cargo build --release --locked -p csr-warden --bin csr-warden \
 && cp target/release/csr-warden /csr-warden

# Runtime: glibc + CA certificates, no shell, uid 65532 (matches deploy/base/deployment.yaml).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /csr-warden /usr/local/bin/csr-warden
COPY policies /etc/csr-warden/policies
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/csr-warden"]
CMD ["serve", "--policies=/etc/csr-warden/policies"]
