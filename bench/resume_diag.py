"""python -m bench.resume_diag --out DIR [--arms compile+dropout,compile,...] [--steps 8] [--no-again] [--smoke]

Why does a killed and resumed train differ from an uninterrupted one (tests/train/test_train_gpu.py, H100: adapter
3.9e-4 apart, losses 2.0e-4, while two uninterrupted runs were bit-identical)? For each arm it runs `python -m
jobs.train` as that test does (the rehearsal spec, 8 steps, a checkpoint every 2, cosine with warmup 2, a loss
per step): straight, straight again, and killed (SIGKILL once the first checkpoint is in place) then resumed twice
from that one checkpoint (a copy of the folder). It prints each run's per-step losses and gradient norms (float32,
exact), the first step where a run leaves the straight one, the largest adapter difference, the checkpoint_layers
the preflight chose, and how many times each process recompiled (TORCH_LOGS=recompiles; reasons in
DIR/<arm>/*.log).

Arms (ARMS): compile on or off, LoRA dropout on or off, compile+dropout with TORCHINDUCTOR_DETERMINISTIC=1
(inductor then skips the on-device benchmarking whose pick changes numerics: a reduction kernel's RBLOCK and
warps are tuned by timing at its first launch, mm padding is benchmarked), and compile+dropout with the product's
train.execution.deterministic (torch.use_deterministic_algorithms: flash attention's backward without atomic adds
as well; jobs/train/execution.py make_deterministic). Reading the results:
  - the resumed run leaves straight at step 3 only in compiled arms: the compiled kernels depend on the process's
    history; if the inductor-deterministic arm stays on straight, runtime autotuning is the cause; more
    recompiles in straight than in resumed (or other reasons) point at guards instead.
  - it leaves straight in the eager dropout arm too: some state is not restored (jobs/train/checkpoint.py), or
    the GPU's kernels are not bit-reproducible (the rerun tells).
  - the rerun (again) leaves straight too: the GPU is not bit-reproducible with these kernels; the deterministic
    arm must then stay on straight in every run (if it does not, a kernel outside torch's deterministic list is
    at work).
  - resumed and resumed2 differ from each other: the resume itself is not reproducible on this GPU.
  - the resumed run already differs at step 1 or 2 (those losses come from the killed process's checkpoint): the
    killed process left straight before it was killed; resuming is not the cause.
Writes DIR/resume_diag.json after each arm. An arm runs 5 train processes (4 with --no-again), about a minute each
on an H100 judging by the GPU tier's test: one or two arms a 10-minute call. The H100 result (2026-12-07) is in
docs/benchmarks.md, GPU test tier.

--smoke runs the same on the CPU with the smoke spec's tiny model (float32, 1 thread, micro-batches of 4, dequantize
once): it checks the script; on the CPU every arm is bit-identical (recorded in the issue-28 report).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from jobs.core.engine.basemodel import resolve_base_model
from jobs.core.repo import REPO_ROOT
from jobs.core.spec.load import spec_by_tag
from tests.train.conftest import conversations, with_train, write_dataset

# arm: (compile, LoRA dropout, extra environment of each train process, train.execution.deterministic)
ARMS = {"compile+dropout": (True, 0.05, {}, False), "compile": (True, 0.0, {}, False),
        "dropout": (False, 0.05, {}, False), "eager": (False, 0.0, {}, False),
        # inductor without on-device benchmarking of numerics-changing choices (reduction configs, mm padding)
        "compile+dropout+inductor-deterministic": (True, 0.05, {"TORCHINDUCTOR_DETERMINISTIC": "1"}, False),
        # the product's knob: deterministic kernels everywhere (flash attention's backward without atomic adds too)
        "compile+dropout+deterministic": (True, 0.05, {}, True)}
DEFAULT_ARMS = "compile+dropout+deterministic,compile+dropout,dropout"


def command(spec_file: Path, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "jobs.train", "--spec", str(spec_file), "--dataset", str(data), "--out", str(out)]


def env(extra: dict) -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", TORCH_LOGS="recompiles", **extra)


def recompiles(log: str) -> int:
    return sum("Recompiling function" in line for line in log.splitlines())


def finish(out: Path, log: str) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    info = json.loads((out / "train-info.json").read_text())
    return {"losses": [m["loss"] for m in metrics], "grad_norms": [m["grad_norm"] for m in metrics],
            "recompiles": recompiles(log), "resumed_from": info["resumed_from"],
            "checkpoint_layers": info["preflight"].get("checkpoint_layers"),
            "adapter": load_file(str(out / "adapter_model.safetensors"))}


def straight(spec_file: Path, data: Path, out: Path, extra: dict) -> dict:
    done = subprocess.run(command(spec_file, data, out), cwd=REPO_ROOT, env=env(extra), capture_output=True,
                          text=True)
    (out.parent / f"{out.name}.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"{out}: train failed:\n{done.stderr[-3000:]}")
    return finish(out, done.stdout + done.stderr)


def killed(spec_file: Path, data: Path, out: Path, extra: dict) -> tuple[dict, dict]:
    """Killed after its first checkpoint, then resumed twice from that same checkpoint (a copy of the folder):
    two resumes that agree with each other but not with straight say the resume is reproducible but the history
    of the process matters."""
    log = out.parent / f"{out.name}-killed.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(command(spec_file, data, out), cwd=REPO_ROOT, env=env(extra), stdout=fh, stderr=fh)
        while proc.poll() is None and not list((out / "checkpoints").glob("step-*")):
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    first = recompiles(log.read_text())
    twin = out.parent / f"{out.name}2"
    shutil.copytree(out, twin)
    return ({**straight(spec_file, data, out, extra), "killed_process_recompiles": first},
            {**straight(spec_file, data, twin, extra), "killed_process_recompiles": first})


def first_difference(a: list, b: list) -> int | None:
    """The first step (1-based) where two per-step series differ, None if none does."""
    return next((i + 1 for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


def compare(base: dict, other: dict) -> dict:
    return {"first_loss_step": first_difference(base["losses"], other["losses"]),
            "first_grad_norm_step": first_difference(base["grad_norms"], other["grad_norms"]),
            "largest_loss_difference": max(abs(x - y) for x, y in zip(base["losses"], other["losses"])),
            "largest_adapter_difference": max(float((base["adapter"][k].float() - other["adapter"][k].float())
                                                    .abs().max()) for k in base["adapter"])}


def arm(name: str, spec, data: Path, root: Path, again: bool) -> dict:
    compiled, dropout, extra, deterministic = ARMS[name]
    folder = root / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    spec = with_train(spec, lora={"dropout": dropout}, execution={"compile": compiled, "deterministic": deterministic})
    spec_file = folder / "spec.json"
    spec_file.write_text(spec.to_json())
    runs = {"straight": straight(spec_file, data, folder / "straight", extra)}
    if again:
        runs["again"] = straight(spec_file, data, folder / "again", extra)
    runs["resumed"], runs["resumed2"] = killed(spec_file, data, folder / "resumed", extra)
    result = {k: {f: v for f, v in r.items() if f != "adapter"} for k, r in runs.items()}
    for k in runs:
        if k != "straight":
            result[f"straight vs {k}"] = compare(runs["straight"], runs[k])
    result["resumed vs resumed2"] = compare(runs["resumed"], runs["resumed2"])
    return result


def show(name: str, r: dict) -> None:
    print(f"== {name}")
    for k in ("straight", "again", "resumed", "resumed2"):
        if k in r:
            extra = (f", resumed from {r[k]['resumed_from']}, killed process recompiled "
                     f"{r[k]['killed_process_recompiles']}x" if k.startswith("resumed") else "")
            print(f"  {k:8s} recompiles {r[k]['recompiles']}, checkpoint_layers {r[k]['checkpoint_layers']}{extra}")
            print("    loss      " + " ".join(f"{x:.9g}" for x in r[k]["losses"]))
            print("    grad_norm " + " ".join(f"{x:.9g}" if x is not None else "inf" for x in r[k]["grad_norms"]))
    for k, v in r.items():
        if " vs " in k:
            print(f"  {k}: {v}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("--out", required=True)
    p.add_argument("--arms", default=DEFAULT_ARMS, help=f"of {', '.join(ARMS)}")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--no-again", action="store_true", help="skip the second uninterrupted run")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model, smoke spec")
    args = p.parse_args()
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        spec = with_train(spec_by_tag("smoke"), execution={"micro_batch_size": 4, "dequantize_once": True})
        rows = conversations(48, answer_words=(5, 40))
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU: use --smoke on a CPU")
        spec = spec_by_tag("rehearsal")  # its base: a random model of Qwen2.5-1.5B's shape (made once, cached)
        rows = conversations(48, answer_words=(20, 120))
    spec = with_train(spec, max_steps=args.steps, checkpoint_every=2, lr_scheduler="cosine", warmup_steps=2,
                      logging_every=1)
    os.environ["QSLM_BASE_MODEL"] = str(resolve_base_model(spec))
    data = write_dataset(root / "data", rows)
    results = {}
    for name in args.arms.split(","):
        results[name] = arm(name, spec, data, root, again=not args.no_again)
        show(name, results[name])
        (root / "resume_diag.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
