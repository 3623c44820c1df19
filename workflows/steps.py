"""How one step of the pipeline runs on a real cluster: the helpers every WorkflowTemplate of this project builds
its steps with (workflows/pipeline.py, workflows/push.py), and what they share at the workflow level.

    from workflows.steps import stage
    stage("curate", "curate", ["python", "-m", "jobs.curate"], [...], outputs=[...], cache=True)

The conditions are those of k3s + Argo Workflows v4 under Pod Security "restricted"; workflows/emulator/lint.py checks
them in the rendered YAML and workflows/emulator/run.py reproduces them with Docker.
"""

from __future__ import annotations

import hashlib
import json

from hera.workflows import (
    Artifact, Container, EmptyDirVolume, Env, ExistingVolume, NoneArchiveStrategy, Resources, RetryStrategy,
    S3Artifact, SecretEnv, WorkflowTemplate,
)
from hera.workflows.models import (
    ArtifactRepositoryRef, Backoff, Capabilities, ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, PodGC,
    PodSecurityContext, SeccompProfile, SecurityContext, SemaphoreRef, Synchronization, Toleration, TTLStrategy,
)

from jobs.core.store import keys

APP_ROOT = "/app"  # where the images keep the code (REPO_ROOT of jobs/core/repo.py); data/ is mounted over APP_ROOT/data
DATA = f"{APP_ROOT}/data"
OUT = "/out"  # every step writes its outputs under this emptyDir: the image's root filesystem is read-only
RUN_ID = "{{workflow.name}}"  # intermediates of this run: runs/<run-id>/... (jobs/core/store/keys.py RUN_KEYS)
DATA_KEY = keys.run_key(RUN_ID, "data")
HOUR = 3600

# Names of objects the chart creates (charts/quantum-slm); the local runner provides the same ones.
ARTIFACT_REPOSITORIES = "artifact-repositories"  # ConfigMap; key below
ARTIFACT_REPOSITORY_KEY = "minio"
STORE_CONFIG = "quantum-slm-store"  # ConfigMap: QSLM_STORE, S3_ENDPOINT_URL, AWS_DEFAULT_REGION
STORE_SECRET = "quantum-slm-store"  # Secret: accesskey, secretkey (a MinIO user limited to the bucket)
MODELS_CLAIM = "quantum-slm-models"  # PVC: Hugging Face cache and the tiny-model cache, kept between runs
GPU_SEMAPHORE = ConfigMapKeySelector(name="quantum-slm-gpus", key="gpus")  # value: the cluster's GPU count
DIGEST_ANNOTATION = "quantum-slm/definition-sha256"

# The user of the stage images (USER in images/*.Dockerfile). Pods run as it, files on volumes belong to it.
UID = 10001
# Argo's executor (the init and wait containers) runs as this uid: `make cluster` sets it in the controller's
# executor securityContext (scripts/cluster.sh EXECUTOR). It is in the pod's fsGroup (UID), not its owner: every
# output a step writes must be readable by group or others, or the wait container silently uploads nothing.
EXECUTOR_UID = 8737
POD_SECURITY = PodSecurityContext(run_as_non_root=True, run_as_user=UID, run_as_group=UID, fs_group=UID,
                                  seccomp_profile=SeccompProfile(type="RuntimeDefault"))
# Pod Security "restricted", and a root filesystem nothing can write: a step writes only the volumes it declares.
CONTAINER_SECURITY = SecurityContext(allow_privilege_escalation=False, capabilities=Capabilities(drop=["ALL"]),
                                     read_only_root_filesystem=True)
# Argo's init container writes input artifacts as its own user (root, or the controller's executor user) with
# minio-go's modes, 0700 folders and 0600 files (argo-workflows#14792): readable by that user only. Every input
# therefore sets a mode, applied to the whole folder, that lets the step's own user read it.
READABLE = 0o755


def image(stage_image: str) -> str:
    # images/build_images.py names them qslm-<stage>:<tag>, optionally under a registry
    return "{{workflow.parameters.image-prefix}}qslm-" + stage_image + ":{{workflow.parameters.image-tag}}"


def folder_in(name: str, path: str, key: str | None = None) -> Artifact:
    """An input artifact: from an upstream task (`from` given by the DAG) or, with `key`, from the store."""
    if key:
        return S3Artifact(name=name, path=path, key=key, mode=READABLE, recurse_mode=True)
    return Artifact(name=name, path=path, mode=READABLE, recurse_mode=True)


def folder_out(name: str, path: str, key: str) -> S3Artifact:
    """A folder stored as plain files under key/ (archive none): browsable and previewable in the UI."""
    return S3Artifact(name=name, path=path, key=key + "/", archive=NoneArchiveStrategy())


def _data_input() -> S3Artifact:
    # data/ at the build's commit, over the image's own copy; a tar.gz with one top folder `data` unpacks to path.
    return folder_in("data", DATA, key=DATA_KEY)


def store_env() -> dict:
    """The store's bucket and credentials, for the steps that write builds/<tag>/ or read the registry."""
    return dict(env=[SecretEnv(name="AWS_ACCESS_KEY_ID", secret_name=STORE_SECRET, secret_key="accesskey"),
                     SecretEnv(name="AWS_SECRET_ACCESS_KEY", secret_name=STORE_SECRET, secret_key="secretkey")],
                env_from=[EnvFromSource(config_map_ref=ConfigMapEnvSource(name=STORE_CONFIG))])


