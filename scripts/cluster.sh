#!/usr/bin/env bash
# make cluster: one Ubuntu/Debian workstation with an NVIDIA GPU and its driver becomes the cluster the builds run
# on: the NVIDIA container toolkit, k3s, the NVIDIA device plugin, Argo Workflows with its server, and this
# project's chart (MinIO, the WorkflowTemplates, RBAC, the GPU semaphore sized to the GPUs found here).
#
#   make cluster                      # or: sudo scripts/cluster.sh
#   make cluster DRY_RUN=1            # print every check and every command it would run; change nothing
#   make cluster UNINSTALL=1          # the way back: remove what it installed, in reverse order (DRY_RUN=1 too);
#                                     # the store's data, k3s and the toolkit stay unless DELETE_DATA=1
#
# Every outside behaviour this relies on, with the upstream file or issue it was checked against at the pinned
# versions, is listed in docs/cluster.md: read it before bumping a version.
#
# Idempotent: each step first checks whether it is done (at the pinned version) and runs only when it is not, so
# a second run changes nothing. It never installs the GPU driver (that needs a reboot): it says how, and stops.
# Versions are pinned below; override one from the environment (K3S_VERSION=... make cluster).
set -euo pipefail

K3S_VERSION=${K3S_VERSION:-v1.33.3+k3s1}
TOOLKIT_VERSION=${TOOLKIT_VERSION:-1.17.8-1}           # NVIDIA container toolkit (Debian package version)
DEVICE_PLUGIN_VERSION=${DEVICE_PLUGIN_VERSION:-0.17.1}  # NVIDIA k8s-device-plugin Helm chart
ARGO_VERSION=${ARGO_VERSION:-v4.0.10}                  # Argo Workflows: controller and server (Hera 7 targets v4.0)
HELM_VERSION=${HELM_VERSION:-v3.18.4}
NAMESPACE=${NAMESPACE:-builds}                          # where the builds run: ARGO_NAMESPACE for make submit
RELEASE=${RELEASE:-qslm}
DRY_RUN=${DRY_RUN:-}
UNINSTALL=${UNINSTALL:-}
DELETE_DATA=${DELETE_DATA:-}
NODE_NAME=${NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}  # k3s names its node after the host, lower case
MIN_DRIVER=525  # the stage images' CUDA 12.6 runs on drivers >= 560, and on >= 525 through minor-version compatibility

CHART="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/charts/quantum-slm"
export KUBECONFIG=/etc/rancher/k3s/k3s.yaml
TOOLKIT_LIST=/etc/apt/sources.list.d/nvidia-container-toolkit.list
TOOLKIT_KEYRING=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
ARGO_MANIFEST="https://github.com/argoproj/argo-workflows/releases/download/${ARGO_VERSION}/install.yaml"
# Pod Security "restricted" for Argo's own init and wait containers (the builds' pods declare the rest). The uid is
# workflows/steps.py EXECUTOR_UID: the local runner reads outputs back as it (tests/scripts checks they agree).
EXECUTOR='securityContext: {runAsNonRoot: true, runAsUser: 8737, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}'
UPGRADED=""  # helm releases this run installed or upgraded
FAILED=()    # dry run: the prerequisites that failed (a real run stops at the first)
# The device plugin chart (0.17.1 values.yaml, affinity) schedules its DaemonSet only on nodes with an NFD label or
# this one; k3s runs no NFD, so the node gets it here (NVIDIA/k8s-device-plugin#708).
GPU_LABEL=nvidia.com/gpu.present
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

