"""Build the stage images (curate, train, eval) tagged with a build tag, print their sizes, and optionally push
them to a registry or load them into k3s's containerd.

    python images/build_images.py --tag v2                               # qslm-curate:v2, qslm-train:v2, qslm-eval:v2
    python images/build_images.py --tag v2 --registry registry.lan:5000 --push
    python images/build_images.py --tag v2 --k3s-import                  # into k3s, pinned (as root: sudo)
    python images/build_images.py --tag v2 --torch-base my/torch:cpu train

Each image's base is its Dockerfile's BASE_IMAGE default (python:3.11-slim-bookworm; pytorch/pytorch's CUDA
runtime image) unless --python-base / --torch-base name another (the tests pass locally made bases).
The git commit and the build tag go into each image's labels.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("curate", "train", "eval")
TORCH_STAGES = {"train", "eval"}  # built on the torch base; curate on the plain Python base
# Docker's tag grammar: up to 128 word characters, '.' or '-', not starting with '.' or '-'.
TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
K3S_IMAGES_DIR = Path("/var/lib/rancher/k3s/agent/images")  # k3s imports and pins the archives it finds here
PIN_LABEL = "io.cri-containerd.pinned"  # containerd's CRI reports such images as pinned; the kubelet keeps them


def image_ref(stage: str, tag: str, registry: str = "") -> str:
    """The image name the workflow runs: qslm-<stage>:<tag>, under the registry when one is given."""
    name = f"qslm-{stage}:{tag}"
    return f"{registry.rstrip('/')}/{name}" if registry else name


def git_commit() -> str:
    """HEAD's commit, with '-dirty' when the files that go into the images differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, check=True, text=True,
                                capture_output=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    # What goes into an image: uncommitted or untracked changes there make the label say so.
    status = subprocess.run(["git", "status", "--porcelain", "--", "jobs", "data", "pyproject.toml", "images",
                             "workflows"],
                            cwd=REPO, text=True, capture_output=True).stdout
    return commit + ("-dirty" if status.strip() else "")


def build(stage: str, ref: str, tag: str, commit: str, base: str | None) -> float:
    """docker build one stage image; returns the seconds it took."""
    args = ["docker", "build", "--file", str(REPO / "images" / f"{stage}.Dockerfile"), "--tag", ref,
            "--build-arg", f"GIT_COMMIT={commit}", "--build-arg", f"BUILD_TAG={tag}"]
    if base:
        args += ["--build-arg", f"BASE_IMAGE={base}"]
    started = time.monotonic()
    # Build output goes to stderr so that --json keeps stdout for the machine-readable result.
    subprocess.run([*args, str(REPO)], check=True, stdout=sys.stderr)
    return time.monotonic() - started


def image_size_mb(ref: str) -> float:
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", ref], check=True, text=True,
                         capture_output=True).stdout
    return int(out.strip()) / 1e6


def containerd_ref(ref: str) -> str:
    """The name containerd gives an image Docker calls `ref` (qslm-curate:v2 -> docker.io/library/qslm-curate:v2)."""
    first, _, rest = ref.partition("/")
    if not rest:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}"


def k3s_import(refs: list[str], tag: str, images_dir: Path = K3S_IMAGES_DIR) -> Path:
    """Load images into k3s's containerd (the k8s.io namespace its kubelet uses), pinned: pods with imagePullPolicy
    IfNotPresent find them without a registry, and the kubelet's image garbage collection never deletes them
    (they could not be pulled back). The archive stays in k3s's agent images folder, whose images k3s imports and
    pins again at every start; `k3s ctr images import` and the pin label make them usable at once. Returns the
    archive (delete it to unpin that tag at the next k3s start)."""
    images_dir.mkdir(parents=True, exist_ok=True)
    archive = images_dir / f"qslm-{tag}.tar"
    partial = images_dir / f".qslm-{tag}.tar.partial"  # k3s imports *.tar only: never a half-written archive
    subprocess.run(["docker", "save", "--output", str(partial), *refs], check=True)
    partial.replace(archive)
    subprocess.run(["k3s", "ctr", "images", "import", str(archive)], check=True)
    for ref in refs:
        subprocess.run(["k3s", "ctr", "images", "label", containerd_ref(ref), f"{PIN_LABEL}=pinned"], check=True,
                       stdout=subprocess.DEVNULL)
    return archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("stages", nargs="*", metavar="STAGE",
                        help=f"which images to build (default: all of {', '.join(STAGES)})")
    parser.add_argument("--tag", required=True, help="build tag, e.g. v2 (the image tag)")
    parser.add_argument("--registry", default="", help="registry host[:port][/path] to name (and --push) the images")
    parser.add_argument("--push", action="store_true", help="docker push each image (needs --registry)")
    parser.add_argument("--k3s-import", action="store_true", help="load the images into k3s's containerd, pinned")
    parser.add_argument("--k3s-images-dir", type=Path, default=K3S_IMAGES_DIR,
                        help=f"k3s's agent images folder (default {K3S_IMAGES_DIR})")
    parser.add_argument("--python-base", help="base image for curate instead of its Dockerfile default")
    parser.add_argument("--torch-base", help="base image for train and eval instead of their Dockerfile default")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line on stdout")
    args = parser.parse_args()
    if not TAG_PATTERN.match(args.tag):
        parser.error(f"--tag {args.tag!r} is not a valid image tag: use letters, digits, '_', '.', '-' (e.g. v2)")
    if args.push and not args.registry:
        parser.error("--push needs --registry (e.g. --registry registry.lan:5000)")
    unknown = [s for s in args.stages if s not in STAGES]
    if unknown:
        parser.error(f"unknown stage {', '.join(unknown)}: choose from {', '.join(STAGES)}")
    stages = [s for s in STAGES if s in (args.stages or STAGES)]

    commit = git_commit()
    results = []
    for stage in stages:
        ref = image_ref(stage, args.tag, args.registry)
        base = args.torch_base if stage in TORCH_STAGES else args.python_base
        seconds = build(stage, ref, args.tag, commit, base)
        results.append({"stage": stage, "ref": ref, "size_mb": round(image_size_mb(ref), 1),
                        "build_s": round(seconds, 1), "commit": commit})
    if args.push:
        for r in results:
            subprocess.run(["docker", "push", r["ref"]], check=True, stdout=sys.stderr)
    if args.k3s_import:
        archive = k3s_import([r["ref"] for r in results], args.tag, args.k3s_images_dir)
        print(f"imported into k3s and pinned; archive {archive}", file=sys.stderr)

    table = sys.stderr if args.json else sys.stdout
    print(f"\n{'image':<40} {'size (MB)':>10} {'build (s)':>10}", file=table)
    for r in results:
        print(f"{r['ref']:<40} {r['size_mb']:>10.1f} {r['build_s']:>10.1f}", file=table)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
