#!/usr/bin/env bash
# Build and run otelpipe's container image with rootful podman, on machines where no
# container registry is reachable: the base image the Dockerfile names
# (debian:bookworm-slim) is made locally with debootstrap from Debian's mirror, then the
# unmodified Dockerfile is built with `podman build --pull=never`.
#
# Usage:
#   scripts/container.sh setup            install podman (Debian), write its config, make
#                                         the base image (once; cached)
#   scripts/container.sh build            setup, then build otelpipe:<version> (and :latest)
#   scripts/container.sh run [ARGS...]    run the image detached as $OTELPIPE_CONTAINER_NAME,
#                                         read-only, state in $OTELPIPE_CONTAINER_DATA,
#                                         ports published on 127.0.0.1; wait for readiness
#                                         and print the time it took; ARGS go to `otelpipe run`
#   scripts/container.sh stop             stop (SIGTERM: otelpipe drains) and remove it
#   scripts/container.sh app-image        build localhost/otelpipe-realapp-go: the Go real app
#                                         of tests/apps/go (scripts/apps.sh build go) on the
#                                         same base, for the sidecar pod test
#   scripts/container.sh podman ARGS...   run podman with this script's config (the tests
#                                         use it)
#   scripts/container.sh image            print the image's tag
#   scripts/container.sh clean            remove the containers and pods it started, and
#                                         restore net.ipv4.ip_forward
#
# Environment (all optional):
#   OTELPIPE_CACHE      cache root (default ~/.cache/otelpipe): podman's storage, config
#                       and the base rootfs go to $OTELPIPE_CACHE/podman (about 500 MB)
#   OTELPIPE_CONTAINER_NAME  container name for run/stop (default otelpipe)
#   OTELPIPE_CONTAINER_DATA  host directory mounted on /var/lib/otelpipe for run
#                       (default $OTELPIPE_STATE/container-data)
#   HOST_GRPC_PORT HOST_HTTP_PORT HOST_HEALTH_PORT  host ports for run (defaults 4317,
#                       4318, 13133, on 127.0.0.1)
#   DEBIAN_MIRROR       mirror for debootstrap (default: the one apt uses here)
#
# Podman 4.3 from Debian needs, on these VMs: runc (crun fails on hybrid cgroups), the
# cgroupfs manager, explicit ulimits (no CAP_SYS_RESOURCE) and a file events log. Those
# settings live in $OTELPIPE_CACHE/podman/*.conf (CONTAINERS_CONF,
# CONTAINERS_STORAGE_CONF), never in /etc. A user with a working podman or docker needs
# none of this: `docker build -t otelpipe:0.1.0 .` builds the same image.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"

SERVICE=container
PODMAN_DIR="$CACHE_ROOT/podman"
BASE_TAG="localhost/debian:bookworm-slim"
BASE_NAME="docker.io/library/debian:bookworm-slim"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -n1)"
IMAGE="localhost/otelpipe:$VERSION"
CONTAINER_NAME="${OTELPIPE_CONTAINER_NAME:-otelpipe}"
DATA_DIR="${OTELPIPE_CONTAINER_DATA:-$STATE_ROOT/container-data}"
STATE_DIR="$PODMAN_DIR/state"

export CONTAINERS_CONF="$PODMAN_DIR/containers.conf"
export CONTAINERS_STORAGE_CONF="$PODMAN_DIR/storage.conf"