say() { printf '%s\n' "$*"; }
# quote WORD...: the words as a shell would need them, to copy and paste ('...' only where needed).
quote() {
  local w out=()
  for w; do
    if [[ $w =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then out+=("$w"); else out+=("'${w//\'/\'\\\'\'}'"); fi
  done
  printf '%s' "${out[*]}"
}
step() { printf '\n== %s\n' "$*"; }
# fail MESSAGE: stop with the fix; in a dry run, mark it and go on, so the whole plan is printed.
fail() {
  if [ -n "$DRY_RUN" ]; then say "  FAILED: $*"; FAILED+=("$*"); return 0; fi
  printf '\ncluster: error: %s\n' "$*" >&2; exit 1
}
# A command that changes the machine: printed, and run unless DRY_RUN.
run() {
  say "${DRY_RUN:+would }run: $(quote "$@")"
  [ -n "$DRY_RUN" ] || "$@"
}
# check DESCRIPTION COMMAND...: runs a read-only command (in a dry run too); true when it succeeds.
check() {
  local what=$1; shift
  say "check: $what  \$ $(quote "$@")"
  if "$@" >"$WORK/out" 2>&1; then say "  yes"; else say "  no"; return 1; fi
}
# check_output DESCRIPTION TEXT COMMAND...: the same, true when the command's output contains TEXT.
check_output() {
  local what=$1 text=$2; shift 2
  say "check: $what  \$ $(quote "$@")  (output has: $text)"
  "$@" >"$WORK/out" 2>&1 || true
  if [[ "$(cat "$WORK/out")" == *"$text"* ]]; then say "  yes"; else say "  no"; return 1; fi
}
# wait_for DESCRIPTION REGEX COMMAND...: poll a read-only command (3 s apart, 3 minutes) until its output matches.
wait_for() {
  local what=$1 regex=$2; shift 2
  say "${DRY_RUN:+would }wait: $what  \$ $(quote "$@")  (output matches: $regex)"
  [ -z "$DRY_RUN" ] || return 0
  for _ in $(seq 60); do
    if [[ "$("$@" 2>&1 || true)" =~ $regex ]]; then say "  yes"; return 0; fi
    sleep 3
  done
  return 1
}
kubectl() { k3s kubectl "$@"; }
sha() { sha256sum | cut -c1-16; }

if [ "$(id -u)" != 0 ]; then
  say "cluster: running as root through sudo (the checks read k3s's kubeconfig; the steps install packages)"
  exec sudo --preserve-env=DRY_RUN,UNINSTALL,DELETE_DATA,NODE_NAME,K3S_VERSION,TOOLKIT_VERSION,DEVICE_PLUGIN_VERSION,ARGO_VERSION,HELM_VERSION,NAMESPACE,RELEASE,GPUS "$0" "$@"
fi

# uninstall: the install's steps undone in reverse order, each only when there is something to undo.
uninstall() {
  say "cluster: removing what make cluster installed, in reverse order${DRY_RUN:+ (dry run: nothing is changed)}"
  step "quantum-slm chart (release $RELEASE in $NAMESPACE)"
  if check "release $RELEASE exists in $NAMESPACE" helm status "$RELEASE" -n "$NAMESPACE"; then
    run helm uninstall "$RELEASE" -n "$NAMESPACE"  # its PVCs stay (helm.sh/resource-policy: keep)
  fi
  if [ -n "$DELETE_DATA" ]; then
    step "namespace $NAMESPACE: MinIO's volume (every published build), the model cache, the credentials"
    if check "namespace $NAMESPACE exists" kubectl get namespace "$NAMESPACE"; then
      run kubectl delete namespace "$NAMESPACE"
    fi
  else
    say "kept: namespace $NAMESPACE with MinIO's volume (every published build), the model cache and the credentials (DELETE_DATA=1 removes them)"
  fi
  step "Argo Workflows $ARGO_VERSION"
  if check "the argo namespace exists" kubectl get namespace argo; then
    run kubectl delete --ignore-not-found -n argo -f "$ARGO_MANIFEST"  # the CRDs too: every Workflow goes
    run kubectl delete namespace argo
  fi
  step "NVIDIA device plugin $DEVICE_PLUGIN_VERSION"
  if check "release nvdp exists" helm status nvdp -n nvidia-device-plugin; then
    run helm uninstall nvdp -n nvidia-device-plugin
  fi
  if check "namespace nvidia-device-plugin exists" kubectl get namespace nvidia-device-plugin; then
    run kubectl delete namespace nvidia-device-plugin
  fi
  if check_output "helm knows NVIDIA's chart repository" https://nvidia.github.io/k8s-device-plugin helm repo list -o json; then
    run helm repo remove nvdp
  fi
  if check_output "node $NODE_NAME has the label $GPU_LABEL=true" true \
       kubectl get node "$NODE_NAME" -o "jsonpath={.metadata.labels.${GPU_LABEL//./\\.}}"; then
    run kubectl label node "$NODE_NAME" "$GPU_LABEL-"
  fi
  if [ -z "$DELETE_DATA" ]; then
    say "kept: k3s (its local-path volumes hold the store), helm and the NVIDIA container toolkit. DELETE_DATA=1 removes k3s with every volume, and the toolkit; copy the store out first (make list; mc mirror)."
  else
    step "k3s (and every volume on it) and the NVIDIA container toolkit"
    if check_output "k3s is installed" "k3s version" k3s --version; then
      run k3s-uninstall.sh  # k3s's own uninstaller (get.k3s.io puts it in /usr/local/bin): its data and volumes go too
    fi
    if check_output "nvidia-ctk is installed" "version" nvidia-ctk --version; then
      run apt-get purge -y -qq nvidia-container-toolkit nvidia-container-toolkit-base libnvidia-container-tools libnvidia-container1
    fi
    if check "NVIDIA's apt repository is configured" test -e "$TOOLKIT_LIST"; then
      run rm -f "$TOOLKIT_LIST" "$TOOLKIT_KEYRING"
    fi
    say "kept: helm (/usr/local/bin/helm), a general tool; remove it yourself if nothing else uses it"
  fi
  step "done${DRY_RUN:+ (dry run: nothing was changed)}"
}
if [ -n "$UNINSTALL" ]; then
  uninstall
  exit 0
fi

say "cluster: k3s $K3S_VERSION, NVIDIA container toolkit $TOOLKIT_VERSION, device plugin $DEVICE_PLUGIN_VERSION, Argo Workflows $ARGO_VERSION, chart $CHART -> namespace $NAMESPACE${DRY_RUN:+ (dry run: nothing is changed)}"

step "this machine"
. /etc/os-release
case " ${ID:-} ${ID_LIKE:-} " in
  *" debian "*|*" ubuntu "*) say "check: Ubuntu or Debian: ${PRETTY_NAME:-$ID}" ;;
  *) fail "this script sets up Ubuntu or Debian (apt); /etc/os-release says ${PRETTY_NAME:-unknown}" ;;
