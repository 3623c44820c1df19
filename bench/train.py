"""python -m bench.train --out DIR [--variants NAME,...] [--profile NAME,...] [--baselines ../shared/bench]
[--budget-s S] [--no-packing-check]

GPU benchmark of the train stage: the v1 and v3 specs and execution variants of them (VARIANTS), on a model
with the exact shape of Qwen2.5-1.5B-Instruct, randomly initialised (no weights can be downloaded), saved and
loaded back through the spec's 4-bit NF4 path. In this order: with --profile, steps of those variants under
torch.profiler (bench/stepprofile.py, in this process); each variant as the real command `python -m jobs.train` in
its own process (clean peak-memory counters), with QSLM_BASE_MODEL pointing at the random model; with
--baselines (the folder of the shared qlora_baseline.py and fastpath_probe.py) the two references on the same
model: the Trainer baseline (--only V1) and the hand-written probe at 4 x 1024 and 32 x 1024 tokens; last, one
micro-step packed and padded on the GPU (packing_check). Writes DIR/results.json after every run (a cut-off
call keeps what it measured) and DIR/table.md at the end. --budget-s: no variant starts once the call has run
that long less what the runs after the variants need (RESERVE_S), so the baselines still run in a time-boxed call.

tokens/s counts real tokens only (padding never), over the steps after the first WARMUP_STEPS: their tokens
over their seconds. The tokenizer is the tiny model's (1,024 words, trained on data/raw, Qwen2.5 chat template):
token ids stay below 1,024, but the model computes over the full 151,936-word vocabulary, so speed and memory
are Qwen's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.benchmodel import build_model
from jobs.core.repo import REPO_ROOT
from jobs.core.spec.schema import ExecutionSpec
from jobs.core.spec.load import spec_by_tag

B32 = {"grad_accum": 32}  # the bench variant of v1 with 32 examples per optimizer step (batch 1 x grad-accum 32)
V1_SHIPPED = {"micro_batch_size": 4, "dequantize_once": True}  # v1.yaml's execution before compile was measured
COMPILED = {"dequantize_once": True, "compile": True}
UNFUSED = {"fused_loss": False}  # the loss chunks recomputed in backward, as before the fused loss
# name: (spec tag, optimizer steps, changes to the tag's train section, its whole execution section over the
# defaults). Since the fused loss became the default, a variant without UNFUSED runs it.
VARIANTS = {
    "v1-padded": ("v1", 50, {}, {"micro_batch_size": 4, "packing": False, **UNFUSED}),  # v1 before packing
    "v1-packed": ("v1", 50, {}, {"micro_batch_size": 4, **UNFUSED}),
    "v1-packed-dq": ("v1", 30, {}, {**V1_SHIPPED, **UNFUSED}),
    "v1-packed-dq-fit": ("v1", 30, {}, {**V1_SHIPPED, "checkpoint_layers": "fit", **UNFUSED}),
    "v1-compile-unfused": ("v1", 30, {}, {"micro_batch_size": 4, **COMPILED, **UNFUSED}),
    "v1-compile": ("v1", 30, {}, {"micro_batch_size": 4, **COMPILED}),
    "v1-compile-fit": ("v1", 30, {}, {"micro_batch_size": 4, **COMPILED, "checkpoint_layers": "fit"}),
    "b32-packed": ("v1", 12, B32, {"micro_batch_size": 32, **UNFUSED}),
    "b32-mb16-dq-fit": ("v1", 12, B32, {"micro_batch_size": 16, "dequantize_once": True, "checkpoint_layers": "fit",
                                        **UNFUSED}),
    "b32-compile-unfused": ("v1", 12, B32, {"micro_batch_size": 32, **COMPILED, **UNFUSED}),
    "b32-compile": ("v1", 12, B32, {"micro_batch_size": 32, **COMPILED}),
    "b32-compile-det": ("v1", 12, B32, {"micro_batch_size": 32, **COMPILED, "deterministic": True}),
    "v1-compile-det": ("v1", 30, {}, {"micro_batch_size": 4, **COMPILED, "deterministic": True}),
    "b32-compile-lc1024": ("v1", 12, B32, {"micro_batch_size": 32, **COMPILED, "loss_chunk_tokens": 1024}),
    "b32-mb16-compile-fit": ("v1", 12, B32, {"micro_batch_size": 16, **COMPILED, "checkpoint_layers": "fit"}),
    "b32-mb8-compile-fit": ("v1", 12, B32, {"micro_batch_size": 8, **COMPILED, "checkpoint_layers": "fit"}),
    # passes of 1 to 4 examples (at most ~4,000 tokens): room in 11.5 GiB to keep layers instead of recomputing them
    "b32-mb4-compile-fit": ("v1", 12, B32, {"micro_batch_size": 4, **COMPILED, "checkpoint_layers": "fit"}),
    "b32-mb2-compile-fit": ("v1", 12, B32, {"micro_batch_size": 2, **COMPILED, "checkpoint_layers": "fit"}),
    "b32-mb1-compile-fit": ("v1", 12, B32, {"micro_batch_size": 1, **COMPILED, "checkpoint_layers": "fit"}),
    # v3.yaml's own training (LoRA r64 on all seven linear layers, 8 x 4 = 32 examples per step)
    "v3-mb32-compile": ("v3", 12, {}, {"micro_batch_size": 32, **COMPILED}),
    "v3-mb16-compile": ("v3", 12, {}, {"micro_batch_size": 16, **COMPILED}),
}
# The targets' candidates first, then the lever they keep against its alternative, then the references in the
# same call (--baselines).
DEFAULT = "b32-compile,b32-compile-unfused,v1-compile,v3-mb32-compile,v3-mb16-compile"
LOSS_REFERENCE = {"v1-packed": "v1-padded"}  # loss curves compared step by step (same data, seed and steps)
RESERVE_S = 130  # what the baselines (about 90 s with a shortened Trainer run) and the packing check need
WARMUP_STEPS = 3  # left out of tokens/s: CUDA/cuBLAS initialisation and allocator growth


def build_dataset(work: Path, n: int, seed: int = 0) -> Path:
    """n chat examples cut from the project's own documents: a context of 60-220 words, an answer of 40-160
    (about 250-950 tokens with the tiny tokenizer, so most fit v1's max_length of 1,024)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    words = " ".join(p.read_text(errors="replace") for p in sorted((REPO_ROOT / "data" / "raw").rglob("*"))
                     if p.is_file()).split()
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randrange(len(words) - 220), rng.randrange(len(words) - 160)
        context = " ".join(words[a:a + rng.randint(60, 220)])
        answer = " ".join(words[b:b + rng.randint(40, 160)])
        rows.append({"id": f"b{i}", "messages": [
            {"role": "user", "content": f"Using this passage, explain its main idea.\n\n{context}"},
            {"role": "assistant", "content": answer}]})
    folder = work / "dataset"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "train.parquet")
    return folder


