"""A workstation that scripts/cluster.sh sets up, played by stub commands: each stub records its call and answers
from, or changes, one JSON state file (GPUs, driver, toolkit, k3s and its cluster, helm and its releases).

    install_stubs(bin_dir, state_file, log_file)     # then run the script with PATH=bin_dir:<a few real tools>

Only the commands the script may change the machine with, or read it through, are stubs; nothing here touches
the real machine. Two behaviours of the outside components are modelled because `make cluster` once stopped at
them on a real k3s (docs/cluster.md):
  - the device plugin's DaemonSet schedules a pod only on a node matching chart 0.17.1's default node affinity
    (deployments/helm/nvidia-device-plugin/values.yaml `affinity`: an NFD label or nvidia.com/gpu.present=true;
    NVIDIA/k8s-device-plugin#708); k3s runs no NFD, so without the label no node offers nvidia.com/gpu;
  - `helm upgrade --install --wait` waits for every PVC of the release to be Bound (helm v3.18
    pkg/kube/ready.go, IsReady/volumeReady), and k3s's local-path class binds only when a pod first mounts the
    claim (manifests/local-storage.yaml: volumeBindingMode WaitForFirstConsumer; helm/helm#10196): the chart is
    rendered with Helm's own engine (helm_python) and a claim no workload of the release mounts never binds.
"""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

COMMANDS = ("id", "lspci", "nvidia-smi", "nvidia-ctk", "apt-get", "curl", "gpg", "install", "systemctl", "k3s",
            "helm", "fake-installer", "k3s-uninstall.sh", "getent")
NOT_FOUND = 127
# Chart 0.17.1's default node affinity for the device plugin's DaemonSet: any one term schedules it.
DEVICE_PLUGIN_AFFINITY = ({"feature.node.kubernetes.io/pci-10de.present": "true"},
                          {"feature.node.kubernetes.io/cpu-model.vendor_id": "NVIDIA"},
                          {"nvidia.com/gpu.present": "true"})
WAIT_FOR_FIRST_CONSUMER = ("local-path",)  # k3s's storage classes that bind on first use


def install_stubs(bin_dir: Path, state: Path, log: Path) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        stub = bin_dir / name
        stub.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                        f"import fake_machine\nsys.exit(fake_machine.main({name!r}, sys.argv[1:], {str(state)!r}, "
                        f"{str(log)!r}))\n")
        stub.chmod(0o755)


def fresh(gpus: int = 1, driver: str | None = "550.120") -> dict:
    """A workstation with its GPUs and driver, and nothing else the script installs."""
    return {"gpus": ["NVIDIA RTX A2000 12GB"] * gpus, "driver": driver, "toolkit": None, "k3s": None,
            "k3s_nvidia": False, "helm": None, "repos": {}, "releases": {}, "namespaces": [], "labels": {},
            "secrets": {}, "argo": None, "executor": "", "runtimeclass": None,
            "node": socket.gethostname().lower(), "node_labels": {}, "pvcs": {}}


def _option(args: list[str], *names: str) -> str | None:
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def main(name: str, args: list[str], state_file: str, log_file: str) -> int:
    state = json.loads(Path(state_file).read_text())
    entry = [name, *args]
    code, out = COMMAND_HANDLERS[name](state, args, entry)
    with open(log_file, "a") as log:
        log.write(json.dumps(entry) + "\n")
    Path(state_file).write_text(json.dumps(state))
    if out:
        (sys.stdout if code == 0 else sys.stderr).write(out if out.endswith("\n") else out + "\n")
    return code


def _id(state, args, entry):
    return 0, "0" if len(args) < 2 else "1000"  # id -u: root (the script runs as root); id -g USER: their group


def _getent(state, args, entry):
    home = state.get("users", {}).get(args[-1])
    return (0, f"{args[-1]}:x:1000:1000::{home}:/bin/bash") if home else (2, "")


def _lspci(state, args, entry):
    if not state.get("pciutils", True):
        return NOT_FOUND, "lspci: command not found"
    if args == ["--version"]:
        return 0, "lspci version 3.9.0"
    if args == ["-d", "10de::0302"]:
        return 0, "\n".join(f"0{i + 1}:00.0 3D controller: NVIDIA Corporation GA106 [{g}] (rev a1)"
                            for i, g in enumerate(state["gpus"]))
    return 0, ""


def _nvidia_smi(state, args, entry):
    if not state["driver"] or not state["gpus"]:
        return NOT_FOUND, "nvidia-smi: command not found"
    return 0, "\n".join(f"{g}, {state['driver']}" for g in state["gpus"])


