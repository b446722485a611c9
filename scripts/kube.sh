#!/usr/bin/env bash
# Start, stop or describe a real Kubernetes control plane on loopback, for tests:
# etcd, kube-apiserver (RBAC, ServiceAccount admission), kube-controller-manager,
# kube-scheduler and kwok (one fake node; pods get loopback IPs a local process can
# bind). Binaries come from scripts/build-k8s.sh (built once from Go modules, cached).
#
#   scripts/kube.sh start    start everything (idempotent), write $KUBE_DIR/kube.env
#   scripts/kube.sh stop     stop what start started and delete the cluster's data
#   scripts/kube.sh status   say what runs
#   scripts/kube.sh env      print KUBECONFIG and the other variables tests read
#
# There is no kubelet, container runtime, kube-proxy or DNS: tests/e2e/kube/ plays
# those parts (see its docstring). No dynamic volume provisioning either: the test
# harness binds a hostPath PersistentVolume to each claim.
#
# Settings (environment): ENERTEF_KUBE_DIR (state, default .local/kube),
# ENERTEF_K8S_BIN (binaries; default: scripts/build-k8s.sh's cache),
# ENERTEF_KUBE_POD_CIDR (default 127.1.0.0/24), ENERTEF_KUBE_SERVICE_CIDR
# (default 127.2.0.0/24: loopback, so a test can listen on a Service's cluster IP).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBE_DIR=${ENERTEF_KUBE_DIR:-$ROOT/.local/kube}
POD_CIDR=${ENERTEF_KUBE_POD_CIDR:-127.1.0.0/24}
SERVICE_CIDR=${ENERTEF_KUBE_SERVICE_CIDR:-127.2.0.0/24}
NODE_NAME=kwok-node-0
PKI=$KUBE_DIR/pki
ENV_FILE=$KUBE_DIR/kube.env
COMPONENTS="etcd kube-apiserver kube-controller-manager kube-scheduler kwok"

log() { printf '[kube] %s\n' "$*" >&2; }
die() { printf '[kube] error: %s\n' "$*" >&2; exit 1; }

