"""Docker for the image tests and CI: start an engine, make local base images, build the stage images.

    python -m tests.docker_support --prepare      # engine up + local base images made (what .ci/run calls)

Public base images cannot be pulled on this machine, so the bases are made here: Debian bookworm by
debootstrap + `docker import`, with Python 3.11 in a venv at /opt/venv (like python:3.11-slim, `python` and
`pip` come first on PATH; Debian trixie's 3.13 the same way, for the torch-free tests on 3.13), and a "torch" base that adds the CPU torch wheel pip finds on this machine's disk
(the stand-in for pytorch/pytorch's CUDA image). Package downloads here pass through a proxy with its own
certificate, so the bases carry this machine's CA bundle and a pip.conf pointing at it. None of this goes into
images/*.Dockerfile: the stage images take the bases only as the BASE_IMAGE build argument.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON_BASE = "qslm-local/python:3.11-bookworm"
TORCH_BASE = "qslm-local/torch:2.13.0-cpu"
ROOTFS_IMAGE = "qslm-local/bookworm-rootfs:latest"
# Debian 13 brings Python 3.13: the torch-free tests run on it too (tests/images/test_python_versions.py)
PYTHON313_BASE = "qslm-local/python:3.13-trixie"
TRIXIE_ROOTFS_IMAGE = "qslm-local/trixie-rootfs:latest"
TORCH_WHEEL_GLOB = "torch-2.13.0+cpu-cp311-*.whl"
WHEEL_DIRS = [Path("/opt/wheels")]  # where pip on this machine finds the CPU torch wheel (pip config find-links)
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DOCKERD_LOG = Path(tempfile.gettempdir()) / "qslm-dockerd.log"

# The venv and its PATH, as a Dockerfile; the torch base adds one layer on top (see make_torch_base).
PYTHON_BASE_DOCKERFILE = """\
FROM {rootfs}
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY pip.conf /etc/pip.conf
RUN python3 -m venv /opt/venv && /opt/venv/bin/python -m pip --version
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
CMD ["python3"]
"""
PIP_CONF = """\
[global]
cert = /etc/ssl/certs/ca-certificates.crt
default-timeout = 180
disable-pip-version-check = 1
"""


def docker(*args: str, check: bool = True, capture: bool = False, timeout: float | None = None, **kw):
    """Run the docker CLI; with capture, return its stdout (str)."""
    if capture:
        kw["stdout"] = subprocess.PIPE
    proc = subprocess.run(["docker", *args], check=check, text=True, timeout=timeout, **kw)
    return proc.stdout if capture else proc


def engine_answers() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def apt_install(*packages: str) -> None:
    """Install Debian packages, waiting for another apt to finish instead of failing on its lock."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    subprocess.run(["apt-get", *lock, "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", *lock, "install", "-y", "-qq", *packages], check=True, env=env)