ensure_podman() {
    local missing=() p
    for p in podman debootstrap runc catatonit; do command -v "$p" >/dev/null || missing+=("$p"); done
    # Debian's podman pulls in what it needs to run containers (conmon, netavark or CNI,
    # slirp4netns, fuse-overlayfs); debootstrap makes the base image; catatonit is the
    # pause process of pods (`podman play kube`) and the init of `--init`.
    ((${#missing[@]} == 0)) || apt_install podman debootstrap runc uidmap catatonit
    mkdir -p "$PODMAN_DIR/storage" "$PODMAN_DIR/run" "$STATE_DIR"
    cat >"$CONTAINERS_CONF.tmp" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
    cat >"$CONTAINERS_STORAGE_CONF.tmp" <<EOF
[storage]
driver = "overlay"
graphroot = "$PODMAN_DIR/storage"
runroot = "$PODMAN_DIR/run"
EOF
    mv "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"
    mv "$CONTAINERS_STORAGE_CONF.tmp" "$CONTAINERS_STORAGE_CONF"
    # Podman's network set-up turns IPv4 forwarding on; `clean` puts back what was there.
    [[ -f "$STATE_DIR/ip_forward" ]] || cat /proc/sys/net/ipv4/ip_forward >"$STATE_DIR/ip_forward"
}

# The Debian mirror apt already uses here (deb822 .sources or one-line sources.list).
debian_mirror() {
    if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
    local m
    m="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
        | grep -v security | head -n1 || true)"
    [[ -n "$m" ]] || m="$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | awk '{print $2}' | grep -v security | head -n1 || true)"
    echo "${m:-http://deb.debian.org/debian}"
}

# debian:bookworm-slim, made here: debootstrap's minbase, trimmed as Debian's slim
# images are (no docs, man pages or apt lists), with this machine's local CA
# certificates (outgoing HTTPS is intercepted by the machine's own CA: pip inside the
# build fails with CERTIFICATE_VERIFY_FAILED without them).
base_image() {
    if podman image exists "$BASE_NAME"; then return 0; fi
    take_lock 900 "$PODMAN_DIR/base.lock"
    podman image exists "$BASE_NAME" && return 0
    local rootfs="$PODMAN_DIR/rootfs" mirror t0=$SECONDS
    mirror="$(debian_mirror)"
    log "making $BASE_NAME with debootstrap (minbase bookworm from $mirror)"
    rm -rf "$rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$PODMAN_DIR/debootstrap.log" 2>&1 \
        || { tail -n 30 "$PODMAN_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    printf 'APT::Install-Recommends "false";\n' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
    if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
        mkdir -p "$rootfs/usr/local/share/ca-certificates"
        cp -r /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/"
    fi
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
        -exec rm -rf {} +
    tar -C "$rootfs" -c . | podman import --change 'CMD ["bash"]' - "$BASE_TAG" >/dev/null
    podman tag "$BASE_TAG" "$BASE_NAME"
    rm -rf "$rootfs"
    log "base image ready ($((SECONDS - t0))s)"
}

cmd_build() {
    ensure_podman
    base_image
    local t0=$SECONDS source="" revision=""
    source="$(git -C "$ROOT" remote get-url origin 2>/dev/null || true)"
    [[ "$source" =~ ^https?:// ]] || source=""   # a clone's local path is no source URL
    revision="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || true)"
    log "building $IMAGE from $ROOT/Dockerfile"
    # --format docker keeps the HEALTHCHECK (the OCI image config has no such field).
    podman build --pull=never --format docker -t "$IMAGE" -t localhost/otelpipe:latest \
        --build-arg VERSION="$VERSION" --build-arg SOURCE="$source" \
        --build-arg REVISION="$revision" "$ROOT" >&2
    local size
    size="$(podman image inspect --format '{{.Size}}' "$IMAGE")"
    log "built $IMAGE in $((SECONDS - t0))s: $((size / 1000000)) MB"
}

APP_IMAGE="localhost/otelpipe-realapp-go:latest"
cmd_app_image() {
    ensure_podman
    base_image
    "$HERE/apps.sh" build go >&2
    local ctx="$PODMAN_DIR/app-context"
    rm -rf "$ctx"
    mkdir -p "$ctx"
    cp "$CACHE_ROOT/apps/go/realapp-go" "$ctx/realapp-go"
    printf '%s\n' 'FROM debian:bookworm-slim' \
        'COPY realapp-go /usr/local/bin/realapp-go' \
        'USER 10002:10002' \
        'ENTRYPOINT ["/usr/local/bin/realapp-go"]' \
        'CMD ["8080"]' >"$ctx/Dockerfile"
    podman build --pull=never -q -t "$APP_IMAGE" "$ctx" >/dev/null
    log "built $APP_IMAGE"
}

host_port() { local v="$1" d="$2"; echo "${!v:-$d}"; }

cmd_run() {
    ensure_podman
    podman image exists "$IMAGE" || die "$IMAGE not built: scripts/container.sh build"
    local grpc http health t0
    grpc="$(host_port HOST_GRPC_PORT 4317)"
    http="$(host_port HOST_HTTP_PORT 4318)"
    health="$(host_port HOST_HEALTH_PORT 13133)"
    ports_free "$grpc" "$http" "$health"
    mkdir -p "$DATA_DIR"
    chown 10001:10001 "$DATA_DIR"
    podman rm -f --ignore "$CONTAINER_NAME" >/dev/null
    t0="$(date +%s.%N)"
    podman run -d --name "$CONTAINER_NAME" --read-only \
        -p "127.0.0.1:$grpc:4317" -p "127.0.0.1:$http:4318" -p "127.0.0.1:$health:13133" \
        -v "$DATA_DIR:/var/lib/otelpipe" "$IMAGE" "$@" >/dev/null
    local deadline=$((SECONDS + 60))
    until http_ok "http://127.0.0.1:$health/health/readiness"; do
        if [[ "$(podman inspect --format '{{.State.Running}}' "$CONTAINER_NAME")" != true ]]; then
            podman logs "$CONTAINER_NAME" >&2 || true
            die "$CONTAINER_NAME exited during startup"
        fi
        ((SECONDS < deadline)) || { podman logs "$CONTAINER_NAME" >&2; die "not ready within 60s"; }
        sleep 0.05
    done
    log "$CONTAINER_NAME ready in $(awk "BEGIN {printf \"%.2f\", $(date +%s.%N) - $t0}")s: OTLP gRPC" \
        "127.0.0.1:$grpc, HTTP 127.0.0.1:$http, health 127.0.0.1:$health, data in $DATA_DIR"
}

cmd_stop() {
    ensure_podman
    podman container exists "$CONTAINER_NAME" || { log "$CONTAINER_NAME not running"; return 0; }
    podman stop -t 30 "$CONTAINER_NAME" >/dev/null
    log "$CONTAINER_NAME stopped, exit code $(podman inspect --format '{{.State.ExitCode}}' "$CONTAINER_NAME")"
    podman rm "$CONTAINER_NAME" >/dev/null
}

cmd_clean() {
    command -v podman >/dev/null || return 0
    ensure_podman
    podman pod rm -f -a >/dev/null 2>&1 || true
    podman rm -f -a >/dev/null 2>&1 || true
    if [[ -f "$STATE_DIR/ip_forward" ]]; then
        sysctl -q -w "net.ipv4.ip_forward=$(cat "$STATE_DIR/ip_forward")" || true
        rm -f "$STATE_DIR/ip_forward"
    fi
}

case "${1:-}" in
    setup) ensure_podman; base_image ;;
    build) cmd_build ;;
    run) shift; cmd_run "$@" ;;
    stop) cmd_stop ;;
    clean) cmd_clean ;;
    image) echo "$IMAGE" ;;
    app-image) cmd_app_image; echo "$APP_IMAGE" ;;
    podman) shift; ensure_podman >/dev/null; exec podman "$@" ;;
    *) echo "usage: $0 {setup|build|run|stop|clean|image|app-image|podman ARGS...}" >&2; exit 2 ;;
esac