esac
if ! check "lspci is installed (to look for the GPU)" lspci --version; then
  run apt-get update -qq  # a fresh machine's package lists may be empty or stale
  run apt-get install -y -qq pciutils
fi
gpu_seen="not checked (lspci is not installed yet)"
if [ -z "$DRY_RUN" ] || command -v lspci >/dev/null 2>&1; then
  gpu_seen="on the PCI bus"
  say "check: an NVIDIA GPU is on the PCI bus (vendor 10de, 3D or display controller)  \$ lspci -d 10de::0302; lspci -d 10de::0300"
  gpus_pci=$(lspci -d 10de::0302; lspci -d 10de::0300)
  if [ -z "$gpus_pci" ]; then
    fail "no NVIDIA GPU here (lspci lists no NVIDIA display or 3D controller). The builds' train and eval steps need one; without it, build on the CPU with 'make build VERSION=smoke', or run the workflow with 'make local-run'."
  fi
  [ -z "$gpus_pci" ] || say "  ${gpus_pci//$'\n'/$'\n'  }"
fi

step "NVIDIA driver"
if check "the driver answers (nvidia-smi)" nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; then
  cp "$WORK/out" "$WORK/gpus"
  while IFS=', ' read -r line; do say "  $line"; done <"$WORK/gpus"
  driver=$(head -n1 "$WORK/gpus" | sed 's/.*, *//; s/\..*//')
  if [ "${driver:-0}" -lt "$MIN_DRIVER" ] 2>/dev/null; then
    fail "NVIDIA driver $driver is older than $MIN_DRIVER: the stage images (CUDA 12.6) need a newer one; update it and reboot"
  fi
  GPUS=${GPUS:-$(wc -l <"$WORK/gpus" | tr -d ' ')}