def _nvidia_ctk(state, args, entry):
    if not state["toolkit"]:
        return NOT_FOUND, "nvidia-ctk: command not found"
    return 0, f"NVIDIA Container Toolkit CLI version {state['toolkit']}\ncommit: 7a32d1b"


def _apt_get(state, args, entry):
    if "install" in args and "pciutils" in args:
        state["pciutils"] = bool(state.get("apt_lists"))  # a fresh machine's package lists are empty
        return (0, "") if state["pciutils"] else (100, "E: Unable to locate package pciutils")
    if args[:1] == ["update"] or "update" in args:
        state["apt_lists"] = True
    if "purge" in args and "nvidia-container-toolkit" in args:
        state["toolkit"] = None
    for a in args:
        if a.startswith("nvidia-container-toolkit="):
            state["toolkit"] = a.split("=", 1)[1].rsplit("-", 1)[0]
    return 0, ""


INSTALLERS = {"https://get.k3s.io": 'fake-installer k3s "$INSTALL_K3S_VERSION"\n',
              "get-helm-3": 'fake-installer helm "$DESIRED_VERSION"\n'}


def _curl(state, args, entry):
    url, dest = args[-1], _option(args, "-o")
    body = next((script for key, script in INSTALLERS.items() if key in url),
                "deb https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /\n")
    Path(dest).write_text("#!/bin/sh\n" + body if body.startswith("fake") else body)
    return 0, ""


def _gpg(state, args, entry):
    Path(_option(args, "-o")).write_bytes(b"\x99\x01\x0dkeyring")
    return 0, ""


def _install(state, args, entry):
    return 0, ""  # would copy into /etc or /usr: recorded only


def _fake_installer(state, args, entry):
    what, version = args
    state[what] = version
    if what == "k3s":  # k3s finds the NVIDIA runtime when it starts, and ships the nvidia RuntimeClass
        state["k3s_nvidia"] = bool(state["toolkit"])
        state["runtimeclass"] = "k3s"
        state["namespaces"] += ["default", "kube-system"]
        state["node_labels"] = {"kubernetes.io/hostname": state["node"]}
    return 0, ""


def _k3s_uninstall(state, args, entry):
    if not state["k3s"]:
        return NOT_FOUND, "k3s-uninstall.sh: command not found"
    state.update(k3s=None, k3s_nvidia=False, releases={}, namespaces=[], labels={}, secrets={}, argo=None,
                 executor="", runtimeclass=None, node_labels={}, pvcs={})
    return 0, ""


def plugin_schedules(state) -> bool:
    """Whether the device plugin's DaemonSet wants a pod on the node (its default node affinity)."""
    labels = state["node_labels"]
    return any(all(labels.get(k) == v for k, v in term.items()) for term in DEVICE_PLUGIN_AFFINITY)


def _systemctl(state, args, entry):
    if args == ["restart", "k3s"] and state["k3s"]:
        state["k3s_nvidia"] = bool(state["toolkit"])
    return 0, ""


def _k3s(state, args, entry):
    if not state["k3s"]:
        return NOT_FOUND, "k3s: command not found"
    if args == ["--version"]:
        return 0, f"k3s version {state['k3s']} (8d0255af)\ngo version go1.24.4"
    if args[:2] == ["crictl", "info"]:
        runtimes = {"runc": {}} | ({"nvidia": {}} if state["k3s_nvidia"] else {})
        return 0, json.dumps({"config": {"containerd": {"runtimes": runtimes}}})
    if args[0] == "kubectl":
        return _kubectl(state, args[1:], entry)
    return 1, f"k3s: unknown command {args}"


