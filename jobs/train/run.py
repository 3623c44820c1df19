"""The train stage: dataset folder + build spec -> adapter folder (see docs/architecture.md).

    from jobs.train.run import train
    info = train(spec, dataset_dir, out_dir)           # checkpoints under out_dir/checkpoints unless given

`train` runs one function per phase: read and tokenise the data, load the model (base, seeded LoRA adapter,
the execution knobs), preflight the memory on the longest examples (GPU), resume from the checkpoints folder
(OUT/checkpoints unless given) if a previous attempt left one, the loop, and the outputs: adapter, tokenizer,
metrics.json, loss.png and train-info.json (last: its presence marks a finished folder).
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from jobs.core.engine.loading import cap_memory, compute_dtype, load_tokenizer, pick_device
from jobs.core.engine.basemodel import resolve_base_model
from jobs.core.store.provenance import library_versions, sha256_file, training_fingerprint
from jobs.core.spec.schema import BuildSpec
from jobs.core.store.outputs import share
from jobs.train import TrainError, checkpoint, execution
from jobs.train.data import Tokenized, read_conversations, step_plan, tokenize
from jobs.train.loop import Layout, Mark, StepRead, accumulate, make_optimizer, make_scaler, optimizer_step
from jobs.train.model import load_model
from jobs.train.preflight import preflight
from jobs.train.steplog import Progress, peak_memory_gib, write_metrics


def device_info(device: torch.device) -> dict:
    info = {"type": device.type, "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 2),
                    capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda)
    return info


@dataclass
class State:
    """Everything the loop advances; a checkpoint saves it and a resume restores it."""

    optimizer: object
    scheduler: object
    scaler: object  # GradScaler for float16 compute, else None
    step: int = 0
    tokens: int = 0
    metrics: list[dict] = field(default_factory=list)
    seconds_before: float = 0.0  # loop seconds of the attempts before a resume
    resumed_from: str | None = None


def finished(out_dir: Path, fp: str) -> dict | None:
    """train-info.json of a folder already finished from the same inputs; a folder from others is refused."""
    info_path = out_dir / "train-info.json"  # a finished folder is never overwritten
    if not info_path.is_file():
        return None
    done = json.loads(info_path.read_text())
    if done.get("fingerprint") != fp:
        raise TrainError(f"{out_dir} already holds an adapter trained from another spec or dataset "
                         f"(train-info.json); choose a new --out folder, it is never overwritten")
    print(f"train: {out_dir} already holds this adapter (same spec and dataset); nothing to do")
    return done


def read_data(spec: BuildSpec, rows, tokenizer, device: torch.device) -> Tokenized:
    t = spec.train
    data = tokenize(rows, tokenizer, t.max_length, t.overlong)
    c = data.counts()
    print(f"train: {c['examples']} examples ({c['truncated']} truncated, {c['dropped']} dropped at max_length "
          f"{t.max_length}), {c['label_tokens']} label tokens; device {device}")
    return data


def layout_of(spec: BuildSpec, tokenizer) -> Layout:
    ex = spec.train.execution  # bounds and combinations checked when the spec was loaded
    return Layout(micro_batch_size=ex.micro_batch_size or spec.train.batch_size, packed=ex.packing,
                  pad_id=tokenizer.pad_token_id, loss_chunk_tokens=ex.loss_chunk_tokens,
                  fused_loss=ex.fused_loss, compiled_loss=ex.compile)


def start_device(spec: BuildSpec) -> torch.device:
    execution.expandable_segments()  # before CUDA starts (pick_device)
    device = pick_device(spec.train.execution.device)
    if device.type == "cpu" and spec.train.execution.cpu_threads:
        torch.set_num_threads(spec.train.execution.cpu_threads)
    cap_memory(device, spec.train.memory_budget_gib)
    if spec.train.execution.deterministic:
        execution.make_deterministic(device)
    return device


def load(spec: BuildSpec, model_dir: Path, device: torch.device):
    """The base with a seeded LoRA adapter, then the load-time execution knobs (dequantize once)."""
    model = load_model(spec, model_dir, device)
    applied = execution.apply(model, spec)
    if applied:
        print(f"train: execution {applied}")
    return model, applied


def resume(spec: BuildSpec, model, params, ckpt_root: Path, fp: str, total_steps: int, device) -> State:
    """Fresh optimizer, schedule and loss scaler, or those of the newest checkpoint in ckpt_root."""
    optimizer, scheduler = make_optimizer(params, spec, device, total_steps)
    state = State(optimizer, scheduler, make_scaler(device, compute_dtype(spec)))
    checkpoint.remove_partial(ckpt_root)
    last = checkpoint.latest(ckpt_root)
    if last is None:
        torch.manual_seed(spec.train.seed)  # dropout RNG from a known state, whatever the preflight drew
        return state
    if checkpoint.read_progress(last)["fingerprint"] != fp:
        raise TrainError(f"{ckpt_root} holds checkpoints of another spec or dataset; choose a new --out "
                         f"folder (or delete {ckpt_root} to start over)")
    progress = checkpoint.restore(last, model, optimizer, scheduler, state.scaler)
    state.step, state.tokens, state.metrics = progress["step"], progress["tokens"], progress["metrics"]
    state.seconds_before, state.resumed_from = progress["seconds"], last.name
    print(f"train: resuming from {last} (step {state.step}/{total_steps})")
    return state


@dataclass
class Done:
    """A queued optimizer step, read (StepRead) one step later."""

    step: int
    n_labels: int
    n_tokens: int
    lr: float
    read: StepRead


def run_loop(spec: BuildSpec, model, params, data: Tokenized, plan, layout: Layout, state: State,
             ckpt_root: Path, fp: str, device) -> float:
    """Optimizer steps from state.step to the end of the plan; returns this attempt's loop seconds. Each step is
    read after the next one is queued (StepRead); a checkpoint step and the last are read at once."""
    t, dtype = spec.train, compute_dtype(spec)
    bar = Progress(len(plan), state.step)
    window = {"loss_sum": 0.0, "labels": 0, "tokens": 0, "since": Mark(device)}
    t_loop = time.perf_counter()
    pending = None
    for step in range(state.step + 1, len(plan) + 1):
        examples = [data.examples[i] for i in plan[step - 1]]
        loss, n_labels, n_tokens = accumulate(model, examples, layout, device, dtype, state.scaler)
        lr = state.scheduler.get_last_lr()[0]
        grad_norm = optimizer_step(params, state.optimizer, state.scheduler, state.scaler, t.max_grad_norm)
        queued = Done(step, n_labels, n_tokens, lr, StepRead(loss, grad_norm, device))
        if pending is not None:
            window = record(pending, state, window, bar, t.logging_every, device)
        pending = queued
        if step % t.checkpoint_every == 0 or step == len(plan):
            window, pending = record(pending, state, window, bar, t.logging_every, device), None
            if step < len(plan):
                checkpoint.save(ckpt_root, step, model, state.optimizer, state.scheduler, state.scaler, {
                    "step": step, "tokens": state.tokens, "metrics": state.metrics, "fingerprint": fp,
                    "seconds": state.seconds_before + time.perf_counter() - t_loop})
    bar.close()
    return time.perf_counter() - t_loop


def record(done: Done, state: State, window: dict, bar: Progress, logging_every: int, device) -> dict:
    """A finished step into the state, the metrics window (written every logging_every steps and at the last)
    and the progress bar; returns the window."""
    loss, grad_norm = done.read.values()  # waits for this step only: the next one is queued behind it
    state.step, state.tokens = done.step, state.tokens + done.n_tokens
    window["loss_sum"] += loss * done.n_labels
    window["labels"] += done.n_labels
    window["tokens"] += done.n_tokens
    if done.step % logging_every == 0 or done.step == bar.total:
        elapsed = done.read.mark.seconds_since(window["since"])
        state.metrics.append({
            "step": done.step, "loss": window["loss_sum"] / max(window["labels"], 1), "lr": done.lr,
            "grad_norm": grad_norm if math.isfinite(grad_norm) else None,  # fp16 overflow: step skipped
            "tokens_per_s": round(window["tokens"] / elapsed, 1), "seconds": round(elapsed, 4),
            "peak_mem_gib": peak_memory_gib(device), "peak_alloc_gib": peak_memory_gib(device, allocated=True),
            "label_tokens": window["labels"],
            "tokens": window["tokens"]})  # real tokens: padding is never counted
        window = {"loss_sum": 0.0, "labels": 0, "tokens": 0, "since": done.read.mark}
    bar.update(done.step, loss, done.lr, done.n_tokens)
    return window


def write_outputs(out_dir: Path, model, tokenizer, state: State, info: dict) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, save_embedding_layers=False)  # LoRA weights only; no hub lookup
    tokenizer.save_pretrained(out_dir)
    write_metrics(state.metrics, out_dir)
    (out_dir / "train-info.json").write_text(json.dumps(info, indent=1, default=str))
    share(out_dir)  # safetensors writes 0600: Argo's executor, another user, could not upload the adapter
    return info


def train(spec: BuildSpec, dataset_dir: str | Path, out_dir: str | Path,
          checkpoints_dir: str | Path | None = None) -> dict:
    t0 = time.perf_counter()
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    rows = read_conversations(dataset_dir)
    dataset_sha = sha256_file(dataset_dir / "train.parquet")
    fp = training_fingerprint(spec, dataset_sha)
    if (done := finished(out_dir, fp)) is not None:
        return done
    t = spec.train
    device = start_device(spec)
    torch.manual_seed(t.seed)
    model_dir = resolve_base_model(spec)
    tokenizer = load_tokenizer(model_dir)
    layout = layout_of(spec, tokenizer)
    data = read_data(spec, rows, tokenizer, device)
    plan = step_plan(len(data.examples), t.batch_size, t.grad_accum, t.epochs, t.max_steps, t.seed)

    model, applied = load(spec, model_dir, device)
    params = [p for p in model.parameters() if p.requires_grad]
    pre = preflight(model, data.examples, spec, layout, device, compute_dtype(spec),
                    lambda ps: make_optimizer(ps, spec, device, len(plan))[0])
    print(f"train: preflight {json.dumps(pre)}")
    # In the cluster the checkpoints live on a volume of their own, outside the adapter folder Argo uploads.
    ckpt_root = Path(checkpoints_dir) if checkpoints_dir else out_dir / "checkpoints"
    state = resume(spec, model, params, ckpt_root, fp, len(plan), device)
    loop_s = run_loop(spec, model, params, data, plan, layout, state, ckpt_root, fp, device)

    return write_outputs(out_dir, model, tokenizer, state, {
        "stage": "train", "seconds": round(state.seconds_before + time.perf_counter() - t0, 2),
        "train_loop_seconds": round(state.seconds_before + loop_s, 2),
        "versions": library_versions(), "device": device_info(device), "spec": spec.to_dict(),
        "fingerprint": fp, "base_model_dir": str(model_dir),
        "dataset": {"path": str(dataset_dir), "train_sha256": dataset_sha},
        "data": data.counts(), "truncated_ids": data.truncated, "dropped_ids": data.dropped,
        "steps": len(plan), "micro_batch_size": layout.micro_batch_size, "packed": layout.packed,
        "execution_applied": applied, "tokens_trained": state.tokens,
        "trainable_params": sum(p.numel() for p in params), "preflight": pre, "resumed_from": state.resumed_from,
        "peak_mem_gib": peak_memory_gib(device),
        "final_loss": state.metrics[-1]["loss"] if state.metrics else None,
    })