bin_dir() {
  if [ -n "${ENERTEF_K8S_BIN:-}" ]; then echo "$ENERTEF_K8S_BIN"; return; fi
  "$ROOT/scripts/build-k8s.sh"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pid_alive() { [ -f "$KUBE_DIR/$1.pid" ] && kill -0 "$(cat "$KUBE_DIR/$1.pid")" 2>/dev/null; }

api_ready() {
  [ -f "$ENV_FILE" ] || return 1
  # shellcheck source=/dev/null
  . "$ENV_FILE"
  curl -fsS --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
    "https://127.0.0.1:$KUBE_API_PORT/readyz" >/dev/null 2>&1
}

running() {
  local c
  for c in $COMPONENTS; do pid_alive "$c" || return 1; done
  api_ready
}

# A certificate signed by the cluster CA: NAME CN ORG [SAN]
make_cert() {
  local name=$1 cn=$2 org=$3 san=${4:-} ext
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "/CN=$cn${org:+/O=$org}" -out "$PKI/$name.csr" 2>/dev/null
  ext=$(mktemp)
  if [ -n "$san" ]; then
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" > "$ext"
  else
    printf 'extendedKeyUsage=clientAuth\n' > "$ext"
  fi
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 365 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$ext" "$PKI/$name.csr"
}

make_pki() {
  [ -f "$PKI/admin.crt" ] && return
  command -v openssl >/dev/null || die "openssl is needed (apt-get install openssl)"
  log "creating the cluster's CA, certificates and service-account keys in $PKI"
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=enertef-test-ca" -days 365 -sha256 \
    -out "$PKI/ca.crt" 2>/dev/null
  # The first address of the service range is the "kubernetes" Service's cluster IP.
  local kube_svc_ip
  kube_svc_ip=$(python3 -c "import ipaddress,sys; print(ipaddress.ip_network(sys.argv[1])[1])" "$SERVICE_CIDR")
  make_cert apiserver kube-apiserver "" \
    "IP:127.0.0.1,IP:$kube_svc_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  make_cert admin kubernetes-admin system:masters
  make_cert controller-manager system:kube-controller-manager ""
  make_cert scheduler system:kube-scheduler ""
  make_cert kwok kwok-controller system:masters
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# kubeconfig NAME (client certificate $PKI/NAME.crt) for the API server at PORT
make_kubeconfig() {
  local name=$1 port=$2
  cat > "$KUBE_DIR/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority: $PKI/ca.crt
users:
- name: $name
  user:
    client-certificate: $PKI/$name.crt
    client-key: $PKI/$name.key
contexts:
- name: local
  context: {cluster: local, user: $name}
current-context: local
EOF
  chmod 600 "$KUBE_DIR/$name.kubeconfig"
}

# launch NAME COMMAND...: start in the background, log to $KUBE_DIR/NAME.log
launch() {
  local name=$1; shift
  setsid "$@" > "$KUBE_DIR/$name.log" 2>&1 < /dev/null &
  echo $! > "$KUBE_DIR/$name.pid"
}

# alive_and NAME COMMAND...: fail at once if NAME exited, else run COMMAND
alive_and() {
  local name=$1; shift
  pid_alive "$name" || die "$name exited (log: $KUBE_DIR/$name.log)"
  "$@" 2>/dev/null
}

wait_for() {
  local what=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || die "$what not ready after ${seconds}s (log: $KUBE_DIR/$what.log)"
    sleep 0.2
  done
}

kwok_stage_args() {
  local bin=$1 f
  for f in "$bin"/kwok-stages/node/fast/*.yaml "$bin"/kwok-stages/node/heartbeat/*.yaml "$bin"/kwok-stages/pod/fast/*.yaml; do
    case $(basename "$f") in kustomization.yaml) continue ;; esac
    printf -- '--config=%s\n' "$f"
  done
}

start() {
  if running; then log "control plane already runs (https://127.0.0.1:$KUBE_API_PORT)"; return; fi
  stop_components
  local bin started=$SECONDS
  bin=$(bin_dir)
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl; do
    [ -x "$bin/$c" ] || die "$bin/$c missing: run scripts/build-k8s.sh"
  done
  mkdir -p "$KUBE_DIR"
  make_pki
  local etcd_port etcd_peer api_port cm_port sched_port kwok_port
  etcd_port=$(free_port); etcd_peer=$(free_port); api_port=$(free_port)
  cm_port=$(free_port); sched_port=$(free_port); kwok_port=$(free_port)
  # A fresh cluster every start: tests want a known state, and etcd's stored peer URL
  # would not match a newly chosen port.
  rm -rf "$KUBE_DIR/etcd"
  log "starting etcd on 127.0.0.1:$etcd_port"
  launch etcd "$bin/etcd" --name default --data-dir "$KUBE_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "default=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync --log-level warn
  wait_for etcd 30 alive_and etcd curl -fsS -o /dev/null "http://127.0.0.1:$etcd_port/health"

  log "starting kube-apiserver on https://127.0.0.1:$api_port"
  launch kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --authorization-mode Node,RBAC \
    --enable-admission-plugins NamespaceLifecycle,ServiceAccount,LimitRanger,DefaultStorageClass,ResourceQuota,NodeRestriction \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --endpoint-reconciler-type none \
    --allow-privileged=true \
    --profiling=false
  make_kubeconfig admin "$api_port"
  make_kubeconfig controller-manager "$api_port"
  make_kubeconfig scheduler "$api_port"
  make_kubeconfig kwok "$api_port"
  {
    echo "export KUBECONFIG=$KUBE_DIR/admin.kubeconfig"
    echo "export KUBE_API_PORT=$api_port"
    echo "export KUBE_API_URL=https://127.0.0.1:$api_port"
    echo "export KUBE_CA=$PKI/ca.crt"
    echo "export KUBE_ADMIN_CERT=$PKI/admin.crt"
    echo "export KUBE_ADMIN_KEY=$PKI/admin.key"
    echo "export KUBE_BIN=$bin"
    echo "export KUBE_POD_CIDR=$POD_CIDR"
    echo "export KUBE_SERVICE_CIDR=$SERVICE_CIDR"
    echo "export KUBE_DIR=$KUBE_DIR"
    echo "export PATH=$bin:\$PATH"
  } > "$ENV_FILE"
  wait_for kube-apiserver 120 alive_and kube-apiserver api_ready

  log "starting kube-controller-manager, kube-scheduler and kwok"
  launch kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$KUBE_DIR/controller-manager.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$cm_port" \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --use-service-account-credentials=true \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --leader-elect=false --profiling=false
  launch kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$KUBE_DIR/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --leader-elect=false --profiling=false
  # kwok plays the kubelet of nodes annotated kwok.x-k8s.io/node=fake: pods become
  # Running with an address from --cidr (loopback, so a local process can bind it).
  # shellcheck disable=SC2046
  launch kwok "$bin/kwok" --kubeconfig "$KUBE_DIR/kwok.kubeconfig" \
    --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr="$POD_CIDR" --node-ip=127.0.0.1 \
    --server-address="127.0.0.1:$kwok_port" \
    $(kwok_stage_args "$bin")
  local kc=("$bin/kubectl" --kubeconfig "$KUBE_DIR/admin.kubeconfig")
  "${kc[@]}" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE_NAME
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: $NODE_NAME
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
EOF
  wait_for kwok 60 node_ready "${kc[@]}"
  wait_for kube-controller-manager 60 default_sa_exists "${kc[@]}"
  log "control plane up in $((SECONDS - started))s: . $ENV_FILE"
}

node_ready() {
  pid_alive kwok || die "kwok exited (log: $KUBE_DIR/kwok.log)"
  [ "$("$@" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

default_sa_exists() {
  pid_alive kube-controller-manager || die "kube-controller-manager exited (log: $KUBE_DIR/kube-controller-manager.log)"
  "$@" -n default get serviceaccount default >/dev/null 2>&1
}

stop_components() {
  local c pid
  for c in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    [ -f "$KUBE_DIR/$c.pid" ] || continue
    pid=$(cat "$KUBE_DIR/$c.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$KUBE_DIR/$c.pid"
  done
}

stop() {
  stop_components
  rm -rf "$KUBE_DIR/etcd" "$ENV_FILE"
  log "control plane stopped"
}

status() {
  local c
  for c in $COMPONENTS; do
    if pid_alive "$c"; then echo "$c: running (pid $(cat "$KUBE_DIR/$c.pid"))"; else echo "$c: stopped"; fi
  done
  if api_ready; then echo "API server: https://127.0.0.1:$KUBE_API_PORT ready"; else echo "API server: not ready"; return 1; fi
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) running || die "the control plane is not running: scripts/kube.sh start"; cat "$ENV_FILE" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
