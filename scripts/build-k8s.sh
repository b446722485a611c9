#!/usr/bin/env bash
# Print the directory holding a real Kubernetes control plane and Helm, building
# them from their Go modules the first time and caching the stripped binaries
# outside the clone, keyed by versions:
#
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl   (Kubernetes)
#   etcd                                                               (etcd server)
#   kwok                                                               (fake nodes)
#   helm                                                               (Helm 3)
#
# There is no container runtime here: kwok marks pods Running, and
# tests/harness/kube/node.py plays the node. Nothing here is downloaded
# prebuilt; every binary is compiled from the Go module proxy.
#
#   scripts/build-k8s.sh            build what is missing, print the bin directory
#   scripts/build-k8s.sh helm       only Helm (print its path)
set -euo pipefail
K8S_VERSION=${ENERTEF_K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ENERTEF_ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${ENERTEF_KWOK_VERSION:-v0.8.0}
HELM_VERSION=${ENERTEF_HELM_VERSION:-v3.19.0}
CACHE=${ENERTEF_CACHE_DIR:-/var/cache/enertef-hub}
BIN_DIR=$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION
log() { printf '[build-k8s] %s\n' "$*" >&2; }
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { log "error: Go is needed to build the control plane (apt-get install golang-go)"; exit 1; }

# Builds share one scratch GOPATH cache so a cold run can delete it afterwards
# (about 3.6 GB); the binaries are what is kept.
WORK=$(mktemp -d /var/tmp/enertef-k8s-build.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export GOFLAGS=-mod=mod CGO_ENABLED=0
LDFLAGS="-s -w"

build_helm() {
  [ -x "$BIN_DIR/helm" ] && return
  log "building Helm $HELM_VERSION"
  # As Helm's Makefile: its version, and the Kubernetes version `helm template` assumes.
  GOBIN="$WORK/bin" go install -ldflags "$LDFLAGS -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${K8S_VERSION#v1.}" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  install -m 755 "$WORK/bin/helm" "$BIN_DIR/helm"
}

build_kwok() {
  [ -x "$BIN_DIR/kwok" ] && [ -d "$BIN_DIR/kwok-stages" ] && return
  log "building kwok $KWOK_VERSION"
  GOBIN="$WORK/bin" go install -ldflags "$LDFLAGS" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2
  install -m 755 "$WORK/bin/kwok" "$BIN_DIR/kwok"
  # The stage configs (what kwok does to nodes and pods) ship in the module source.
  local src
  src=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  rm -rf "$BIN_DIR/kwok-stages.tmp"
  mkdir -p "$BIN_DIR/kwok-stages.tmp"
  for stage in node/fast node/heartbeat pod/fast; do
    mkdir -p "$BIN_DIR/kwok-stages.tmp/$stage"
    cp "$src/kustomize/stage/$stage/"*.yaml "$BIN_DIR/kwok-stages.tmp/$stage/"
  done
  chmod -R u+w "$BIN_DIR/kwok-stages.tmp"
  rm -rf "$BIN_DIR/kwok-stages"
  mv "$BIN_DIR/kwok-stages.tmp" "$BIN_DIR/kwok-stages"
}

build_etcd() {
  [ -x "$BIN_DIR/etcd" ] && return
  log "building etcd $ETCD_VERSION"
  mkdir -p "$WORK/etcd"
  cat > "$WORK/etcd/main.go" <<'EOF'
// A wrapper main: the etcd server's own entry point, from its Go module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (cd "$WORK/etcd" && go mod init enertef.local/etcd >/dev/null 2>&1 \
    && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >&2 \
    && go mod tidy >&2 \
    && go build -ldflags "$LDFLAGS" -o "$WORK/bin/etcd" . >&2)
  install -m 755 "$WORK/bin/etcd" "$BIN_DIR/etcd"
}

build_kubernetes() {
  local missing=0 c
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$BIN_DIR/$c" ] || missing=1
  done
  [ $missing -eq 0 ] && return
  log "building Kubernetes $K8S_VERSION (apiserver, controller-manager, scheduler, kubectl; several minutes)"
  mkdir -p "$WORK/kube"
  local modfile staging_version
  modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging_version=v0${K8S_VERSION#v1}
  {
    echo "module enertef.local/kube"
    echo
    echo "go $(sed -n 's/^go //p' "$modfile")"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    # k8s.io/kubernetes replaces each staging module with a path inside its own
    # repository; outside it, each one is its own released module.
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$staging_version"'#p' "$modfile"
    echo ")"
  } > "$WORK/kube/go.mod"
  cat > "$WORK/kube/tools.go" <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
EOF
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local ver_flags="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  (cd "$WORK/kube" && { go mod tidy -e >&2 || true; })
  for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [ -x "$BIN_DIR/$c" ] && continue
    (cd "$WORK/kube" && go build -ldflags "$LDFLAGS $ver_flags" -o "$WORK/bin/$c" "k8s.io/kubernetes/cmd/$c" >&2)
    install -m 755 "$WORK/bin/$c" "$BIN_DIR/$c"
  done
}

# Cached: answer at once, without waiting for another build's lock.
if [ "${1:-}" = "helm" ] && [ -x "$BIN_DIR/helm" ]; then echo "$BIN_DIR/helm"; exit 0; fi
all_cached=1
for b in helm kwok etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  [ -x "$BIN_DIR/$b" ] || all_cached=0
done
if [ -z "${1:-}" ] && [ $all_cached -eq 1 ] && [ -d "$BIN_DIR/kwok-stages" ]; then echo "$BIN_DIR"; exit 0; fi

mkdir -p "$BIN_DIR" "$WORK/bin"
# One build at a time (bootstrap, a test and a developer may all ask at once): the
# others wait here and then find the binaries cached.
exec 9>"$CACHE/.build-k8s.lock"
flock 9
# Use a build cache inside the scratch dir only when none is configured to persist:
# a developer's ~/.cache/go-build speeds up rebuilds; CI deletes the scratch dir.
export GOCACHE=${ENERTEF_GOCACHE:-$WORK/gocache}
if [ "${1:-}" = "helm" ]; then
  build_helm
  echo "$BIN_DIR/helm"
  exit 0
fi
build_helm
build_kwok
build_etcd
build_kubernetes
echo "$BIN_DIR"
