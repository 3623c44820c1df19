"""One workflow step run as a Kubernetes pod would run it, with Docker: what workflows/emulator/run.py runs per task.

    pod = Pod(template, name="run-1-curate", work=Path(".work/run-1/curate"), ...)
    code, outputs = pod.run(store, inputs)        # inputs: {artifact name: its source artifact}

The conditions of a real cluster (Argo v4's executor and the kubelet), so that a step that works here works there:
  - the container runs as the pod securityContext's user (runAsUser/runAsGroup; the image's USER where unset), with
    fsGroup and supplementalGroups added, refused under runAsNonRoot when that user is root, with the capabilities
    and no_new_privileges the container's securityContext declares;
  - its root filesystem is read-only: only the volumes the template declares can be written. emptyDirs are fresh
    folders, 0777 and owned by the fsGroup with setgid as the kubelet makes them; PVCs are folders that outlive the
    step (volumeClaimTemplates: per run; existing claims: across runs), 0777 like k3s's local-path provisioner;
  - input artifacts are placed by a separate step running as root, as Argo's init container: S3 objects with
    minio-go's modes (0700 folders, 0600 files), tarballs unpacked with their own modes, raw data as a 0644 file,
    then the artifact's `mode` (recursively with recurseMode) where the template sets one;
  - outputs are read back after the container exits, from the declared paths only, by a separate container
    running as Argo's executor (its wait container): the executor's uid (steps.EXECUTOR_UID, what `make cluster`
    sets) with the pod's runAsGroup, fsGroup and supplementalGroups, every capability dropped, the step's volumes
    mounted read-only. Where argoexec skips a folder it cannot list and uploads nothing without failing
    (workflow/artifacts/s3/s3.go generatePutTasks: `_ = filepath.Walk(...)`, v4.0.10), this runner does the
    opposite: an output the executor cannot read fails the step, naming the path.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from jobs.core.errors import QslmError
from jobs.core.store.backends import download_folder, upload_folder
from workflows.steps import EXECUTOR_UID

PROGRESS_DIR = "/var/run/argo"  # Argo mounts this volume and sets ARGO_PROGRESS_FILE=/var/run/argo/progress
INPUTS = "/argo/inputs/artifacts"  # where the init step sees the input-artifacts volume

# Run as root in the step's image (every image has Python): what Argo's init container leaves behind.
PLACE = """
import json, os, sys
for item in json.loads(sys.argv[1]):
    path, gid = item["path"], item.get("fsgroup")
    if item["kind"] == "claim":  # k3s's local-path provisioner makes a claim's folder 0777; its content stays
        os.chmod(path, 0o777)
        continue
    for top, dirs, files in os.walk(path):
        for p in [top] + [os.path.join(top, f) for f in files]:
            if item["kind"] == "volume":
                os.chmod(p, 0o777)
                if gid is not None:
                    os.chown(p, 0, gid)
                    os.chmod(p, 0o2777)
                continue
            os.chown(p, 0, 0)
            if item["kind"] == "minio":
                os.chmod(p, 0o700 if os.path.isdir(p) else 0o600)
    if os.path.isfile(path):
        os.chown(path, 0, 0)
        if item["kind"] == "minio":
            os.chmod(path, 0o600)
    mode = item.get("mode")
    if mode is not None:
        targets = [path] if not item.get("recurse") else [path] + [os.path.join(t, n) for t, ds, fs in os.walk(path)
                                                                   for n in ds + fs]
        for p in targets:
            os.chmod(p, mode)
"""


# Run in the step's image as the executor's user: a tar of every declared output on stdout, then one JSON line on
# stderr: which outputs exist and every path that could not be read (listed or opened).
READ_BACK = """
import json, os, sys, tarfile
paths, found, unreadable = json.loads(sys.argv[1]), [], []
def refuse(err):
    unreadable.append(f"{err.filename}: {err.strerror}")
with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tf:
    def add(path, arc):
        try:
            info = tf.gettarinfo(path, arcname=arc)
            if info.isreg():
                with open(path, "rb") as f:
                    tf.addfile(info, f)
                return
            names = sorted(os.listdir(path)) if info.isdir() else []
        except OSError as err:
            return refuse(err)
        tf.addfile(info)
        for name in names:
            add(os.path.join(path, name), arc + "/" + name)
    for i, path in enumerate(paths):
        if os.path.lexists(path):
            found.append(i)
            add(path, str(i))