else
  GPUS=${GPUS:-1}  # a dry run goes on: the plan below is the one for one GPU
  fail "the NVIDIA driver does not answer ($(head -n1 "$WORK/out")); a GPU: ${gpu_seen}. Install the driver, reboot, and run make cluster again: on Ubuntu 'sudo ubuntu-drivers install', on Debian 'sudo apt-get install nvidia-driver firmware-misc-nonfree' (contrib non-free non-free-firmware in apt sources). With Secure Boot, enrol the module key when asked."
fi
say "  GPU steps at once (the GPU semaphore): $GPUS"

step "NVIDIA container toolkit $TOOLKIT_VERSION"
if ! check_output "nvidia-ctk is installed at ${TOOLKIT_VERSION%-*}" "version ${TOOLKIT_VERSION%-*}" nvidia-ctk --version; then
  if ! check "NVIDIA's apt repository is configured" test -s "$TOOLKIT_LIST"; then
    run curl -fsSL -o "$WORK/nvidia.gpgkey" https://nvidia.github.io/libnvidia-container/gpgkey
    run gpg --batch --yes --dearmor -o "$WORK/nvidia.gpg" "$WORK/nvidia.gpgkey"
    run install -m 0644 "$WORK/nvidia.gpg" "$TOOLKIT_KEYRING"
    run curl -fsSL -o "$WORK/nvidia.list" https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list
    run sed -i "s#deb https://#deb [signed-by=$TOOLKIT_KEYRING] https://#" "$WORK/nvidia.list"
    run install -m 0644 "$WORK/nvidia.list" "$TOOLKIT_LIST"
  fi
  run apt-get update -qq
  run apt-get install -y -qq "nvidia-container-toolkit=$TOOLKIT_VERSION" "nvidia-container-toolkit-base=$TOOLKIT_VERSION" \
    "libnvidia-container-tools=$TOOLKIT_VERSION" "libnvidia-container1=$TOOLKIT_VERSION"
fi

step "k3s $K3S_VERSION"
if ! check_output "k3s is installed at $K3S_VERSION" "$K3S_VERSION" k3s --version; then
  run curl -sfL -o "$WORK/k3s-install.sh" https://get.k3s.io
  run env INSTALL_K3S_VERSION="$K3S_VERSION" sh "$WORK/k3s-install.sh"
elif ! check_output "k3s's containerd has the nvidia runtime (found when k3s starts)" '"nvidia"' k3s crictl info; then
  run systemctl restart k3s  # the toolkit came after k3s: k3s finds the runtime at its next start
fi
wait_for "the node is Ready" " Ready " kubectl get nodes --no-headers || fail "k3s's node is not Ready after 3 minutes: see journalctl -u k3s"
# k3s writes its kubeconfig for root only (0600): the user who ran sudo gets a copy for helm status, kubectl and the
# chart's NOTES, unless they have a kubeconfig already (never overwritten).
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
  user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
  if [ -n "$user_home" ] && ! check "$SUDO_USER has a kubeconfig" test -e "$user_home/.kube/config"; then
    run install -D -m 0600 -o "$SUDO_USER" -g "$(id -g "$SUDO_USER")" "$KUBECONFIG" "$user_home/.kube/config"
  fi
fi

