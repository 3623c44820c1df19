"""`make cluster` (scripts/cluster.sh) on a fake workstation: stub commands on PATH record every call and play
the machine (tests/scripts/fake_machine.py). A fresh run installs everything at the pinned versions, a rerun
changes nothing, a machine without a GPU or without its driver is refused with a clear message before anything
changes, DRY_RUN=1 prints the whole plan (failed checks marked) and changes nothing, and UNINSTALL=1 takes it all
back in reverse order. The stand-in models the device plugin's node affinity and helm's wait on PVCs, where the
first real k3s install stopped (issue 23)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.scripts import fake_machine
from workflows.steps import EXECUTOR_UID

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "cluster.sh"
CHART = REPO / "charts" / "quantum-slm"
# The real tools the script may use besides the stubs: none of them changes anything outside its temp folder.
REAL = ("bash", "sh", "env", "cat", "cut", "head", "base64", "sha256sum", "find", "sort", "xargs", "mktemp", "rm",
        "cp", "wc", "tr", "seq", "sleep", "dirname", "sed", "hostname")


def mutating(call: list[str]) -> bool:
    """Calls that change the machine (or download what would)."""
    name, args = call[0], call[1:]
    if name in ("apt-get", "curl", "gpg", "install", "systemctl", "fake-installer", "k3s-uninstall.sh"):
        return True
    if name == "k3s" and args[:1] == ["kubectl"]:
        verbs = [a for a in args if a in ("create", "apply", "patch", "label", "delete")]
        return bool(verbs)
    if name == "helm":
        return args[:2] in (["repo", "add"], ["repo", "update"], ["repo", "remove"]) or \
            args[:1] in (["upgrade"], ["test"], ["uninstall"])
    return False


class Machine:
    def __init__(self, tmp: Path, state: dict):
        self.tmp, self.state_file, self.log = tmp, tmp / "state.json", tmp / "calls.jsonl"
        self.state_file.write_text(json.dumps(state))
        bin_dir, real = tmp / "stubs", tmp / "real"
        fake_machine.install_stubs(bin_dir, self.state_file, self.log)
        real.mkdir()
        for tool in REAL:
            (real / tool).symlink_to(shutil.which(tool))
        self.path = f"{bin_dir}:{real}"

    def run(self, **env) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
        """Run the script; returns the process and the calls this run made."""
        self.log.write_text("")
        proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120,
                              env={"PATH": self.path, "HOME": str(self.tmp), "TMPDIR": str(self.tmp), **env})
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return proc, calls

    @property
    def state(self) -> dict:
        return json.loads(self.state_file.read_text())


def index(calls: list[list[str]], *words: str) -> int:
    """Position of the first call holding all these words (each one in an argument); fails when there is none."""
    for i, call in enumerate(calls):
        if all(any(w in a for a in call) for w in words):
            return i
    raise AssertionError(f"no call with {words}:\n" + "\n".join(" ".join(c) for c in calls))


@pytest.fixture
def machine(tmp_path) -> Machine:
    return Machine(tmp_path, fake_machine.fresh())


def test_fresh_workstation_gets_everything_at_the_pinned_versions(machine):
    proc, calls = machine.run()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    toolkit = index(calls, "apt-get", "install", "nvidia-container-toolkit=1.17.8-1")
    assert {"nvidia-container-toolkit-base=1.17.8-1", "libnvidia-container1=1.17.8-1"} <= set(calls[toolkit])
    k3s = index(calls, "fake-installer", "k3s", "v1.33.3+k3s1")
    assert toolkit < k3s  # k3s finds the NVIDIA runtime when it starts: the toolkit comes first
    plugin = index(calls, "helm", "upgrade", "nvdp/nvidia-device-plugin")
    assert {"--version", "0.17.1", "runtimeClassName=nvidia"} <= set(calls[plugin])
    argo = index(calls, "apply", "--server-side", "releases/download/v4.0.10/install.yaml")
    executor = index(calls, "patch", "workflow-controller-configmap")
    assert argo < executor and "allowPrivilegeEscalation: false" in machine.state["executor"]
    assert machine.state["labels"]["builds"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # credentials made here from files only root can read, never on a command line or through helm values
    assert machine.state["secrets"] == {"builds/quantum-slm-minio-root": ["rootPassword", "rootUser"],
                                        "builds/quantum-slm-store": ["accesskey", "secretkey"]}
    for call in calls:
        if "secret" in call and "create" in call:
            assert call[-1].endswith("mode=0o600") and not any("password=" in a.lower() for a in call)
    chart = index(calls, "helm", "upgrade", str(CHART))
    assert {"secrets.existing=true", "gpus=1", "runtimeClass.create=false", "builds"} <= set(calls[chart])
    assert "--wait" not in calls[chart] and "--wait" in calls[plugin]
    helm_test = calls.index(["helm", "test", "qslm", "-n", "builds"])  # the bucket's user works, and only in it
    assert max(index(calls, "create", "quantum-slm-store"), plugin, argo) < chart < helm_test
    assert "make submit" in proc.stdout


def test_a_rerun_changes_nothing(machine):
    first, _ = machine.run()
    assert first.returncode == 0, first.stderr
    before = machine.state
    proc, calls = machine.run()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert [c for c in calls if mutating(c)] == []
    assert machine.state == before
    assert "run:" not in proc.stdout and proc.stdout.count("  yes") >= 12


def test_dry_run_prints_every_command_and_check_and_changes_nothing(machine):
    proc, calls = machine.run(DRY_RUN="1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert [c for c in calls if mutating(c)] == []
    assert machine.state == fake_machine.fresh()
    out = proc.stdout
    for planned in ("would run: apt-get install -y -qq nvidia-container-toolkit=1.17.8-1",
                    "would run: env INSTALL_K3S_VERSION=v1.33.3+k3s1",
                    "would run: helm upgrade --install nvdp nvdp/nvidia-device-plugin",
                    "would run: kubectl apply --server-side --force-conflicts -n argo -f "
                    "https://github.com/argoproj/argo-workflows/releases/download/v4.0.10/install.yaml",
                    "would run: kubectl label namespace builds --overwrite "
                    "pod-security.kubernetes.io/enforce=restricted",
                    "would run: kubectl -n builds create secret generic quantum-slm-store",
                    f"would run: helm upgrade --install qslm {CHART} -n builds"):
        assert planned in out, out
    assert "check: k3s is installed at v1.33.3+k3s1  $ k3s --version" in out
    assert "would wait: a node offers GPUs (nvidia.com/gpu)" in out
    assert "dry run: nothing was changed" in out


def test_no_gpu_is_refused_before_anything_changes(tmp_path):
    machine = Machine(tmp_path, fake_machine.fresh(gpus=0))
    proc, calls = machine.run()
    assert proc.returncode == 1
    assert "no NVIDIA GPU here" in proc.stderr and "make build VERSION=smoke" in proc.stderr
    assert [c for c in calls if mutating(c)] == []


def test_missing_driver_says_how_to_install_it(tmp_path):
    machine = Machine(tmp_path, fake_machine.fresh(driver=None))
    proc, calls = machine.run()
    assert proc.returncode == 1
    assert "the NVIDIA driver does not answer" in proc.stderr and "a GPU: on the PCI bus" in proc.stderr
    assert "ubuntu-drivers install" in proc.stderr
    assert "reboot" in proc.stderr
    assert [c for c in calls if mutating(c)] == []


def test_old_driver_is_refused(tmp_path):
    proc, calls = Machine(tmp_path, fake_machine.fresh(driver="470.239.06")).run()
    assert proc.returncode == 1 and "driver 470 is older than 525" in proc.stderr
    assert [c for c in calls if mutating(c)] == []


def test_toolkit_installed_after_k3s_restarts_k3s_and_every_gpu_counts(tmp_path):
    state = fake_machine.fresh(gpus=2) | {"k3s": "v1.33.3+k3s1", "namespaces": ["default", "kube-system"],
                                          "runtimeclass": "k3s"}
    machine = Machine(tmp_path, state)
    proc, calls = machine.run()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert index(calls, "apt-get", "install", "nvidia-container-toolkit=1.17.8-1") < index(calls, "systemctl",
                                                                                            "restart", "k3s")
    assert not any(c[0] == "fake-installer" and c[1] == "k3s" for c in calls)
    assert "gpus=2" in calls[index(calls, "helm", "upgrade", str(CHART))]


def test_a_second_card_grows_the_gpu_semaphore_and_changes_nothing_else(machine):
    assert machine.run()[0].returncode == 0
    state = machine.state
    machine.state_file.write_text(json.dumps(state | {"gpus": state["gpus"] * 2}))
    proc, calls = machine.run()
    assert proc.returncode == 0, proc.stderr
    assert [c[:3] for c in calls if mutating(c)] == [["helm", "upgrade", "--install"], ["helm", "test", "qslm"]]
    assert "gpus=2" in calls[index(calls, "helm", "upgrade")]


def test_script_is_what_make_cluster_runs():
    make = subprocess.run(["make", "-n", "cluster", "DRY_RUN=1", "UNINSTALL=1"], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "MAKEFLAGS": ""})
    assert make.returncode == 0 and "DRY_RUN='1' UNINSTALL='1' DELETE_DATA='' scripts/cluster.sh" in make.stdout
    assert os.access(SCRIPT, os.X_OK)


def test_the_device_plugin_gets_a_node_on_plain_k3s(machine):
    """Blocker 2: chart 0.17.1's node affinity wants an NFD label or nvidia.com/gpu.present=true; k3s has neither,
    so the DaemonSet wants no pod and no node offers nvidia.com/gpu. The script labels this machine's node."""
    k3s_alone = fake_machine.fresh() | {"k3s": "v1.33.3+k3s1", "node_labels": {"kubernetes.io/hostname": "x"}}
    assert not fake_machine.plugin_schedules(k3s_alone)  # what the stand-in reproduces
    proc, calls = machine.run()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    label = index(calls, "label", "node", "nvidia.com/gpu.present=true")
    assert label < index(calls, "helm", "upgrade", "nvdp/nvidia-device-plugin")
    assert machine.state["node_labels"]["nvidia.com/gpu.present"] == "true"
    assert "gpu=1" in subprocess.run(["k3s", "kubectl", "get", "nodes", "-o", "jsonpath=allocatable"],
                                     capture_output=True, text=True, env={"PATH": machine.path}).stdout