def _kubectl(state, args, entry):
    ns = _option(args, "-n", "--namespace") or "default"
    words = [a for i, a in enumerate(args) if not a.startswith("-") and args[i - 1] not in ("-n", "-o", "-p", "-f",
                                                                                          "--type")]
    jsonpath = _option(args, "-o") or ""
    verb, kind, obj = (words + [None, None, None])[:3]
    if verb == "get" and kind == "nodes":
        if "allocatable" in jsonpath:
            plugin = "nvidia-device-plugin/nvdp" in state["releases"] and state["k3s_nvidia"] and \
                plugin_schedules(state)
            return 0, f"gpu={len(state['gpus']) if plugin else ''}"
        return 0, f"workstation   Ready   control-plane,master   2m   {state['k3s']}"
    if kind == "node" and verb == "get":
        if obj != state["node"]:
            return 1, f'Error from server (NotFound): nodes "{obj}" not found'
        key = re.search(r"labels\.(.*)\}", jsonpath).group(1).replace("\\.", ".")
        return 0, state["node_labels"].get(key, "")
    if kind == "node" and verb == "label":
        if obj != state["node"]:
            return 1, f'Error from server (NotFound): nodes "{obj}" not found'
        change = words[3]
        if change.endswith("-"):
            state["node_labels"].pop(change[:-1], None)
        else:
            key, value = change.split("=")
            state["node_labels"][key] = value
        return 0, f"node/{obj} labeled"
    if verb == "delete" and kind == "namespace":
        if obj not in state["namespaces"]:
            return 1, f'Error from server (NotFound): namespaces "{obj}" not found'
        state["namespaces"].remove(obj)
        state["secrets"] = {k: v for k, v in state["secrets"].items() if not k.startswith(obj + "/")}
        state["pvcs"] = {k: v for k, v in state["pvcs"].items() if not k.startswith(obj + "/")}
        state["labels"].pop(obj, None)
        return 0, f'namespace "{obj}" deleted'
    if verb == "delete" and _option(args, "-f"):
        state["argo"], state["executor"] = None, ""
        return 0, "customresourcedefinition.apiextensions.k8s.io \"workflows.argoproj.io\" deleted"
    if kind == "namespace" and verb == "get":
        if obj not in state["namespaces"]:
            return 1, f'Error from server (NotFound): namespaces "{obj}" not found'
        return 0, state["labels"].get(obj, {}).get("pod-security.kubernetes.io/enforce", "") if jsonpath else obj
    if kind == "namespace" and verb == "create":
        state["namespaces"].append(obj)
        return 0, f"namespace/{obj} created"
    if kind == "namespace" and verb == "label":
        key, value = words[3].split("=")
        state["labels"].setdefault(obj, {})[key] = value
        return 0, f"namespace/{obj} labeled"
    if verb == "apply":
        state["argo"] = re.search(r"download/(v[^/]+)/install.yaml", _option(args, "-f")).group(1)
        return 0, "customresourcedefinition.apiextensions.k8s.io/workflows.argoproj.io serverside-applied"
    if kind == "deploy" and verb == "get":
        if not state["argo"]:
            return 1, f'Error from server (NotFound): deployments.apps "{obj}" not found'
        if "available" in jsonpath:
            return 0, "available=1"
        image = {"workflow-controller": "workflow-controller", "argo-server": "argocli"}[obj]
        return 0, f"quay.io/argoproj/{image}:{state['argo']}"
    if kind == "configmap":
        if not state["argo"]:
            return 1, 'Error from server (NotFound): configmaps "workflow-controller-configmap" not found'
        if verb == "patch":
            state["executor"] = json.loads(_option(args, "-p"))["data"]["executor"]
            return 0, "configmap/workflow-controller-configmap patched"
        return 0, state["executor"]
    if kind == "secret" and verb == "get":
        return (0, obj) if f"{ns}/{obj}" in state["secrets"] else (1, f'secrets "{obj}" not found')
    if kind == "secret" and verb == "create":
        env_file = Path(_option(args, "--from-env-file"))
        keys = sorted(line.split("=", 1)[0] for line in env_file.read_text().splitlines())
        entry.append(f"keys={','.join(keys)} mode={oct(env_file.stat().st_mode & 0o777)}")  # never the values
        state["secrets"][f"{ns}/{words[3]}"] = keys
        return 0, f"secret/{words[3]} created"
    if kind == "runtimeclass":
        if not state["runtimeclass"]:
            return 1, 'Error from server (NotFound): runtimeclasses.node.k8s.io "nvidia" not found'
        by = "" if state["runtimeclass"] == "k3s" else state["runtimeclass"]
        return 0, f"found by={by}."
    return 1, f"fake kubectl: unexpected {args}"


