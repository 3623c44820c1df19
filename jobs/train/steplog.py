"""What a running job shows: a progress bar, `N/M` for Argo, and the metrics log (JSON + PNG loss curve)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from jobs.core import progress

GiB = 1024 ** 3


class Progress:
    """tqdm bar on stderr; when ARGO_PROGRESS_FILE is set, `step/total` is written there after every step; under
    the local build driver, train_step events (jobs/core/progress.py) with loss, learning rate and tokens/s."""

    def __init__(self, total: int, start: int):
        from tqdm import tqdm

        self.total = total
        self.bar = tqdm(total=total, initial=start, unit="step", desc="train", file=sys.stderr,
                        dynamic_ncols=True, mininterval=1.0)
        self.argo_file = os.environ.get("ARGO_PROGRESS_FILE")
        self._write_argo(start)
        self.meter = progress.Meter("train_step", total, start)
        self.tokens = 0  # real tokens since this run started, for tokens/s

    def _write_argo(self, step: int) -> None:
        if self.argo_file:
            tmp = f"{self.argo_file}.tmp"
            with open(tmp, "w") as f:
                f.write(f"{step}/{self.total}\n")
            os.replace(tmp, self.argo_file)  # Argo may read at any moment: never a half-written line

    def update(self, step: int, loss: float, lr: float, tokens: int) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self._write_argo(step)
        self.tokens += tokens
        self.meter.advance(step, loss=round(loss, 5), lr=lr,
                           tokens_per_s=round(self.tokens / max(self.meter.elapsed(), 1e-9), 1))

    def close(self) -> None:
        self.bar.close()


def peak_memory_gib(device, allocated: bool = False) -> float | None:
    """Peak reserved GPU memory since the preflight (what the training loop needs of the card); None on CPU.
    allocated: the peak of the tensors themselves. Reserved less allocated is what the caching allocator holds
    for sizes no request has reused (at 32 examples a step, reserved grew at steps 7 and 11 of 12, not with the
    largest step: docs/benchmarks.md)."""
    import torch

    if device.type != "cuda":
        return None
    peak = torch.cuda.max_memory_allocated(device) if allocated else torch.cuda.max_memory_reserved(device)
    return round(peak / GiB, 3)


def write_metrics(records: list[dict], out_dir: Path) -> None:
    (out_dir / "metrics.json").write_text(json.dumps(records, indent=1))
    plot_loss(records, out_dir / "loss.png")


def plot_loss(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display in containers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in records], [r["loss"] for r in records], marker="." if len(records) < 50 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean per label token)")
    ax.set_title("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
