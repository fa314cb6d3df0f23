#!/usr/bin/env bash
# Builds local stand-ins for the public images that docker-compose.yml and the Dockerfile
# name, for machines that cannot pull them (CI's machines reach no image registry):
#   debian    for debian:bookworm-slim: a debootstrapped Debian bookworm (minbase);
#   postgres  for postgres:16: that Debian with Debian's postgresql-15 and our entrypoint
#             (postgres/entrypoint.sh), which honours what docker-compose.yml uses;
#   rust      for rust:<ver>-slim-bookworm: that Debian with gcc, libc6-dev and pkg-config,
#             plus this machine's own Rust toolchain and CA bundle (downloads from a
#             container may pass through a TLS proxy that only the host's bundle trusts).
# Usage: .ci/standins/build.sh debian|postgres|rust
# Prints the image's tag on stdout; progress goes to stderr. An image is rebuilt only when
# its inputs changed: each carries a label with a digest of them.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
label=app-ci.standin.digest
ca_bundle=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}

# Scratch files and directories, removed on any exit (a failed debootstrap's too).
scratch=()
trap 'rm -rf "${scratch[@]}"' EXIT

log() { printf '[standins %3ds] %s\n' "$SECONDS" "$*" >&2; }

# Runs a command with its output in a file, and shows the end of that only if it fails:
# debootstrap and apt print hundreds of lines that matter only then.
quietly() {
    local out
    out=$(mktemp "${TMPDIR:-/tmp}/standin-log.XXXXXX")
    scratch+=("$out")
    if ! "$@" >"$out" 2>&1; then
        tail -n 60 "$out" >&2
        log "failed: $*"
        exit 1
    fi
}

digest() { sha256sum | cut -c1-16; }

image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# Removes the image a rebuild replaced, unless something still uses it (the app's build
# cache does until its next build, which removes its own old images and so this one).
drop_replaced() {
    local old=$1 tag=$2
    if [[ -n $old && $old != "$(image_id "$tag")" ]]; then
        docker rmi "$old" >/dev/null 2>&1 || true
    fi
}

# True when the image exists and was built from inputs with this digest.
fresh() {
    local have
    have=$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$1" 2>/dev/null) || return 1
    [[ $have == "$2" ]]
}

# A bookworm root file system, trimmed as the slim image is: no docs, man pages or
# locales, now or from later installs, and no package lists.
make_rootfs() {
    local dir=$1
    quietly debootstrap --variant=minbase "$suite" "$dir" "$mirror"
    cat >"$dir/etc/dpkg/dpkg.cfg.d/slim" <<'CFG'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CFG
    rm -rf "$dir"/usr/share/{doc,man,info,locale}/* "$dir"/var/cache/apt/*.bin \
        "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    # The suites the public image lists, so images built on it get security updates.
    rm -f "$dir/etc/apt/sources.list"
    cat >"$dir/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
}

# Each build_* sets `image` to the tag it made or found fresh.
build_debian() {
    local tag=app-ci-standin/debian:$suite-slim want tmp old
    want=$({ declare -f make_rootfs; echo "$suite $mirror"; } | digest)
    if ! fresh "$tag" "$want"; then
        command -v debootstrap >/dev/null || { log "debootstrap is not installed"; exit 1; }
        tmp=$(mktemp -d "${TMPDIR:-/tmp}/standin-rootfs.XXXXXX")
        scratch+=("$tmp")
        log "debootstrap $suite (minbase) -> $tag"
        old=$(image_id "$tag")
        make_rootfs "$tmp/rootfs"
        tar -C "$tmp/rootfs" -c . \
            | docker import -c 'CMD ["bash"]' -c "LABEL $label=$want" - "$tag" >/dev/null
        rm -rf "$tmp"
        drop_replaced "$old" "$tag"
    fi
    image=$tag
}

build_postgres() {
    local base tag=app-ci-standin/postgres:15-$suite want old
    build_debian
    base=$image
    want=$({ image_id "$base"; cat "$here"/postgres/*; } | digest)
    if ! fresh "$tag" "$want"; then
        log "postgres (Debian's postgresql-15) -> $tag"
        old=$(image_id "$tag")
        quietly docker build --build-arg "BASE_IMAGE=$base" --label "$label=$want" \
            -t "$tag" "$here/postgres"
        drop_replaced "$old" "$tag"
    fi
    image=$tag
}

# The context holds only what the official image has: rustc, cargo and rustdoc with the
# standard library (rustup's minimal profile), no docs, no registry cache. Sets `toolchain`
# to the toolchain's name.
stage_rust() {
    local ctx=$1 sysroot
    sysroot=$(rustc --print sysroot)
    toolchain=$(basename "$sysroot")
    mkdir -p "$ctx/rustup/toolchains/$toolchain/bin"
    cp "$here/rust/Dockerfile" "$ctx/"
    cp "$ca_bundle" "$ctx/ca-certificates.crt"
    # Hard links where the file system allows: the toolchain is ~600 MB.
    cp -al "$sysroot/lib" "$ctx/rustup/toolchains/$toolchain/" 2>/dev/null \
        || cp -a "$sysroot/lib" "$ctx/rustup/toolchains/$toolchain/"
    cp -a "$sysroot"/bin/{cargo,rustc,rustdoc} "$ctx/rustup/toolchains/$toolchain/bin/"
}

build_rust() {
    local base version tag want ctx toolchain old
    build_debian
    base=$image
    version=$(rustc --version | awk '{print $2}')
    tag=app-ci-standin/rust:$version-slim-$suite
    want=$({ image_id "$base"; rustc -vV; cargo -V
             cat "$here/rust/Dockerfile" "$ca_bundle"; declare -f stage_rust; } | digest)
    if ! fresh "$tag" "$want"; then
        log "rust $version (this machine's toolchain) -> $tag"
        old=$(image_id "$tag")
        ctx=$(mktemp -d "${TMPDIR:-/tmp}/standin-rust.XXXXXX")
        scratch+=("$ctx")
        stage_rust "$ctx"
        quietly docker build --build-arg "BASE_IMAGE=$base" --build-arg "RUST_VERSION=$version" \
            --build-arg "TOOLCHAIN=$toolchain" --label "$label=$want" -t "$tag" "$ctx"
        rm -rf "$ctx"
        drop_replaced "$old" "$tag"
    fi
    image=$tag
}

image=
case ${1:-} in
    debian | postgres | rust) "build_$1" ;;
    *) echo "usage: $0 debian|postgres|rust" >&2; exit 2 ;;
esac
echo "$image"