step "helm $HELM_VERSION"
if ! check_output "helm is installed at $HELM_VERSION" "$HELM_VERSION" helm version --short; then
  run curl -fsSL -o "$WORK/get-helm-3" "https://raw.githubusercontent.com/helm/helm/$HELM_VERSION/scripts/get-helm-3"
  run env DESIRED_VERSION="$HELM_VERSION" bash "$WORK/get-helm-3"
fi

# helm_release WAIT NAME NAMESPACE CHART ARGS...: install or upgrade unless the release was made from exactly this
# chart and these arguments (their digest is the release's description), so a second run changes nothing. WAIT
# (--wait or "") makes helm wait for the release's objects to be ready, PVCs Bound among them (docs/cluster.md).
helm_release() {
  local wait=$1 name=$2 ns=$3 chart=$4; shift 4
  local digest
  digest=$( { printf '%s\n' "$chart" "$@"; if [ -d "$chart" ]; then find "$chart" -type f | LC_ALL=C sort | xargs cat; fi; } | sha)
  if check_output "release $name in $ns is made from this chart and these values" "make-cluster $digest" \
       helm history "$name" -n "$ns" --max 1 -o json; then
    return 0
  fi
  UPGRADED="$UPGRADED $name"
  run helm upgrade --install "$name" "$chart" -n "$ns" --create-namespace --description "make-cluster $digest" $wait --timeout 10m "$@"
}

step "NVIDIA device plugin $DEVICE_PLUGIN_VERSION"
if ! check_output "helm knows NVIDIA's chart repository" https://nvidia.github.io/k8s-device-plugin helm repo list -o json; then
  run helm repo add nvdp https://nvidia.github.io/k8s-device-plugin
  run helm repo update nvdp
fi
if ! check_output "node $NODE_NAME has the label $GPU_LABEL=true (the device plugin's node affinity)" true \
     kubectl get node "$NODE_NAME" -o "jsonpath={.metadata.labels.${GPU_LABEL//./\\.}}"; then
  run kubectl label node "$NODE_NAME" --overwrite "$GPU_LABEL=true"
fi
# In k3s the default runtime is runc: the plugin must run with the nvidia runtime to see the GPUs.
helm_release --wait nvdp nvidia-device-plugin nvdp/nvidia-device-plugin --version "$DEVICE_PLUGIN_VERSION" --set runtimeClassName=nvidia
wait_for "a node offers GPUs (nvidia.com/gpu)" "gpu=[1-9]" \
  kubectl get nodes -o 'jsonpath={range .items[*]}gpu={.status.allocatable.nvidia\.com/gpu}{"\n"}{end}' \
  || fail "no node offers nvidia.com/gpu after 3 minutes: see kubectl -n nvidia-device-plugin logs daemonset/nvdp-nvidia-device-plugin"

step "Argo Workflows $ARGO_VERSION (controller and server)"
if ! check "the argo namespace exists" kubectl get namespace argo; then
  run kubectl create namespace argo
fi
image='{.spec.template.spec.containers[0].image}'
if ! check_output "the controller runs $ARGO_VERSION" "workflow-controller:$ARGO_VERSION" \
       kubectl -n argo get deploy workflow-controller -o "jsonpath=$image" \
   || ! check_output "the server runs $ARGO_VERSION" "argocli:$ARGO_VERSION" \
       kubectl -n argo get deploy argo-server -o "jsonpath=$image"; then
  # The full CRDs are too large for a client-side apply (Argo v4 release notes): server-side.
  run kubectl apply --server-side --force-conflicts -n argo -f "$ARGO_MANIFEST"
fi
if ! check_output "Argo's init and wait containers meet Pod Security \"restricted\" (controller's executor settings)" \
     "$EXECUTOR" kubectl -n argo get configmap workflow-controller-configmap -o 'jsonpath={.data.executor}'; then
  run kubectl -n argo patch configmap workflow-controller-configmap --type merge \
    -p "{\"data\": {\"executor\": \"$EXECUTOR\"}}"