print(json.dumps({"found": found, "unreadable": unreadable}), file=sys.stderr)
"""


class PodError(QslmError):
    pass


class UnreadableOutput(PodError):
    """An output the executor cannot read: the step fails (argoexec would have Succeeded with nothing uploaded)."""


def docker(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], **kw)


def fetch_artifact(store, art: dict, dest: Path) -> str | None:
    """Fetch a key-only S3 or raw input artifact to dest as Argo's init container does; returns how its modes come
    about ("minio", "archive", "raw"), or None when the key is absent."""
    if "raw" in art:
        dest.write_text(art["raw"]["data"])
        return "raw"
    key = art["s3"]["key"]
    if key.endswith("/"):
        return "minio" if download_folder(store, key, dest) else None
    if not store.exists(key):
        return None
    blob = dest.with_name(dest.name + ".tmp")
    store.get_file(key, blob)
    if "none" in art.get("archive", {}) or not tarfile.is_tarfile(blob):
        blob.rename(dest)
        return "minio"
    unpack = dest.with_name(dest.name + ".tmpdir")  # Argo's rule: one top entry becomes the artifact's path
    with tarfile.open(blob) as tf:
        tf.extractall(unpack, filter="data")
    entries = list(unpack.iterdir())
    (entries[0] if len(entries) == 1 else unpack).rename(dest)
    shutil.rmtree(unpack, ignore_errors=True)
    blob.unlink()
    return "archive"


def save_artifact(store, art: dict, src: Path) -> None:
    """Store an output artifact under its key as Argo does: files as-is with archive none, else one tar.gz."""
    key = art["s3"]["key"]
    if "none" in art.get("archive", {}):
        if src.is_dir():
            upload_folder(store, src, key)
        else:
            store.put_file(key, src)
        return
    buf = io.BytesIO()  # Argo's default: tar.gz with the path's base name as the one top entry
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(src, arcname=src.name)
    store.put_bytes(key, buf.getvalue())


class Pod:
    def __init__(self, template: dict, *, name: str, work: Path, pod_security: dict, claims: dict[str, Path],
                 secrets: dict, configmaps: dict):
        self.t, self.c, self.name, self.work = template, template["container"], name, work
        self.psc = template.get("securityContext") or pod_security or {}
        self.claims, self.secrets, self.configmaps = claims, secrets, configmaps

    # ------------------------------------------------------------------ who and what may be written
    def user(self) -> tuple[list[str], int | None]:
        """docker options for the user and privileges, and the fsGroup."""
        sc = self.c.get("securityContext") or {}
        uid, gid = sc.get("runAsUser", self.psc.get("runAsUser")), sc.get("runAsGroup", self.psc.get("runAsGroup"))
        if uid is None:  # the image's USER, as the kubelet would run it
            uid, _, image_gid = self._image_user().partition(":")
            uid, gid = uid or "0", gid if gid is not None else (image_gid or None)
        if sc.get("runAsNonRoot", self.psc.get("runAsNonRoot")) and str(uid) in ("0", "root"):
            raise PodError(f"{self.name}: runAsNonRoot, but the container would run as root (set runAsUser)")
        opts = ["--user", f"{uid}:{gid}" if gid is not None else str(uid)]
        fs_group = self.psc.get("fsGroup")
        for group in ([fs_group] if fs_group is not None else []) + self.psc.get("supplementalGroups", []):
            opts += ["--group-add", str(group)]
        if "ALL" in (sc.get("capabilities") or {}).get("drop", []):
            opts += ["--cap-drop", "ALL"]
        if sc.get("allowPrivilegeEscalation") is False:
            opts += ["--security-opt", "no-new-privileges"]
        if sc.get("readOnlyRootFilesystem"):
            opts.append("--read-only")
        return opts, fs_group

    def _image_user(self) -> str:
        out = docker("image", "inspect", "--format", "{{.Config.User}}", self.c["image"], capture_output=True,
                     text=True)
        if out.returncode:
            raise PodError(f"{self.name}: image {self.c['image']} is not on this Docker engine ({out.stderr.strip()})")
        return out.stdout.strip()

    def volumes(self) -> tuple[dict[str, Path], list[str], dict[str, str]]:
        """{mount path: host folder}, docker options (memory-backed mounts), and {mount path: "volume" for an
        emptyDir or "claim" for a PVC}: what the init step prepares."""
        declared = {v["name"]: v for v in self.t.get("volumes", [])}
        mounts, options, kinds = {PROGRESS_DIR: self.work / "argo"}, [], {PROGRESS_DIR: "volume"}
        for vm in self.c.get("volumeMounts", []):
            v, path = declared.get(vm["name"]), vm["mountPath"]
            if v is None and vm["name"] in self.claims:  # a volumeClaimTemplate of this run
                mounts[path], kinds[path] = self.claims[vm["name"]], "claim"
            elif v is None:
                raise PodError(f"{self.name}: volumeMount {vm['name']} names no volume of the template")
            elif v.get("emptyDir", {}).get("medium") == "Memory":
                size = v["emptyDir"].get("sizeLimit", "64Mi").replace("Gi", "g").replace("Mi", "m")
                options += ["--shm-size", size] if path == "/dev/shm" else ["--tmpfs", f"{path}:size={size},mode=1777"]
            elif "emptyDir" in v:
                mounts[path], kinds[path] = self.work / "volumes" / vm["name"], "volume"
            elif "persistentVolumeClaim" in v:
                mounts[path], kinds[path] = self.claims[v["persistentVolumeClaim"]["claimName"]], "claim"
            else:
                raise PodError(f"{self.name}: volume {vm['name']} has a type the local runner does not emulate")
        return mounts, options, kinds

    def environment(self) -> dict[str, str]:
        env = {"ARGO_PROGRESS_FILE": PROGRESS_DIR + "/progress"}
        for src in self.c.get("envFrom", []):
            env.update(self.configmaps[src["configMapRef"]["name"]])
        for e in self.c.get("env", []):
            ref = e.get("valueFrom", {})
            if "secretKeyRef" in ref:
                env[e["name"]] = self.secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
            elif "configMapKeyRef" in ref:
                env[e["name"]] = self.configmaps[ref["configMapKeyRef"]["name"]][ref["configMapKeyRef"]["key"]]
            else:
                env[e["name"]] = e["value"]
        return env

    # ------------------------------------------------------------------ init, main, outputs
    def place(self, placed: list[dict]) -> None:
        """The init step: as root, give inputs the owner and modes Argo's init container leaves, and volumes theirs."""
        mounts = []
        for i, item in enumerate(placed):
            mounts += ["-v", f"{Path(item.pop('host')).resolve()}:{INPUTS}/{i}"]
            item["path"] = f"{INPUTS}/{i}"
        proc = docker("run", "--rm", "--network", "none", "--user", "0:0", *mounts, "--entrypoint", "python",
                      self.c["image"], "-c", PLACE, json.dumps(placed), capture_output=True, text=True)
        if proc.returncode:
            raise PodError(f"{self.name}: placing the inputs failed: {proc.stderr.strip()[-2000:]}")

    def run(self, store, sources: dict[str, dict], fetch_git) -> tuple[int, dict[str, Path], dict[str, str]]:
        """Place the inputs, run the container, read the declared outputs back. Returns (exit code, {artifact name:
        host path}, {parameter name: value}); sources: {input artifact name: the artifact it comes from}."""
        shutil.rmtree(self.work, ignore_errors=True)
        (self.work / "inputs").mkdir(parents=True)
        user, fs_group = self.user()
        mounts, options, kinds = self.volumes()
        placed = []
        for path, kind in kinds.items():
            mounts[path].mkdir(parents=True, exist_ok=True)
            placed.append({"host": mounts[path], "kind": kind, "fsgroup": fs_group})
        for art in self.t.get("inputs", {}).get("artifacts", []):
            source, host = sources.get(art["name"]), self.work / "inputs" / art["name"]
            kind = fetch_git(source["git"], host) if source and "git" in source else \
                fetch_artifact(store, source, host) if source else None
            if kind is None:
                if art.get("optional"):
                    continue
                raise PodError(f"{self.name}: input artifact {art['name']} not found "
                               f"({(source or {}).get('s3', {}).get('key', 'no source')})")
            mounts[art["path"]] = host
            placed.append({"host": host, "kind": kind, "mode": art.get("mode"), "recurse": art.get("recurseMode")})
        self.place(placed)
        cmd = ["create", "--name", self.name, "--network", "host", *user, *options]
        for path, host in sorted(mounts.items()):
            cmd += ["-v", f"{host.resolve()}:{path}"]
        env = self.environment()
        for key in env:
            cmd += ["-e", key]  # values through the environment, never on a command line
        cmd += ["--entrypoint", self.c["command"][0], self.c["image"], *self.c["command"][1:], *self.c.get("args", [])]
        docker("rm", "--force", self.name, capture_output=True)
        created = docker(*cmd, capture_output=True, text=True, env={**os.environ, **env})
        if created.returncode:
            raise PodError(f"{self.name}: docker create failed: {created.stderr.strip()}")
        try:
            code = docker("start", "--attach", self.name).returncode
        finally:
            docker("rm", "--force", self.name, capture_output=True)
        try:
            return (code, *self._outputs(mounts))
        except UnreadableOutput as exc:
            print(f"    {exc}", flush=True)
            return 1, {}, {}

    def executor(self) -> list[str]:
        """docker options for Argo's wait container: the executor's uid, the pod's groups, no capabilities."""
        gid = self.psc.get("runAsGroup", EXECUTOR_UID)
        groups = ([self.psc["fsGroup"]] if "fsGroup" in self.psc else []) + self.psc.get("supplementalGroups", [])
        opts = ["--user", f"{EXECUTOR_UID}:{gid}", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--read-only", "--network", "none"]
        for group in groups:
            opts += ["--group-add", str(group)]
        return opts

    def read_back(self, paths: list[str], mounts: dict[str, Path], dest: Path) -> dict[int, Path]:
        """Read the declared output paths as the executor does; returns {index in paths: host copy} for those that
        exist. An output the executor cannot read raises PodError, where argoexec would upload nothing silently."""
        # A path on no volume cannot exist: the step's root filesystem is read-only (workflows/emulator/lint.py says so).
        volumes = []
        for path, host in sorted(mounts.items()):
            volumes += ["-v", f"{host.resolve()}:{path}:ro"]
        proc = docker("run", "--rm", *self.executor(), *volumes, "--entrypoint", "python", self.c["image"], "-c",
                      READ_BACK, json.dumps(paths), capture_output=True)
        try:
            status = json.loads(proc.stderr.decode(errors="replace").strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise PodError(f"{self.name}: reading the outputs back failed: {proc.stderr.decode(errors='replace')[-2000:]}"
                           ) from None
        if status["unreadable"]:
            raise UnreadableOutput(f"{self.name}: Argo's executor (uid {EXECUTOR_UID}, the pod's groups, no capabilities) "
                           f"cannot read these outputs, and on a cluster would upload nothing without failing: "
                           f"{'; '.join(status['unreadable'][:5])}. Make them readable by group and others "
                           f"(folders 0755, files 0644)")
        unpack = dest / ".read-back"
        with tarfile.open(fileobj=io.BytesIO(proc.stdout), mode="r|") as tf:
            tf.extractall(unpack, filter="fully_trusted")
        return {i: unpack / str(i) for i in status["found"]}

    def _outputs(self, mounts: dict[str, Path]) -> tuple[dict[str, Path], dict[str, str]]:
        out = self.work / "outputs"
        out.mkdir()
        arts = self.t.get("outputs", {}).get("artifacts", [])
        params = self.t.get("outputs", {}).get("parameters", [])
        paths = [a["path"] for a in arts] + [p["valueFrom"]["path"] for p in params]
        found = self.read_back(paths, mounts, out) if paths else {}
        artifacts, parameters = {}, {}
        for i, art in enumerate(arts):
            if i in found:
                artifacts[art["name"]] = found[i].rename(out / art["name"])
        for j, p in enumerate(params, start=len(arts)):
            if j in found:
                parameters[p["name"]] = found[j].read_text()
            elif "default" in p["valueFrom"]:
                parameters[p["name"]] = p["valueFrom"]["default"]
        return artifacts, parameters
