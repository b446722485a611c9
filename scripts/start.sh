#!/usr/bin/env bash
# Bring up enertef-hub on a local k3d cluster: a local image registry, one k3s node,
# PostgreSQL, MinIO, pgAdmin and the zero-to-jupyterhub chart with our images, then
# port-forwards to the hub (8080), the MinIO console (9001) and pgAdmin (5050).
#
#   scripts/start.sh            first run: create and install everything (~10-20 min)
#                               later runs: report status (start a stopped cluster and
#                               the port-forwards if needed), change nothing else
#   scripts/start.sh --upgrade  rebuild both images and re-apply all values/manifests
#   scripts/stop.sh             stop (data kept); scripts/stop.sh --delete-data removes it
#
# Passwords are generated once into Kubernetes Secrets and never printed; the
# summary says how to read the ones an admin needs. Two namespaces: enertef (the hub,
# users' servers, the hub's own credentials) and enertef-data (PostgreSQL, MinIO,
# pgAdmin, and the superuser's and root's passwords, which the hub cannot read).
set -euo pipefail

# stop.sh sources this file for its settings and helpers (main runs only when executed).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

CLUSTER=${ENERTEF_K3D_CLUSTER:-enertef}
NAMESPACE=enertef
DATA_NAMESPACE=enertef-data
# The registry container is k3d-$REGISTRY_NAME; the cluster pulls from
# k3d-registry.localhost:5001/..., as chart-values/jupyterhub.yaml names the images.
REGISTRY_NAME=registry.localhost
REGISTRY_PORT=5001
REGISTRY_CONTAINER=k3d-$REGISTRY_NAME
REGISTRY_IN_CLUSTER=$REGISTRY_CONTAINER:$REGISTRY_PORT
REGISTRY_FROM_HOST=localhost:$REGISTRY_PORT
K3S_IMAGE=${ENERTEF_K3S_IMAGE:-rancher/k3s:v1.33.4-k3s1}
HUB_PORT=${ENERTEF_HUB_PORT:-8080}
MINIO_CONSOLE_PORT=${ENERTEF_MINIO_CONSOLE_PORT:-9001}
PGADMIN_PORT=${ENERTEF_PGADMIN_PORT:-5050}
STATE_DIR=${ENERTEF_K8S_STATE_DIR:-$ROOT/.local/k8s}

Z2JH_CHART_VERSION=4.4.0
MINIO_CHART_VERSION=5.4.0
PGADMIN_CHART_VERSION=1.59.0

# Minimum versions: Docker 23 builds with BuildKit by default (per-Dockerfile
# .dockerignore files); k3d 5.5 for --registry-use with a named registry; helm 3.12
# and kubectl 1.28 are the oldest tested with the z2jh 4.x chart.
MIN_DOCKER=23.0.0
MIN_K3D=5.5.0
MIN_KUBECTL=1.28.0
MIN_HELM=3.12.0

KCTX=k3d-$CLUSTER

log() { printf '[start] %s\n' "$*" >&2; }
die() { printf '[start] error: %s\n' "$*" >&2; exit 1; }

kc() { kubectl --context "$KCTX" -n "$NAMESPACE" "$@"; }
kd() { kubectl --context "$KCTX" -n "$DATA_NAMESPACE" "$@"; }
hm() { helm --kube-context "$KCTX" -n "$NAMESPACE" "$@"; }
hd() { helm --kube-context "$KCTX" -n "$DATA_NAMESPACE" "$@"; }

# version_ge A B: true when version A >= version B (both like 1.2.3, a leading v ignored).
version_ge() {
  local a=${1#v} b=${2#v}
  [ "$(printf '%s\n%s\n' "$b" "$a" | sort -V | head -n1)" = "$b" ]
}

# The first x.y.z in a tool's version output.
first_version() { grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n1; }

tool_version() {
  case $1 in
    docker) docker version --format '{{.Client.Version}}' 2>/dev/null | first_version ;;
    k3d) k3d version 2>/dev/null | first_version ;;
    kubectl) kubectl version --client 2>/dev/null | first_version ;;
    helm) helm version --template '{{.Version}}' 2>/dev/null | first_version ;;
  esac
}