def test_helm_does_not_wait_for_the_model_cache_to_bind(machine):
    """Blocker 3: `helm --wait` waits for every PVC to be Bound; k3s's local-path binds the model cache only when a
    build first mounts it. The stand-in refuses a --wait install of the chart; the script installs without it."""
    assert machine.run()[0].returncode == 0
    assert machine.state["pvcs"] == {"builds/quantum-slm-minio": "Bound", "builds/quantum-slm-models": "Pending"}
    waited = subprocess.run(["helm", "upgrade", "--install", "qslm", str(CHART), "-n", "builds", "--wait",
                             "--set", "secrets.existing=true"], capture_output=True, text=True,
                            env={"PATH": machine.path})
    assert waited.returncode == 1 and "quantum-slm-models" in waited.stderr


def test_dry_run_without_a_driver_prints_the_whole_plan_with_the_failure_marked(tmp_path):
    machine = Machine(tmp_path, fake_machine.fresh(driver=None))
    proc, calls = machine.run(DRY_RUN="1")
    assert proc.returncode == 1
    assert [c for c in calls if mutating(c)] == []
    assert "FAILED: the NVIDIA driver does not answer" in proc.stdout
    assert "would run: helm upgrade --install nvdp" in proc.stdout  # the plan goes on past the failed check
    assert f"would run: helm upgrade --install qslm {CHART} -n builds" in proc.stdout
    assert "1 check(s) FAILED" in proc.stderr and "ubuntu-drivers install" in proc.stderr