def ensure_docker_engine(timeout_s: float = 120) -> None:
    """Make `docker` answer: install Debian's docker.io if dockerd is missing, start dockerd in the background."""
    if engine_answers():
        return
    if not shutil.which("dockerd"):
        apt_install("docker.io")
    log = DOCKERD_LOG.open("ab")
    # start_new_session: dockerd outlives this process (pytest, or the --prepare step of .ci/run).
    subprocess.Popen(["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if engine_answers():
            return
        time.sleep(1)
    raise RuntimeError(f"dockerd did not answer within {timeout_s:.0f} s; see its log {DOCKERD_LOG}")


def image_exists(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def find_torch_wheel() -> Path:
    for folder in WHEEL_DIRS:
        found = sorted(folder.glob(TORCH_WHEEL_GLOB))
        if found:
            return found[-1]
    raise FileNotFoundError(f"no {TORCH_WHEEL_GLOB} in {', '.join(map(str, WHEEL_DIRS))}: the torch base needs "
                            f"the CPU torch wheel on disk; download it there (pip download --no-deps -d /opt/wheels "
                            f"torch==2.13.0 from PyTorch's CPU index)")


def make_rootfs_image(suite: str = "bookworm", ref: str = ROOTFS_IMAGE) -> None:
    """Debian `suite` (minbase + python3-venv + CA certificates) by debootstrap, imported as an image."""
    if not shutil.which("debootstrap"):
        apt_install("debootstrap")
    with tempfile.TemporaryDirectory(prefix="qslm-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                        suite, str(root), DEBIAN_MIRROR], check=True, stdout=subprocess.DEVNULL)
        # Like Debian's -slim images: no apt lists or caches, docs (but copyrights), man pages or locales (~50 MB).
        for junk in ["var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale",
                     "usr/share/info"]:
            subprocess.run(["find", str(root / junk), "-mindepth", "1", "-not", "-type", "d",
                            "-not", "-name", "copyright", "-delete"], check=True)
        (root / "etc/dpkg/dpkg.cfg.d/slim").write_text(
            "path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\npath-exclude /usr/share/locale/*\n")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "-", ref], stdin=tar.stdout, stdout=subprocess.DEVNULL,
                       check=True)
        if tar.wait() != 0:
            raise RuntimeError(f"tar of {root} failed")


def build_base(ref: str, dockerfile: str, files: dict[str, Path | str]) -> None:
    with tempfile.TemporaryDirectory(prefix="qslm-base-") as tmp:
        ctx = Path(tmp)
        (ctx / "Dockerfile").write_text(dockerfile)
        for name, content in files.items():
            target = ctx / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copy(content, target)
            else:
                target.write_text(content)
        docker("build", "--network", "host", "-t", ref, str(ctx))


def make_torch_base() -> None:
    """The python base + the CPU torch wheel, installed from a read-only mount and committed, so the 190 MB
    wheel itself never lands in a layer (a Dockerfile COPY would keep it there)."""
    wheel = find_torch_wheel()
    name = f"qslm-torch-base-{os.getpid()}"
    docker("create", "--name", name, "--network", "host", "--volume", f"{wheel.parent}:/wheels:ro", PYTHON_BASE,
           "python", "-m", "pip", "install", "--no-cache-dir", f"/wheels/{wheel.name}", stdout=subprocess.DEVNULL)
    try:
        docker("start", "--attach", name)
        docker("commit", "--change", 'CMD ["python3"]', name, TORCH_BASE, stdout=subprocess.DEVNULL)
    finally:
        docker("rm", "--force", name, stdout=subprocess.DEVNULL)
    docker("run", "--rm", TORCH_BASE, "python", "-c", "import torch; print('torch base:', torch.__version__)")


def ensure_local_bases() -> dict[str, str]:
    """Make the local base images when missing; returns {"python": ref, "torch": ref}."""
    ensure_docker_engine()
    if not image_exists(PYTHON_BASE):
        if not image_exists(ROOTFS_IMAGE):
            make_rootfs_image()
        build_base(PYTHON_BASE, PYTHON_BASE_DOCKERFILE.format(rootfs=ROOTFS_IMAGE),
                   {"ca-certificates.crt": CA_BUNDLE, "pip.conf": PIP_CONF})
    if not image_exists(TORCH_BASE):
        make_torch_base()
    return {"python": PYTHON_BASE, "torch": TORCH_BASE}


def ensure_python313_base() -> str:
    """Debian 13 (trixie) with its Python 3.13 in a venv, made like the 3.11 base; returns its ref."""
    ensure_docker_engine()
    if not image_exists(PYTHON313_BASE):
        if not image_exists(TRIXIE_ROOTFS_IMAGE):
            make_rootfs_image("trixie", TRIXIE_ROOTFS_IMAGE)
        build_base(PYTHON313_BASE, PYTHON_BASE_DOCKERFILE.format(rootfs=TRIXIE_ROOTFS_IMAGE),
                   {"ca-certificates.crt": CA_BUNDLE, "pip.conf": PIP_CONF})
    return PYTHON313_BASE


def build_images(tag: str, stages: tuple[str, ...] = ("curate", "train", "eval")) -> dict[str, str]:
    """Build the stage images on the local bases through images/build_images.py (the `make images` path);
    returns {stage: image ref}."""
    bases = ensure_local_bases()
    out = subprocess.run([sys.executable, str(REPO / "images" / "build_images.py"), "--tag", tag,
                          "--python-base", bases["python"], "--torch-base", bases["torch"],
                          "--json", *stages], check=True, text=True, stdout=subprocess.PIPE, cwd=REPO)
    return {image["stage"]: image["ref"] for image in json.loads(out.stdout.strip().splitlines()[-1])}


def image_config(ref: str) -> dict:
    """The image's Config block (User, Labels, Entrypoint, Env, ...)."""
    return json.loads(docker("image", "inspect", "--format", "{{json .Config}}", ref, capture=True))


def image_uid_gid(ref: str) -> tuple[int, int]:
    """The numeric user the image runs as; raises if it names none or a user by name (not checkable by k8s)."""
    user = image_config(ref).get("User") or ""
    uid, _, gid = user.partition(":")
    if not uid.isdigit():
        raise ValueError(f"{ref} runs as user {user!r}: expected a numeric uid[:gid]")
    return int(uid), int(gid or uid)


def run_container(ref: str, args: list[str], *, mounts: dict[str | Path, str] | None = None,
                  read_only: tuple[str, ...] = (), env: dict[str, str] | None = None, network: str = "none",
                  entrypoint: list[str] | None = None, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """docker run --rm one container as its image's own user: `mounts` maps host folders to container paths
    (those in `read_only` mounted :ro); `env` values are passed by name so they stay off the command line;
    network "none" unless told (stage jobs get files, not network). Returns the finished process (not checked)."""
    cmd = ["docker", "run", "--rm", "--network", network]
    for host, inside in (mounts or {}).items():
        cmd += ["--volume", f"{Path(host).resolve()}:{inside}" + (":ro" if inside in read_only else "")]
    for name in env or {}:
        cmd += ["--env", name]
    if entrypoint:
        cmd += ["--entrypoint", entrypoint[0]]
        args = [*entrypoint[1:], *args]
    return subprocess.run([*cmd, ref, *args], env={**os.environ, **(env or {})}, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", action="store_true", help="start the engine and make the local base images")
    args = parser.parse_args()
    if not args.prepare:
        parser.error("nothing to do: pass --prepare")
    started = time.monotonic()
    bases = ensure_local_bases()
    ensure_python313_base()
    print(f"docker engine up; local bases {bases['python']}, {bases['torch']}, {PYTHON313_BASE} "
          f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