def _helm(state, args, entry):
    if not state["helm"]:
        return NOT_FOUND, "helm: command not found"
    ns = _option(args, "-n", "--namespace") or "default"
    if args[:2] == ["version", "--short"]:
        return 0, f"{state['helm']}+g1a2b3c4"
    if args[:2] == ["repo", "list"]:
        if not state["repos"]:
            return 1, "Error: no repositories to show"
        return 0, json.dumps([{"name": n, "url": u} for n, u in state["repos"].items()])
    if args[:2] == ["repo", "add"]:
        state["repos"][args[2]] = args[3]
        return 0, f'"{args[2]}" has been added to your repositories'
    if args[:2] == ["repo", "update"]:
        return 0, "Update Complete."
    if args[:2] == ["repo", "remove"]:
        state["repos"].pop(args[2], None)
        return 0, f'"{args[2]}" has been removed from your repositories'
    if args[0] == "status":
        if f"{ns}/{args[1]}" not in state["releases"]:
            return 1, "Error: release: not found"
        return 0, f"NAME: {args[1]}\nSTATUS: deployed"
    if args[0] == "uninstall":
        if not state["releases"].pop(f"{ns}/{args[1]}", None):
            return 1, f"Error: uninstall: Release not loaded: {args[1]}: release: not found"
        if state["runtimeclass"] == args[1]:
            state["runtimeclass"] = None
        return 0, f'release "{args[1]}" uninstalled'  # the claims stay: helm.sh/resource-policy keep
    if args[0] == "history":
        release = state["releases"].get(f"{ns}/{args[1]}")
        if not release:
            return 1, "Error: release: not found"
        return 0, json.dumps([{"revision": release["revision"], "status": "deployed", "chart": release["chart"],
                               "description": release["description"]}])
    if args[:2] == ["upgrade", "--install"]:
        if not state["k3s"]:
            return 1, "Error: Kubernetes cluster unreachable"
        key = f"{ns}/{args[2]}"
        if Path(args[3]).is_dir():
            state["pvcs"] |= {f"{ns}/{name}": phase for name, phase in _claims(args, ns).items()}
            pending = sorted(k for k, phase in state["pvcs"].items() if k.startswith(ns + "/") and phase != "Bound")
            if "--wait" in args and pending:  # helm's ReadyChecker: a PVC is ready when Bound, and it never is
                state["releases"][key] = {"chart": args[3], "description": "failed", "revision": 0}
                return 1, (f"Error: UPGRADE FAILED: context deadline exceeded (PersistentVolumeClaim is not bound: "
                           f"{', '.join(pending)})")
        revision = state["releases"].get(key, {}).get("revision", 0) + 1
        state["releases"][key] = {"chart": args[3], "description": _option(args, "--description"),
                                  "revision": revision}
        if "runtimeClass.create=true" in args:
            state["runtimeclass"] = args[2]
        return 0, f'Release "{args[2]}" has been upgraded. Happy Helming!'
    if args[0] == "test":
        return 0, "Phase: Succeeded"
    return 1, f"fake helm: unexpected {args}"


def _set_values(args: list[str]) -> dict:
    """--set a.b=c pairs as nested values, as helm parses simple ones."""
    values: dict = {}
    for i, a in enumerate(args):
        if a == "--set":
            path, _, raw = args[i + 1].partition("=")
            value = {"true": True, "false": False}.get(raw, int(raw) if raw.isdigit() else raw)
            *parents, last = path.split(".")
            node = values
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
    return values


def _claims(args: list[str], ns: str) -> dict[str, str]:
    """{claim: phase} of the chart's PVCs once installed: Bound when a workload of the release (not a hook) mounts
    it or its class binds at once; Pending on a WaitForFirstConsumer class that nothing uses yet."""
    import yaml
    from helm_python.chart import Chart

    manifests = Chart.load(Path(args[3])).render(_set_values(args), name=args[2], namespace=ns)
    objects = [d for path, text in manifests.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]
    workloads = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet", "Pod")
                 and "helm.sh/hook" not in (o["metadata"].get("annotations") or {})]
    mounted = {v["persistentVolumeClaim"]["claimName"] for o in workloads
               for v in (o["spec"].get("template", {}).get("spec", o["spec"]).get("volumes") or [])
               if "persistentVolumeClaim" in v}
    return {o["metadata"]["name"]: "Bound" if o["metadata"]["name"] in mounted
            or o["spec"].get("storageClassName") not in WAIT_FOR_FIRST_CONSUMER else "Pending"
            for o in objects if o["kind"] == "PersistentVolumeClaim"}


COMMAND_HANDLERS = {"id": _id, "lspci": _lspci, "nvidia-smi": _nvidia_smi, "nvidia-ctk": _nvidia_ctk,
                    "apt-get": _apt_get, "curl": _curl, "gpg": _gpg, "install": _install, "systemctl": _systemctl,
                    "k3s": _k3s, "helm": _helm, "fake-installer": _fake_installer,
                    "k3s-uninstall.sh": _k3s_uninstall, "getent": _getent}
