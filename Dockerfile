# Builder: bookworm, like the runtime image, so the binary links the same glibc.
# `1` floats to the newest stable Rust; pin with --build-arg RUST_VERSION=1.95.
# RUST_IMAGE and RUNTIME_IMAGE replace the public base images, so a machine that cannot
# pull them builds with local stand-ins (CI does: .ci/compose.sh). Unset or empty (as
# docker-compose v1 passes an unset variable) means the public image.
ARG RUST_VERSION=1
ARG RUST_IMAGE
ARG RUNTIME_IMAGE
FROM ${RUST_IMAGE:-rust:${RUST_VERSION}-slim-bookworm} AS builder
WORKDIR /src

# Dependency layer: rebuilt only when the manifest, lockfile, build script or cargo
# config change, not on every source edit.
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo/ .cargo/
# Stub sources first: cargo reads the manifest's targets before it fetches anything, and
# a manifest with no source file has none. build.rs only needs migrations/ to exist.
# Then fetch every package in the lockfile (dev-dependencies too): build.rs runs
# `cargo metadata --offline`, which needs all of their sources present.
RUN mkdir -p src migrations \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo fetch --locked
RUN cargo build --release --locked

# The real sources. SQLX_OFFLINE=true (.cargo/config.toml) makes the query macros read
# .sqlx/ instead of a database.
COPY .sqlx/ .sqlx/
COPY migrations/ migrations/
COPY src/ src/
# COPY keeps the files' (older) mtimes, so cargo could take the stub's artifacts and
# build-script output (migrations list) as fresh: drop everything of the `app` package.
RUN rm -rf target/release/.fingerprint/app-* target/release/build/app-* \
           target/release/deps/app-* target/release/deps/libapp-* \
 && cargo build --release --locked \
 && cp target/release/app /usr/local/bin/app

# Runtime: no TLS (the database is on a private network), so no OpenSSL or
# ca-certificates; bash is kept for the compose healthcheck (see docker-compose.yml).
FROM ${RUNTIME_IMAGE:-debian:bookworm-slim}
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --shell /usr/sbin/nologin app
COPY --from=builder /usr/local/bin/app /usr/local/bin/app
# Numeric, so orchestrators can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
# No HEALTHCHECK here: the same image runs `work` and `migrate`, which serve no HTTP,
# so an image-wide probe of /readyz would mark workers unhealthy. The api service in
# docker-compose.yml declares its own.
ENTRYPOINT ["app"]
CMD ["run"]