def backoff() -> Backoff:
    return Backoff(duration="30s", factor="2", max_duration="10m")


# Host memory (not GPU memory) a GPU step asks the scheduler for. A pod that cannot be scheduled still holds its
# place in the GPU semaphore (Argo takes the lock before the pod exists), so a request a 16 GB workstation cannot
# meet after k3s, MinIO and Argo (about 2 GiB) would block every build behind it. The step may use more, up to its
# limit, when the machine has it.
GPU_STEP_MEMORY_REQUEST_GIB = 6


def _gpu(host_memory_gib: int) -> dict:
    """What a GPU step needs: the card, its runtime, the taint, shared memory, a place in the GPU semaphore, and
    host memory: GPU_STEP_MEMORY_REQUEST_GIB guaranteed, about host_memory_gib expected (the limit has headroom)."""
    return dict(
        resources=Resources(gpus=1, cpu_request="2", memory_request=f"{GPU_STEP_MEMORY_REQUEST_GIB}Gi",
                            memory_limit=f"{host_memory_gib + 8}Gi"),  # room for the 2 GiB /dev/shm too
        pod_spec_patch='{"runtimeClassName": "nvidia"}',  # Argo templates have no runtimeClassName field
        tolerations=[Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
        # DataLoader workers use /dev/shm; the container default (64 MiB) is too small. Counts against the limit.
        volumes=[EmptyDirVolume(name="dshm", mount_path="/dev/shm", medium="Memory", size_limit="2Gi")],
        # As many GPU steps at once as the cluster has cards (the ConfigMap's value), from any builds.
        synchronization=Synchronization(semaphores=[SemaphoreRef(config_map_key_ref=GPU_SEMAPHORE)]),
    )


def stage(name: str, stage_image: str, command: list[str], args: list[str], *, inputs: list = (),
          outputs: list = (), data: bool = True, cache: bool = False, host_memory_gib: int | None = None,
          retry: RetryStrategy | None = None, deadline_s: int = HOUR, **extra) -> Container:
    """One pipeline step, with what every step needs on a real cluster: the image pinned and never pulled again,
    the image's user under Pod Security "restricted", a read-only root with emptyDirs at /tmp and /out (outputs),
    data/ at the build's commit, and optionally the model cache (/cache) and a GPU (host_memory_gib: the step's
    expected peak host memory; see _gpu)."""
    volumes = [EmptyDirVolume(name="tmp", mount_path="/tmp")]
    written = [o.path if isinstance(o, Artifact) else o.value_from.path for o in outputs]
    if any(path.startswith(OUT + "/") for path in written):  # a non-root user cannot create /out itself
        volumes.append(EmptyDirVolume(name="out", mount_path=OUT))
    # Libraries cache under the home folder (~/.cache, Triton's kernels on a GPU); the image's is on the read-only root.
    env = [Env(name="HOME", value="/tmp")]
    if cache:  # the images default to offline; here the hub may be reached, so the first build fills the cache
        volumes.append(ExistingVolume(name="models", claim_name=MODELS_CLAIM, mount_path="/cache"))
        env.append(Env(name="HF_HUB_OFFLINE", value="0"))
    gpu = _gpu(host_memory_gib) if host_memory_gib else {}  # a GPU step: host_memory_gib is the host RAM it may use
    return Container(
        name=name,
        image=image(stage_image),
        image_pull_policy="IfNotPresent",  # images imported into k3s cannot be pulled (images/build_images.py pins them)
        command=command,
        args=args,
        inputs=([_data_input()] if data else []) + list(inputs),
        outputs=list(outputs),
        volumes=volumes + gpu.pop("volumes", []) + extra.pop("volumes", []),
        env=env + extra.pop("env", []),
        security_context=CONTAINER_SECURITY,
        retry_strategy=retry or RetryStrategy(limit="2", retry_policy="OnError", backoff=backoff()),
        active_deadline_seconds=deadline_s,
        **gpu,
        **extra,
    )


def common_spec() -> dict:
    """What every template of this project sets at the workflow level: identity, security, artifacts, housekeeping."""
    return dict(
        security_context=POD_SECURITY,
        artifact_repository_ref=ArtifactRepositoryRef(config_map=ARTIFACT_REPOSITORIES, key=ARTIFACT_REPOSITORY_KEY),
        archive_logs=True,  # logs survive pod GC, stored in the artifact repository
        pod_gc=PodGC(strategy="OnPodSuccess", delete_delay_duration="1h"),  # failed pods stay for debugging
        ttl_strategy=TTLStrategy(seconds_after_success=14 * 24 * HOUR, seconds_after_failure=30 * 24 * HOUR),
    )


def with_digest(wt: WorkflowTemplate) -> WorkflowTemplate:
    # A digest of the definition, so `make submit` can tell whether the cluster's copy differs from this code.
    definition = json.dumps(wt.to_dict()["spec"], sort_keys=True).encode()
    wt.annotations[DIGEST_ANNOTATION] = hashlib.sha256(definition).hexdigest()
    return wt


