"""The train stage: dataset folder + build spec -> adapter folder (see docs/architecture.md).

    from jobs.train.run import train
    info = train(spec, dataset_dir, out_dir)

Order: read + tokenise the data, load the base model and a seeded LoRA adapter, preflight the memory on the
longest examples (GPU), resume from OUT/checkpoints if a previous attempt left one, train, write the adapter,
tokenizer, metrics.json, loss.png and train-info.json (last: its presence marks a finished folder).
"""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import torch

from jobs.core.loading import compute_dtype, load_tokenizer, pick_device
from jobs.core.model import resolve_base_model
from jobs.core.provenance import library_versions, sha256_file, training_fingerprint
from jobs.core.spec import BuildSpec
from jobs.train import TrainError, checkpoint
from jobs.train.data import read_conversations, step_plan, tokenize
from jobs.train.loop import accumulate, make_optimizer, optimizer_step
from jobs.train.model import load_model
from jobs.train.preflight import cap_memory, preflight
from jobs.train.progress import Progress, peak_memory_gib, write_metrics


def device_info(device: torch.device) -> dict:
    info = {"type": device.type, "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 2),
                    capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda)
    return info


def train(spec: BuildSpec, dataset_dir: str | Path, out_dir: str | Path) -> dict:
    t0 = time.perf_counter()
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    rows = read_conversations(dataset_dir)
    dataset_sha = sha256_file(dataset_dir / "train.parquet")
    fp = training_fingerprint(spec, dataset_sha)
    info_path = out_dir / "train-info.json"  # a finished folder is never overwritten
    if info_path.is_file():
        done = json.loads(info_path.read_text())
        if done.get("fingerprint") == fp:
            print(f"train: {out_dir} already holds this adapter (same spec and dataset); nothing to do")
            return done
        raise TrainError(f"{out_dir} already holds an adapter trained from another spec or dataset "
                              f"(train-info.json); choose a new --out folder, it is never overwritten")
    t = spec.train
    micro = t.execution.micro_batch_size or t.batch_size

    device = pick_device(spec.train.execution.device)
    if device.type == "cpu" and t.execution.cpu_threads:
        torch.set_num_threads(t.execution.cpu_threads)
    cap_memory(spec, device)
    dtype = compute_dtype(spec)
    torch.manual_seed(t.seed)
    model_dir = resolve_base_model(spec)
    tokenizer = load_tokenizer(model_dir)
    data = tokenize(rows, tokenizer, t.max_length, t.overlong)
    counts = data.counts()
    print(f"train: {counts['examples']} examples ({counts['truncated']} truncated, {counts['dropped']} dropped "
          f"at max_length {t.max_length}), {counts['label_tokens']} label tokens; device {device}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    plan = step_plan(len(data.examples), t.batch_size, t.grad_accum, t.epochs, t.max_steps, t.seed)

    model = load_model(spec, model_dir, device)
    params = [p for p in model.parameters() if p.requires_grad]
    pre = preflight(model, data.examples, spec, micro, pad_id, device, dtype,
                    lambda ps: make_optimizer(ps, spec, device, len(plan))[0])
    print(f"train: preflight {pre}")

    optimizer, scheduler = make_optimizer(params, spec, device, len(plan))
    # fp16 gradients underflow without loss scaling (what Trainer's fp16=True does); bf16/fp32 need none.
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and dtype == torch.float16 else None
    ckpt_root = out_dir / "checkpoints"
    checkpoint.remove_partial(ckpt_root)
    start, tokens_done, metrics, seconds_before, resumed_from = 0, 0, [], 0.0, None
    last = checkpoint.latest(ckpt_root)
    if last is not None:
        if checkpoint.read_progress(last)["fingerprint"] != fp:
            raise TrainError(f"{ckpt_root} holds checkpoints of another spec or dataset; choose a new --out "
                                  f"folder (or delete {ckpt_root} to start over)")
        progress = checkpoint.restore(last, model, optimizer, scheduler, scaler)
        start, tokens_done, metrics = progress["step"], progress["tokens"], progress["metrics"]
        seconds_before, resumed_from = progress["seconds"], last.name
        print(f"train: resuming from {last} (step {start}/{len(plan)})")
    else:
        torch.manual_seed(t.seed)  # dropout RNG from a known state, whatever the preflight drew

    bar = Progress(len(plan), start)
    window = {"loss_sum": 0.0, "labels": 0, "tokens": 0, "t": time.perf_counter()}
    t_loop = time.perf_counter()
    for step in range(start + 1, len(plan) + 1):
        examples = [data.examples[i] for i in plan[step - 1]]
        loss, n_labels, n_tokens = accumulate(model, examples, micro, pad_id, device, dtype,
                                              t.execution.loss_chunk_tokens, scaler)
        lr = scheduler.get_last_lr()[0]
        grad_norm = optimizer_step(params, optimizer, scheduler, scaler, t.max_grad_norm)
        tokens_done += n_tokens
        window["loss_sum"] += loss * n_labels
        window["labels"] += n_labels
        window["tokens"] += n_tokens
        if step % t.logging_every == 0 or step == len(plan):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            elapsed = time.perf_counter() - window["t"]
            metrics.append({"step": step, "loss": window["loss_sum"] / max(window["labels"], 1), "lr": lr,
                            "grad_norm": grad_norm if math.isfinite(grad_norm) else None,  # fp16 overflow: step skipped
                            "tokens_per_s": round(window["tokens"] / elapsed, 1),
                            "peak_mem_gib": peak_memory_gib(device), "label_tokens": window["labels"],
                            "tokens": window["tokens"]})
            window = {"loss_sum": 0.0, "labels": 0, "tokens": 0, "t": time.perf_counter()}
        bar.update(step, loss)
        if step % t.checkpoint_every == 0 and step < len(plan):
            checkpoint.save(ckpt_root, step, model, optimizer, scheduler, scaler, {
                "step": step, "tokens": tokens_done, "metrics": metrics, "fingerprint": fp,
                "seconds": seconds_before + time.perf_counter() - t_loop})
    bar.close()

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, save_embedding_layers=False)  # LoRA weights only; no hub lookup
    tokenizer.save_pretrained(out_dir)
    write_metrics(metrics, out_dir)
    info = {
        "stage": "train", "seconds": round(seconds_before + time.perf_counter() - t0, 2),
        "train_loop_seconds": round(seconds_before + time.perf_counter() - t_loop, 2),
        "versions": library_versions(), "device": device_info(device), "spec": spec.to_dict(),
        "fingerprint": fp, "base_model_dir": str(model_dir), "dataset": {"path": str(dataset_dir),
                                                                         "train_sha256": dataset_sha},
        "data": counts, "truncated_ids": data.truncated, "dropped_ids": data.dropped,
        "steps": len(plan), "micro_batch_size": micro, "tokens_trained": tokens_done,
        "trainable_params": sum(p.numel() for p in params), "preflight": pre, "resumed_from": resumed_from,
        "peak_mem_gib": peak_memory_gib(device), "final_loss": metrics[-1]["loss"] if metrics else None,
    }
    (out_dir / "train-info.json").write_text(json.dumps(info, indent=1, default=str))
    return info