def test_pciutils_is_installed_after_the_package_lists_are_read(tmp_path):
    machine = Machine(tmp_path, fake_machine.fresh() | {"pciutils": False})
    proc, calls = machine.run()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert index(calls, "apt-get", "update") < index(calls, "apt-get", "install", "pciutils")


def test_uninstall_takes_it_back_in_reverse_order_and_keeps_the_data(machine):
    assert machine.run()[0].returncode == 0
    installed = machine.state
    proc, calls = machine.run(UNINSTALL="1", DRY_RUN="1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert [c for c in calls if mutating(c)] == [] and machine.state == installed
    assert "would run: helm uninstall qslm -n builds" in proc.stdout

    proc, calls = machine.run(UNINSTALL="1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    order = [index(calls, "helm", "uninstall", "qslm"), index(calls, "delete", "install.yaml"),
             index(calls, "helm", "uninstall", "nvdp"), index(calls, "label", "node", "nvidia.com/gpu.present-")]
    assert order == sorted(order)
    state = machine.state
    assert state["releases"] == {} and state["argo"] is None and "nvidia.com/gpu.present" not in state["node_labels"]
    # the store's data stays: its namespace, volumes and credentials, and k3s that holds them
    assert "builds" in state["namespaces"] and state["secrets"] and state["k3s"] and state["toolkit"]
    assert "DELETE_DATA=1" in proc.stdout
    again, calls = machine.run(UNINSTALL="1")  # nothing left to undo: no change
    assert again.returncode == 0 and [c for c in calls if mutating(c)] == []

    proc, calls = machine.run(UNINSTALL="1", DELETE_DATA="1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert index(calls, "delete", "namespace", "builds") < index(calls, "k3s-uninstall.sh")
    assert machine.state["k3s"] is None and machine.state["toolkit"] is None


def test_the_executor_user_is_the_one_the_local_runner_reads_outputs_as():
    executor = re.search(r"^EXECUTOR='(.*)'$", SCRIPT.read_text(), re.M).group(1)
    assert f"runAsUser: {EXECUTOR_UID}," in executor and "drop: [ALL]" in executor


def test_the_user_who_ran_sudo_gets_a_kubeconfig_and_an_existing_one_is_kept(tmp_path):
    """k3s writes its kubeconfig for root only; helm status and the chart's NOTES need one as the user."""
    home = tmp_path / "home" / "alice"
    machine = Machine(tmp_path, fake_machine.fresh() | {"users": {"alice": str(home)}})
    proc, calls = machine.run(SUDO_USER="alice")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    copy = calls[index(calls, "install", "/etc/rancher/k3s/k3s.yaml")]
    assert copy[-1] == str(home / ".kube" / "config") and {"-m", "0600", "-o", "alice", "-g", "1000"} <= set(copy)
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text("mine")
    proc, calls = machine.run(SUDO_USER="alice")
    assert proc.returncode == 0 and not any("/etc/rancher/k3s/k3s.yaml" in c for c in calls if c[0] == "install")
