#!/usr/bin/env bash
# Helm v4 for the chart tests (deploy/helm/otelpipe), built from the Go module proxy
# (`helm.sh/helm/v4/cmd/helm`) into the cache, never into the repository; built once,
# as scripts/jaeger.sh builds Jaeger.
#
# Usage: scripts/helm.sh build|path|HELM-ARGS...
#   build        build the binary if it is not cached yet
#   path         print the binary's path (building it first)
#   schema       regenerate deploy/helm/otelpipe/values.schema.json from `otelpipe schema`
#                (tests/container/test_helm.py checks the committed file is current)
#   sidecar-manifest  regenerate deploy/kubernetes/sidecar.yaml: the chart's sidecar
#                rendering with the default values (checked current by the same tests)
#   anything else is run as `helm ARGS...` (building it first)
#
# Environment (all optional):
#   HELM_VERSION    module version (default v4.3.2)
#   OTELPIPE_CACHE  cache root (default ~/.cache/otelpipe); binary, Go module and build
#                   caches go to $OTELPIPE_CACHE/helm
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$HERE/lib.sh"

SERVICE=helm
HELM_VERSION="${HELM_VERSION:-v4.3.2}"
HELM_PKG="helm.sh/helm/v4/cmd/helm"
BIN="$CACHE_ROOT/helm/helm-$HELM_VERSION"

build() { go_build "$BIN" "$HELM_PKG" "$HELM_VERSION"; }

case "${1:-}" in
    build) build ;;
    path) build; echo "$BIN" ;;
    sidecar-manifest)
        out="$HERE/../deploy/kubernetes/sidecar.yaml"
        {
            cat <<'HEADER'
# An application pod with otelpipe as a sidecar: the chart deploy/helm/otelpipe rendered
# in mode sidecar with its default values (regenerate: scripts/helm.sh sidecar-manifest;
# tests/container/test_helm.py checks it is current). Equivalent to
#   helm template app deploy/helm/otelpipe --set mode=sidecar --skip-tests
# The app (replace ghcr.io/example/app) exports OTLP to 127.0.0.1 in the pod; otelpipe
# batches, puts the pod's name, UID, namespace and node (downward API: K8S_POD_NAME,
# K8S_POD_UID, K8S_NAMESPACE_NAME, K8S_NODE_NAME) on every resource as k8s.* attributes
# and forwards over OTLP/gRPC to a gateway (OTELPIPE_GATEWAY_ENDPOINT) through a sending
# queue with retries. Probes on /health/liveness and /health/readiness (port 13133, the
# only port on the pod IP). Image: the Dockerfile's documented build,
#   docker build -t otelpipe:0.1.0 .
# tests/container/test_sidecar_pod.py runs this rendering with `podman play kube`.
HEADER
            "$0" template app "$HERE/../deploy/helm/otelpipe" --set mode=sidecar --skip-tests
        } >"$out.tmp"
        mv "$out.tmp" "$out"
        log "wrote deploy/kubernetes/sidecar.yaml"
        ;;
    schema)
        python3 -m pipeline schema | python3 "$HERE/../deploy/helm/values-schema.py" \
            >"$HERE/../deploy/helm/otelpipe/values.schema.json"
        log "wrote deploy/helm/otelpipe/values.schema.json"
        ;;
    "") echo "usage: $0 {build|path|HELM-ARGS...}" >&2; exit 2 ;;
    *)
        build
        # Helm's own caches and config out of $HOME and the repository.
        export HELM_CACHE_HOME="$CACHE_ROOT/helm/home/cache" \
            HELM_CONFIG_HOME="$CACHE_ROOT/helm/home/config" \
            HELM_DATA_HOME="$CACHE_ROOT/helm/home/data"
        exec "$BIN" "$@"
        ;;
esac
