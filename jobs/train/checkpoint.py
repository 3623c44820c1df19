"""Resume state in OUT/checkpoints/step-NNNNNN/: LoRA weights, optimizer, schedule, loss scaler, RNG, position.

A checkpoint is written to a temporary folder and renamed into place, so a folder named step-* is always
complete; a job killed at any moment (SIGKILL, node loss, Argo retry) resumes from the newest one and ends with
the same adapter as a run that was never interrupted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

NAME = re.compile(r"^step-(\d{6,})$")
KEEP = 2  # complete checkpoints kept; older ones are deleted once a newer one is in place


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu", copy=True).contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


def rng_state() -> dict:
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def save(root: Path, step: int, model, optimizer, scheduler, scaler, progress: dict) -> Path:
    """Write checkpoint `step` atomically; `progress` (JSON-able: step, tokens, metrics, fingerprint) goes last."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(trainable_state(model), str(tmp / "adapter.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None, "rng": rng_state()},
               tmp / "training_state.pt")
    (tmp / "progress.json").write_text(json.dumps(progress, indent=1))
    for f in tmp.iterdir():  # data on disk before the rename makes the folder count as complete
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():  # the same step written by an earlier attempt; both are complete and equal
        shutil.rmtree(tmp)
    else:
        os.rename(tmp, final)
    for old in complete(root)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest(root: Path) -> Path | None:
    found = complete(root)
    return found[-1] if found else None


def remove_partial(root: Path) -> None:
    """Temporary folders left by a job killed while writing a checkpoint."""
    if root.is_dir():
        for p in root.glob(".tmp-step-*"):
            shutil.rmtree(p, ignore_errors=True)


def read_progress(path: Path) -> dict:
    return json.loads((path / "progress.json").read_text())


def restore(path: Path, model, optimizer, scheduler, scaler) -> dict:
    """Load a checkpoint into the live objects; returns its progress record."""
    load_trainable_state(model, load_file(str(path / "adapter.safetensors")))
    state = torch.load(path / "training_state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    return read_progress(path)