def spec_with(execution: dict, train: dict | None = None, steps: int | None = None, tag: str = "v1") -> dict:
    """A build spec (v1.yaml's unless tag) as a dict with train changes and the given execution section over the
    defaults."""
    spec = spec_by_tag(tag).to_dict()
    spec["train"].update(train or {}, max_steps=steps)
    spec["train"]["execution"] = {**dataclasses.asdict(ExecutionSpec()), **execution}
    return spec


def variant_spec(name: str) -> dict:
    tag, steps, train, execution = VARIANTS[name]
    return spec_with(execution, train, steps, tag)


def run_variant(name: str, work: Path, model_dir: Path, dataset: Path, timeout_s: float, log) -> dict:
    spec = variant_spec(name)
    spec_file = work / f"spec-{name}.json"
    spec_file.write_text(json.dumps(spec))
    out = work / f"adapter-{name}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "jobs.train", "--spec", str(spec_file), "--dataset", str(dataset), "--out", str(out)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=dict(os.environ, QSLM_BASE_MODEL=str(model_dir)),
                              capture_output=True, text=True, timeout=timeout_s)
        rc, text = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, text = "timeout", f"{exc.stdout or ''}{exc.stderr or ''}"
    log.write(f"===== {name}: {' '.join(cmd)}\n{text}\n")
    r = {"variant": name, "train": spec["train"], "rc": rc, "wall_s": round(time.perf_counter() - t0, 1)}
    if rc != 0:
        r["error"] = next((line for line in text.splitlines() if "error:" in line), text[-600:])
        return r
    info = json.loads((out / "train-info.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    timed = metrics[WARMUP_STEPS:] or metrics
    r.update(tokens_per_s=round(sum(m["tokens"] for m in timed) / sum(m["seconds"] for m in timed)),
             step_s=round(sum(m["seconds"] for m in timed) / len(timed), 4),
             tokens_per_step=round(sum(m["tokens"] for m in timed) / len(timed)),
             label_tokens_per_step=round(sum(m["label_tokens"] for m in timed) / len(timed)),
             losses=[m["loss"] for m in metrics], peak_reserved_gib=info["peak_mem_gib"],
             peaks_per_step=[[m["peak_mem_gib"], m.get("peak_alloc_gib")] for m in metrics],  # reserved, allocated
             preflight=info["preflight"], execution_applied=info["execution_applied"], gpu=info["device"].get("gpu"),
             versions=info["versions"], data=info["data"])
    return r


def profile_run(name: str, work: Path, model_dir: Path, dataset: Path, out_file: Path) -> dict:
    """Steps of a variant under the profiler (bench/stepprofile.py), in this process: its spec written out
    and loaded as the train command loads it."""
    import traceback

    from jobs.core.spec.load import load_spec
    from bench.stepprofile import profile_steps

    try:
        spec_file = work / f"spec-{name}.json"
        spec_file.write_text(json.dumps(variant_spec(name)))
        return profile_steps(load_spec(spec_file), model_dir, dataset, out_file)
    except Exception:  # noqa: BLE001 - a benchmark reports what broke and goes on to the other runs
        return {"error": traceback.format_exc()[-1500:]}


def baselines(folder: Path, work: Path, model_dir: Path, log, trainer_steps: int) -> list[dict]:
    """The shared references on the same model: the Trainer baseline V1 and the probe at 4 and 32 x 1024."""
    rows = []
    cmd = [sys.executable, str(folder / "qlora_baseline.py"), "--only", "V1", "--out", str(work / "baseline"),
           "--work", str(work / "qb"), "--model-dir", str(model_dir), "--steps", str(trainer_steps)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    log.write(f"===== {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    done = json.loads((work / "baseline" / "results.json").read_text())["results"] if proc.returncode == 0 else []
    for r in [r for r in done if r.get("ok")]:
        rows.append({"reference": f"Trainer baseline {r['variant']} (qlora_baseline.py, bf16, 1 x 4 x 512 tokens)",
                     "tokens_per_s": round(r.get("tokens_per_s", 0)),
                     "peak_reserved_gib": round(r["train_peak"]["peak_reserved_gib"], 2)})
    probe = (f"import json, sys; sys.path.insert(0, {str(folder)!r}); import fastpath_probe as p; "
             f"m = p.load({str(model_dir)!r}, True)\n"
             f"for b in (4, 32): print('PROBE', json.dumps(p.run(m, b, 1024, 12, 3, 2048)), flush=True)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    log.write(f"===== fastpath_probe.py at 4 and 32 x 1024\n{proc.stdout}{proc.stderr}\n")
    for line in proc.stdout.splitlines():
        if line.startswith("PROBE "):
            r = json.loads(line[6:])
            rows.append({"reference": f"fastpath_probe.py, {r['batch']} x {r['seq']}, checkpointing",
                         "tokens_per_s": round(r["tok_s"]), "peak_reserved_gib": round(r["peak_resv_gib"], 2)})
    return rows


def packing_check(model_dir: Path, dataset: Path) -> dict:
    """On the GPU, the real model: one micro-step of the same 8 examples padded and packed (v1 without LoRA
    dropout, so both draw nothing random, and with fp16 loss scaling as in training, so small gradients do not
    underflow): the two losses and gradients should agree to fp16 rounding."""
    import traceback

    try:
        import torch

        from jobs.core.engine.loading import compute_dtype, load_tokenizer, pick_device
        from jobs.train.data import read_conversations, tokenize
        from jobs.train.loop import Layout, accumulate
        from jobs.train.model import load_model

        spec = spec_by_tag("v1")
        spec = dataclasses.replace(spec, train=dataclasses.replace(
            spec.train, lora=dataclasses.replace(spec.train.lora, dropout=0.0)))
        tokenizer = load_tokenizer(model_dir)
        examples = tokenize(read_conversations(dataset)[:8], tokenizer, 1024, "truncate").examples
        device, dtype = pick_device(), compute_dtype(spec)
        model = load_model(spec, model_dir, device)
        with torch.no_grad():  # B starts at zero: perturb so the LoRA path counts
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.02)
        out = {}
        for packed in (False, True):
            layout = Layout(micro_batch_size=8, packed=packed, pad_id=tokenizer.pad_token_id, loss_chunk_tokens=2048)
            scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
            loss, _, _ = accumulate(model, examples, layout, device, dtype, scaler)
            grads = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.requires_grad])
            out["packed" if packed else "padded"] = {"loss": float(loss), "grad_norm": float(grads.norm())}
            out.setdefault("grads", []).append(grads)
            model.zero_grad(set_to_none=True)
        a, b = out.pop("grads")
        out["grad_rel_diff"] = float((a - b).norm() / b.norm())
        out["tokens"] = sum(len(e.input_ids) for e in examples)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the variants run in their own processes; leave them the card
        return out
    except Exception:  # noqa: BLE001 - a benchmark reports what broke and goes on to the other runs
        return {"error": traceback.format_exc()[-1500:]}


def loss_gap(results: list[dict]) -> dict:
    """Per-step loss of each packed run against its padded reference: the largest and mean |difference|."""
    by_name = {r["variant"]: r for r in results if r["rc"] == 0}
    out = {}
    for name, ref in LOSS_REFERENCE.items():
        if name in by_name and ref in by_name:
            a, b = by_name[name]["losses"], by_name[ref]["losses"]
            gaps = [abs(x - y) for x, y in zip(a, b)]
            out[f"{name} vs {ref}"] = {"steps": len(gaps), "max_abs": max(gaps), "mean_abs": sum(gaps) / len(gaps),
                                       "reference_first_last": [b[0], b[-1]]}
    return out


def table(results: list[dict], references: list[dict], budget: float) -> str:
    lines = ["| run | examples/step | execution (over the defaults) | tokens/s (real) | step s | tokens/step | "
             f"loop peak reserved GiB | preflight peak GiB | checkpointed layers | <= {budget} GiB | process s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in references:
        lines.append(f"| {r['reference']} | | | {r['tokens_per_s']:,} | | | {r['peak_reserved_gib']} | | | "
                     f"{'yes' if r['peak_reserved_gib'] <= budget else 'NO'} | |")
    for r in results:
        execution = VARIANTS[r["variant"]][3]
        ex = ", ".join(f"{k}={v}" for k, v in execution.items())
        per_step = r["train"]["batch_size"] * r["train"]["grad_accum"]
        if r["rc"] != 0:
            lines.append(f"| {r['variant']} | {per_step} | {ex} | failed: {r['error'][:300]} | | | | | | | "
                         f"{r['wall_s']} |")
            continue
        pre, peak = r["preflight"], r["peak_reserved_gib"]
        fits = "yes" if max(peak or 0, pre.get("peak_reserved_gib") or 0) <= budget else "NO"  # CPU: no peaks
        lines.append(f"| {r['variant']} | {per_step} | {ex} | {r['tokens_per_s']:,} | {r['step_s']} | "
                     f"{r['tokens_per_step']} | {peak} | {pre.get('peak_reserved_gib', '-')} | "
                     f"{pre.get('checkpoint_layers', '-')} | {fits} | {r['wall_s']} |")
    return "\n".join(lines)


def profile_table(profiles: dict) -> str:
    lines = ["| profiled variant | step s (timed, profiled) | tokens/s | CPU op s | GPU kernel s | GPU busy | "
             "kernel launches | host waits | GPU idle ms a step (host's, device's) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, p in profiles.items():
        if "error" in p:
            lines.append(f"| {label} | failed: {p['error'][-300:]} | | | | | | | |")
            continue
        lines.append(f"| {label} | {p['step_s']}, {p['profiled_step_s']} | {p['tokens_per_s']:,} | {p['cpu_op_s']} | "
                     f"{p['gpu_kernel_s']} | {p['gpu_busy']} | {p['kernel_launches']:,} | {p['host_waits']} | "
                     + (f"{i['idle_ms']} ({i['host_ms']}, {i['device_ms']}) |" if (i := p.get("idle")) else "- |"))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/qslm-train-bench"))
    parser.add_argument("--variants", default=DEFAULT, help=f"of: {', '.join(VARIANTS)}")
    parser.add_argument("--profile", default="", help="variants to profile first, in this process (NAME,...)")
    parser.add_argument("--baselines", type=Path, help="folder of qlora_baseline.py and fastpath_probe.py")
    parser.add_argument("--trainer-steps", type=int, default=20, help="timed steps of the Trainer baseline")
    parser.add_argument("--timeout-s", type=float, default=150, help="per variant")
    parser.add_argument("--budget-s", type=float, default=0, help="the whole call's seconds (0: no limit)")
    parser.add_argument("--no-packing-check", action="store_true", help="leave out the packed-vs-padded step")
    args = parser.parse_args()
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.variants.split(",") if n]  # none: --profile alone
    model_dir = build_model(args.work)
    per_run = [variant_spec(n)["train"] for n in names + [n for n in args.profile.split(",") if n]]  # every run's steps x examples per step, one dataset
    dataset = build_dataset(args.work, n=max(t["max_steps"] * t["batch_size"] * t["grad_accum"] for t in per_run))
    budget = spec_by_tag("v1").train.memory_budget_gib
    done = {"profiles": {}, "variants": [], "references": [], "packing_check": None}

    def save(what) -> None:
        print(f"[{time.perf_counter() - start:.0f} s] {json.dumps(what, default=str)[:1500]}", flush=True)
        (args.out / "results.json").write_text(json.dumps({**done, "loss_gap": loss_gap(done["variants"])},
                                                          indent=1, default=str))

    for label in [n for n in args.profile.split(",") if n]:
        done["profiles"][label] = profile_run(label, args.work, model_dir, dataset, args.out / f"profile-{label}.txt")
        save({label: done["profiles"][label]})
    with open(args.out / "runs.log", "w") as log:
        for name in names:
            left = args.budget_s - RESERVE_S - (time.perf_counter() - start) if args.budget_s else args.timeout_s
            if left < 30:
                print(f"{name}: not started, {left:.0f} s left of --budget-s before the baselines", flush=True)
                continue
            done["variants"].append(run_variant(name, args.work, model_dir, dataset, min(args.timeout_s, left), log))
            log.flush()
            save({k: v for k, v in done["variants"][-1].items() if k not in ("versions", "losses", "train")})
        if args.baselines:
            done["references"] = baselines(args.baselines, args.work, model_dir, log, args.trainer_steps)
            save(done["references"])
    done["packing_check"] = None if args.no_packing_check else packing_check(model_dir, dataset)
    save({"packing check": done["packing_check"]})
    ok = next((r for r in done["variants"] if r["rc"] == 0), {})
    text = (f"GPU: {ok.get('gpu')} | versions: {json.dumps(ok.get('versions', {}))}\n"
            f"data: {json.dumps(ok.get('data', {}))}\npacking check: {json.dumps(done['packing_check'])}\n"
            f"loss curves: {json.dumps(loss_gap(done['variants']))}\n\n"
            + profile_table(done["profiles"]) + "\n\n" + table(done["variants"], done["references"], budget))
    (args.out / "table.md").write_text(text + "\n")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