fi
for deploy in workflow-controller argo-server; do
  wait_for "$deploy is available" "available=1" \
    kubectl -n argo get deploy "$deploy" -o 'jsonpath=available={.status.availableReplicas}' \
    || fail "$deploy is not available after 3 minutes: see kubectl -n argo describe deploy/$deploy"
done

step "namespace $NAMESPACE (Pod Security \"restricted\")"
if ! check "namespace $NAMESPACE exists" kubectl get namespace "$NAMESPACE"; then
  run kubectl create namespace "$NAMESPACE"
fi
if ! check_output "namespace $NAMESPACE enforces Pod Security \"restricted\"" restricted \
     kubectl get namespace "$NAMESPACE" -o 'jsonpath={.metadata.labels.pod-security\.kubernetes\.io/enforce}'; then
  run kubectl label namespace "$NAMESPACE" --overwrite pod-security.kubernetes.io/enforce=restricted
fi

step "credentials (Secrets made here, never passed through helm)"
# secret NAME KEY=VALUE...: create it once, from a file only root can read; an existing one is kept as it is.
secret() {
  local name=$1; shift
  if check "Secret $name exists in $NAMESPACE" kubectl -n "$NAMESPACE" get secret "$name"; then return 0; fi
  (umask 077; printf '%s\n' "$@" >"$WORK/$name.env")
  run kubectl -n "$NAMESPACE" create secret generic "$name" --from-env-file="$WORK/$name.env"
}
password() { local p; p=$(head -c 33 /dev/urandom | base64); p=${p//[^A-Za-z0-9]/}; printf '%s' "$p"; }
secret quantum-slm-minio-root rootUser=qslm-root "rootPassword=$(password)"
secret quantum-slm-store accesskey=qslm-builds "secretkey=$(password)"

step "quantum-slm chart -> namespace $NAMESPACE"
# k3s makes the nvidia RuntimeClass; the chart makes it only where nothing else did (and keeps making it then).
runtime_class=true
if check_output "RuntimeClass nvidia exists, made by k3s (not by this chart)" "found by=." \
     kubectl get runtimeclass nvidia -o 'jsonpath=found by={.metadata.annotations.meta\.helm\.sh/release-name}.'; then
  runtime_class=false
fi
# No --wait: helm would wait for every PVC to be Bound (pkg/kube/ready.go), and k3s's local-path binds the model
# cache only when a build first mounts it (WaitForFirstConsumer; helm/helm#10196). The post-install bucket job is
# waited for all the same (helm runs hooks and watches them to completion, pkg/action/hooks.go), and it needs MinIO.
helm_release "" "$RELEASE" "$NAMESPACE" "$CHART" --set secrets.existing=true --set "gpus=$GPUS" \
  --set "runtimeClass.create=$runtime_class"
if [[ " $UPGRADED " == *" $RELEASE "* ]]; then
  run helm test "$RELEASE" -n "$NAMESPACE"  # the bucket's user can write and read the bucket, and nothing more
fi

if [ ${#FAILED[@]} -gt 0 ]; then
  printf '\ncluster: dry run: %d check(s) FAILED; a real run stops at the first:\n' "${#FAILED[@]}" >&2
  printf '  - %s\n' "${FAILED[@]}" >&2
  exit 1
fi
if ! check "Docker is installed (make images builds the stage images with it)" docker version --format '{{.Client.Version}}'; then
  say "  note: install Docker before make images: sudo apt-get install -y docker.io"
fi
step "done${DRY_RUN:+ (dry run: nothing was changed)}"
cat <<EOF
Next:
  sudo make images VERSION=local K3S_IMPORT=1   # one image set (qslm-*:local) for every spec, into k3s, pinned
  helm status $RELEASE -n $NAMESPACE      # how to reach the Argo Server and MinIO: ARGO_SERVER, ARGO_TOKEN, the store
  make submit VERSION=v2 WAIT=1
EOF
