"""A workstation that scripts/cluster.sh sets up, played by stub commands: each stub records its call and answers
from, or changes, one JSON state file (GPUs, driver, toolkit, k3s and its cluster, helm and its releases).

    install_stubs(bin_dir, state_file, log_file)     # then run the script with PATH=bin_dir:<a few real tools>

Only the commands the script may change the machine with, or read it through, are stubs; nothing here touches
the real machine.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

COMMANDS = ("id", "lspci", "nvidia-smi", "nvidia-ctk", "apt-get", "curl", "gpg", "install", "systemctl", "k3s",
            "helm", "fake-installer")
NOT_FOUND = 127


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
            "secrets": {}, "argo": None, "executor": "", "runtimeclass": None}


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
    return 0, "0"


def _lspci(state, args, entry):
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
    return 0, ""


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
            plugin = "nvidia-device-plugin/nvdp" in state["releases"] and state["k3s_nvidia"]
            return 0, f"gpu={len(state['gpus']) if plugin else ''}"
        return 0, f"workstation   Ready   control-plane,master   2m   {state['k3s']}"
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
        revision = state["releases"].get(key, {}).get("revision", 0) + 1
        state["releases"][key] = {"chart": args[3], "description": _option(args, "--description"),
                                  "revision": revision}
        if "runtimeClass.create=true" in args:
            state["runtimeclass"] = args[2]
        return 0, f'Release "{args[2]}" has been upgraded. Happy Helming!'
    if args[0] == "test":
        return 0, "Phase: Succeeded"
    return 1, f"fake helm: unexpected {args}"


COMMAND_HANDLERS = {"id": _id, "lspci": _lspci, "nvidia-smi": _nvidia_smi, "nvidia-ctk": _nvidia_ctk,
                    "apt-get": _apt_get, "curl": _curl, "gpg": _gpg, "install": _install, "systemctl": _systemctl,
                    "k3s": _k3s, "helm": _helm, "fake-installer": _fake_installer}