# Check every tool before touching anything; report all problems at once.
preflight() {
  local problems=() tool min version
  for pair in "docker:$MIN_DOCKER" "k3d:$MIN_K3D" "kubectl:$MIN_KUBECTL" "helm:$MIN_HELM"; do
    tool=${pair%%:*}
    min=${pair#*:}
    if ! command -v "$tool" >/dev/null 2>&1; then
      problems+=("$tool is not installed (need $tool >= $min; see docs/kubernetes.md, Prerequisites)")
      continue
    fi
    version=$(tool_version "$tool" || true)
    if [ -z "$version" ]; then
      problems+=("could not read the version of $tool (need $tool >= $min)")
    elif ! version_ge "$version" "$min"; then
      problems+=("$tool $version is too old (need $tool >= $min)")
    fi
  done
  if command -v docker >/dev/null 2>&1 && ! docker info >/dev/null 2>&1; then
    problems+=("docker is installed but its engine does not answer: start Docker (or check DOCKER_HOST) and retry")
  fi
  if [ ${#problems[@]} -gt 0 ]; then
    printf '[start] error: cannot start, fix these first:\n' >&2
    printf '  - %s\n' "${problems[@]}" >&2
    return 1
  fi
}

cluster_exists() { k3d cluster list "$CLUSTER" >/dev/null 2>&1; }
cluster_running() {
  kubectl --context "$KCTX" get --raw /readyz >/dev/null 2>&1
}
# release_deployed NAMESPACE RELEASE
release_deployed() {
  [ "$(helm --kube-context "$KCTX" -n "$1" status "$2" -o json 2>/dev/null | grep -o '"status":"[a-z-]*"' | head -n1)" = '"status":"deployed"' ]
}
all_installed() {
  release_deployed "$NAMESPACE" enertef && release_deployed "$DATA_NAMESPACE" enertef-minio \
    && release_deployed "$DATA_NAMESPACE" enertef-pgadmin && kd get statefulset enertef-postgresql >/dev/null 2>&1
}

# Clusters made before the two-namespace layout ran PostgreSQL and MinIO in enertef,
# with their superuser/root passwords readable by the hub. Their data cannot move
# namespaces in place: say so instead of installing a second, empty set beside it.
refuse_old_layout() {
  if kc get statefulset enertef-postgresql >/dev/null 2>&1; then
    die "this cluster runs PostgreSQL and MinIO in namespace $NAMESPACE (the old one-namespace layout, where the hub could read their superuser passwords). Back up what you need (pg_dump, mc mirror), then start afresh: scripts/stop.sh --delete-data && scripts/start.sh"
  fi
}

ensure_registry() {
  if k3d registry list "$REGISTRY_CONTAINER" >/dev/null 2>&1; then
    # After a reboot the registry container may be stopped; the cluster pulls from it.
    docker start "$REGISTRY_CONTAINER" >/dev/null 2>&1 || true
    return
  fi
  if port_in_use "$REGISTRY_PORT"; then
    die "port $REGISTRY_PORT (the local image registry) is used by another program: free it and retry"
  fi
  log "creating the local image registry $REGISTRY_CONTAINER on port $REGISTRY_PORT"
  k3d registry create "$REGISTRY_NAME" --port "$REGISTRY_PORT" >/dev/null
}

ensure_cluster() {
  if ! cluster_exists; then
    log "creating k3d cluster $CLUSTER ($K3S_IMAGE)"
    # Traefik is not needed: everything is reached through kubectl port-forward.
    k3d cluster create "$CLUSTER" --image "$K3S_IMAGE" \
      --registry-use "$REGISTRY_IN_CLUSTER" \
      --k3s-arg "--disable=traefik@server:*" \
      --wait --timeout 300s >/dev/null
  elif ! cluster_running; then
    log "starting the stopped k3d cluster $CLUSTER"
    k3d cluster start "$CLUSTER" --wait >/dev/null
  fi
  for _ in $(seq 1 60); do
    cluster_running && return
    sleep 2
  done
  die "the cluster's API server did not become ready: see 'k3d cluster list' and 'docker logs k3d-$CLUSTER-server-0'"
}

image_tag() {
  if [ -n "${ENERTEF_IMAGE_TAG:-}" ]; then
    echo "$ENERTEF_IMAGE_TAG"
    return
  fi
  local rev
  rev=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo dev)
  # A working tree with changes gets a fresh tag each build, so pods pick it up.
  if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ]; then
    rev="$rev-$(date +%Y%m%d%H%M%S)"
  fi
  echo "$rev"
}

build_and_push() {
  local tag=$1 image
  for image in hub notebook; do
    log "building enertef-$image:$tag (the first notebook build downloads several GB)"
    docker build -f "$ROOT/jn-tb/$image/Dockerfile" -t "$REGISTRY_FROM_HOST/enertef-$image:$tag" "$ROOT"
    docker push "$REGISTRY_FROM_HOST/enertef-$image:$tag" >/dev/null
  done
}

# N random letters and digits (no pipe closed early: safe under pipefail).
random_secret() {
  local chars
  chars=$(head -c 192 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
  printf '%s' "${chars:0:${1:-32}}"
}

# create_secret NAMESPACE NAME: a Secret from KEY=VALUE lines on stdin, via a private
# temporary file so no value appears on a command line (ps) or in the output.
create_secret() {
  local namespace=$1 name=$2 file
  file=$(mktemp)
  chmod 600 "$file"
  cat > "$file"
  kubectl --context "$KCTX" -n "$namespace" create secret generic "$name" --from-env-file="$file" >/dev/null
  rm -f "$file"
  kubectl --context "$KCTX" -n "$namespace" label secret "$name" app.kubernetes.io/part-of=enertef-hub >/dev/null
}

# Generated once: a second run (or --upgrade) keeps the existing Secrets, because the
# databases and MinIO were initialised with them.
ensure_secrets() {
  if kc get secret enertef-hub >/dev/null 2>&1; then
    return
  fi
  if kd get statefulset enertef-postgresql >/dev/null 2>&1; then
    die "Secret enertef-hub is missing but PostgreSQL was already initialised with the old passwords: recreate it from chart-values/manifests/secrets.example.yaml with those values, or start afresh with scripts/stop.sh --delete-data"
  fi
  # Left over by an interrupted first run (nothing used them yet).
  kd delete secret enertef-postgresql enertef-minio enertef-minio-hub enertef-pgadmin --ignore-not-found >/dev/null
  log "generating passwords into Secrets enertef-postgresql, enertef-minio, enertef-minio-hub, enertef-pgadmin ($DATA_NAMESPACE) and enertef-hub ($NAMESPACE)"
  local pg_super pg_admin minio_root minio_hub pgadmin key
  pg_super=$(random_secret 32)
  pg_admin=$(random_secret 32)
  minio_root=$(random_secret 40)
  minio_hub=$(random_secret 40)
  pgadmin=$(random_secret 24)
  key=$(random_secret 48)
  # The superuser's and root's passwords exist in $DATA_NAMESPACE only: the hub's
  # ServiceAccount may read every Secret of $NAMESPACE (the z2jh chart's Role).
  printf 'POSTGRES_PASSWORD=%s\nENERTEF_ADMIN_PASSWORD=%s\n' "$pg_super" "$pg_admin" \
    | create_secret "$DATA_NAMESPACE" enertef-postgresql
  printf 'rootUser=enertefadmin\nrootPassword=%s\n' "$minio_root" | create_secret "$DATA_NAMESPACE" enertef-minio
  # The hub's own MinIO user; the MinIO chart creates it (chart-values/minio.yaml users).
  printf 'key=%s\n' "$minio_hub" | create_secret "$DATA_NAMESPACE" enertef-minio-hub
  printf 'password=%s\n' "$pgadmin" | create_secret "$DATA_NAMESPACE" enertef-pgadmin
  # Last: its presence marks the set as complete (checked above).
  {
    printf 'ENERTEF_POSTGRES_ADMIN_URL=postgresql://enertef_admin:%s@enertef-postgresql.%s:5432/mlflow\n' "$pg_admin" "$DATA_NAMESPACE"
    printf 'ENERTEF_MINIO_ACCESS_KEY=enertef-hub\nENERTEF_MINIO_SECRET_KEY=%s\n' "$minio_hub"
    printf 'ENERTEF_SECRET_KEY=%s\n' "$key"
    # The hub creates the admin account (hub.config Authenticator.admin_users) from it.
    printf 'ENERTEF_HUB_ADMIN_PASSWORD=%s\n' "$(random_secret 24)"
  } | create_secret "$NAMESPACE" enertef-hub
}

ensure_helm_repos() {
  log "adding Helm repositories (jupyterhub, minio, runix)"
  helm repo add jupyterhub https://hub.jupyter.org/helm-chart/ --force-update >/dev/null
  helm repo add minio https://charts.min.io/ --force-update >/dev/null
  helm repo add runix https://helm.runix.net --force-update >/dev/null
  helm repo update jupyterhub minio runix >/dev/null
}

install_all() {
  local tag=$1
  refuse_old_layout
  kubectl --context "$KCTX" apply -f "$ROOT/chart-values/manifests/namespace.yaml" >/dev/null
  ensure_secrets
  log "installing PostgreSQL and the network policies ($DATA_NAMESPACE)"
  kd apply -f "$ROOT/chart-values/manifests/postgresql.yaml" >/dev/null
  kd apply -f "$ROOT/chart-values/manifests/networkpolicies.yaml" >/dev/null
  ensure_helm_repos
  log "installing MinIO (chart $MINIO_CHART_VERSION) and the hub's MinIO user"
  hd upgrade --install enertef-minio minio/minio --version "$MINIO_CHART_VERSION" \
    -f "$ROOT/chart-values/minio.yaml" --wait --wait-for-jobs --timeout 10m >/dev/null
  log "installing pgAdmin (chart $PGADMIN_CHART_VERSION)"
  hd upgrade --install enertef-pgadmin runix/pgadmin4 --version "$PGADMIN_CHART_VERSION" \
    -f "$ROOT/chart-values/pgadmin.yaml" --wait --timeout 10m >/dev/null
  log "waiting for PostgreSQL"
  kd rollout status statefulset/enertef-postgresql --timeout=5m >/dev/null
  log "installing JupyterHub (zero-to-jupyterhub $Z2JH_CHART_VERSION, images $tag)"
  hm upgrade --install enertef jupyterhub/jupyterhub --version "$Z2JH_CHART_VERSION" \
    -f "$ROOT/chart-values/jupyterhub.yaml" \
    --set "hub.image.tag=$tag" --set "singleuser.image.tag=$tag" \
    --set "hub.config.JupyterHub.subdomain_host=http://localhost:$HUB_PORT" \
    --wait --timeout 15m >/dev/null
}

wait_ready() {
  log "waiting for the hub, proxy, PostgreSQL, MinIO and pgAdmin"
  kd rollout status statefulset/enertef-postgresql --timeout=5m >/dev/null
  kd rollout status deployment/enertef-minio --timeout=5m >/dev/null
  kd rollout status deployment/enertef-pgadmin --timeout=5m >/dev/null
  kc rollout status deployment/hub --timeout=10m >/dev/null
  kc rollout status deployment/proxy --timeout=5m >/dev/null
}

# Whether the pid in file $1 is still one of our port-forwards (a stale pid file may
# name an unrelated process by now: never trust the number alone).
pid_alive() {
  [ -f "$1" ] && ps -p "$(cat "$1")" -o args= 2>/dev/null | grep -q port-forward
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# One background `kubectl port-forward` per service; pid and log under $STATE_DIR.
# ensure_port_forward NAME NAMESPACE TARGET LOCAL_PORT REMOTE_PORT
ensure_port_forward() {
  local name=$1 namespace=$2 target=$3 local_port=$4 remote_port=$5
  local pidfile=$STATE_DIR/port-forward-$name.pid logfile=$STATE_DIR/port-forward-$name.log
  if pid_alive "$pidfile"; then
    return
  fi
  if port_in_use "$local_port"; then
    die "port $local_port (for $name) is used by another program: free it, or set ENERTEF_${name^^}_PORT (see docs/kubernetes.md, Troubleshooting)"
  fi
  mkdir -p "$STATE_DIR"
  nohup kubectl --context "$KCTX" -n "$namespace" port-forward --address 127.0.0.1 \
    "$target" "$local_port:$remote_port" > "$logfile" 2>&1 &
  echo $! > "$pidfile"
  # Up to 30 s: kubectl (or a loaded machine) can take a while to listen.
  for _ in $(seq 1 150); do
    port_in_use "$local_port" && return
    pid_alive "$pidfile" || break
    sleep 0.2
  done
  die "port-forward to $target did not start: see $logfile"
}

ensure_port_forwards() {
  ensure_port_forward hub "$NAMESPACE" svc/proxy-public "$HUB_PORT" 80
  ensure_port_forward minio_console "$DATA_NAMESPACE" svc/enertef-minio-console "$MINIO_CONSOLE_PORT" 9001
  ensure_port_forward pgadmin "$DATA_NAMESPACE" svc/enertef-pgadmin "$PGADMIN_PORT" 80
}

report_status() {
  local pods
  pods=$( { kc get pods --no-headers 2>/dev/null; kd get pods --no-headers 2>/dev/null; } \
    | awk '{print "    " $1 "  " $2 "  " $3}')
  cat >&2 <<EOF
[start] enertef-hub runs on k3d cluster '$CLUSTER' (namespaces $NAMESPACE and $DATA_NAMESPACE):
    JupyterHub      http://localhost:$HUB_PORT   (log in as 'hubadmin'; users' servers at http://<name>.localhost:$HUB_PORT)
    MinIO console   http://127.0.0.1:$MINIO_CONSOLE_PORT   user enertefadmin
    pgAdmin         http://127.0.0.1:$PGADMIN_PORT   user admin@example.com
  Passwords (never printed; read them when needed):
    kubectl --context $KCTX -n $NAMESPACE get secret enertef-hub -o jsonpath='{.data.ENERTEF_HUB_ADMIN_PASSWORD}' | base64 -d
    kubectl --context $KCTX -n $DATA_NAMESPACE get secret enertef-minio -o jsonpath='{.data.rootPassword}' | base64 -d
    kubectl --context $KCTX -n $DATA_NAMESPACE get secret enertef-pgadmin -o jsonpath='{.data.password}' | base64 -d
  Pods:
$pods
  Stop with scripts/stop.sh (data kept); rebuild images with scripts/start.sh --upgrade.
EOF
}

# The comment block at the top of a script, without the '# '.
header_help() {
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$1"
}

usage() { header_help "${BASH_SOURCE[0]}"; }

main() {
  local upgrade=0
  while [ $# -gt 0 ]; do
    case $1 in
      --upgrade) upgrade=1 ;;
      -h|--help) usage; return 0 ;;
      *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
  done
  preflight || exit 1
  mkdir -p "$STATE_DIR"
  ensure_registry
  ensure_cluster
  if [ "$upgrade" = 0 ] && all_installed; then
    log "already installed: checking it runs (scripts/start.sh --upgrade rebuilds and re-applies)"
  else
    local tag
    tag=$(image_tag)
    build_and_push "$tag"
    install_all "$tag"
  fi
  wait_ready
  ensure_port_forwards
  report_status
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
