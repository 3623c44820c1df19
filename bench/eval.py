"""python -m bench.eval --out DIR [--work DIR] [--new-tokens 256] [--repeats 2] [--smoke]

GPU benchmark of generation: the eval suite (39 questions) on a random Qwen2.5-1.5B-shaped model with a random LoRA
(r16 / alpha 32 on q/k/v/o, B non-zero), loaded as the v1 spec says (4-bit NF4, float16 compute), every answer forced
to --new-tokens (a random model never stops by itself). One process, so one card in one call:
  baseline   plain transformers generate on the 4-bit base + peft, no engine code: the suite at batch 39; batch 1
  fast       the engine's gpu-fast path (compiled layers in CUDA graphs): the suite with the adapter, the suite with
             the base (adapter switched off in place), one stream at batch 1; compile time apart; peak memory
  eager      the same path with eager kernels in the graphs (compile_layers=False)
  agreement  the fast path's logits on its first decode steps against the 4-bit path's on the same tokens
  fallback   the engine under a 3 GiB memory budget: it must choose the 4-bit path and say why
  lora       applying LoRA unmerged (two small matmuls per target per step) against the exact merge switch
  A2000      an estimate from the bytes each step reads (weights + KV cache), not a measurement
Prints a table (docs/benchmarks.md takes it by hand) and writes DIR/results.json and DIR/table.md.
--smoke runs the same steps on the CPU with the smoke spec's tiny model: it checks the script, its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import time
from pathlib import Path

from bench.benchmodel import build_model
from jobs.core.engine.generation import Engine, EngineSettings, Sampling
from jobs.core.spec.load import spec_by_tag
from jobs.core.spec.suite import load_suite
from jobs.eval.generate import conversations

A2000_BYTES_PER_S = 288e9  # RTX A2000 12 GB memory bandwidth (datasheet)
AGREEMENT_STEPS = 8  # first decode steps whose logits are compared with the 4-bit path (fast path keeps <= 8)
TOLERANCE = 1e-2  # relative L2 error of float16 logits allowed at each compared step
BASELINE_STREAM_TOKENS = 64  # plain generate at batch 1 runs ~15 tokens/s: 64 tokens keep the call short


DEVICE = "cuda"  # "cpu" with --smoke


def _cuda() -> bool:
    return DEVICE == "cuda"


def timed(fn):
    import torch

    if _cuda():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if _cuda():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def free() -> None:
    import torch

    gc.collect()
    if _cuda():
        torch.cuda.empty_cache()


def reset_peak() -> None:
    import torch

    if _cuda():
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    import torch

    return torch.cuda.max_memory_reserved() / 2 ** 30 if _cuda() else float("nan")


def make_adapter(model_dir: Path, work: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = work / "adapter"
    if not (out / "adapter_config.json").is_file():
        torch.manual_seed(1)
        base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map={"": DEVICE})
        lora = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                          init_lora_weights=False, task_type="CAUSAL_LM")
        get_peft_model(base, lora).save_pretrained(str(out))
        del base
        free()
    return out


def baseline(spec, model_dir: Path, adapter: Path, prompts: list[list[int]], pad: int, new_tokens: int) -> dict:
    """Plain transformers generate on the 4-bit base + peft (the loading is the spec's; the rest is stock)."""
    import torch

    from jobs.core.engine.loading import load_adapter, load_base

    model = load_adapter(load_base(spec, model_dir, torch.device(DEVICE)), adapter, "adapter").eval()

    def run(batch, tokens):
        width = max(map(len, batch))
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch], device=DEVICE)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch], device=DEVICE)
        return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens,
                              do_sample=False, pad_token_id=pad)

    with torch.inference_mode():
        run(prompts[:2], 4)  # warm-up: bitsandbytes and cuBLAS initialisation
        reset_peak()
        _, suite_s = timed(lambda: run(prompts, new_tokens))
        _, one_s = timed(lambda: run(prompts[:1], BASELINE_STREAM_TOKENS))
    r = {"suite": rate(len(prompts) * new_tokens, suite_s), "batch1": rate(BASELINE_STREAM_TOKENS, one_s),
         "peak_reserved_gib": peak_gib()}
    del model
    free()
    return r


def rate(tokens: int, seconds: float) -> dict:
    return {"new_tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def fast(spec, adapter: Path, chats: list, new_tokens: int, repeats: int, compile_layers: bool) -> dict:
    """The engine's fast path: load, warm-up (compile + capture), then the timed calls; best of `repeats`."""
    reset_peak()
    settings = EngineSettings(device=DEVICE, memory_budget_gib=spec.train.memory_budget_gib, fast=True,
                              compile_layers=compile_layers)
    engine, load_s = timed(lambda: Engine.load(spec, {"adapter": adapter}, settings))
    forced = Sampling(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    r = {"path": engine.path, "note": engine.path_note, "load_s": load_s}
    _, r["warmup_s"] = timed(lambda: (engine.chat(chats, "adapter", forced), engine.chat(chats, None, forced),
                                      list(engine.stream(chats[0], "adapter", forced))))
    r["compile_s"] = engine.compile_seconds  # compile + graph capture, inside the warm-up
    for name, which in (("adapter", "adapter"), ("base", None)):
        runs = [timed(lambda: engine.chat(chats, which, forced)) for _ in range(repeats)]
        answers, seconds = min(runs, key=lambda x: x[1])
        r[name] = rate(sum(g.new_tokens for g in answers), seconds)
    streams = []
    for _ in range(repeats):
        start, first = time.perf_counter(), None
        for chunk in engine.stream(chats[0], "adapter", forced):
            first = first or time.perf_counter()
        streams.append((time.perf_counter() - start, first - start, chunk.generation.new_tokens))
    seconds, first_s, tokens = min(streams)
    r["stream"] = rate(tokens, seconds) | {"first_chunk_s": first_s}
    backend = engine._backend  # the bench reads the fast path's internals: switch time, bytes per step, logits
    _, r["switch_s"] = timed(lambda: (backend.use(None), backend.use("adapter")))
    length = max(k[1] for k in backend.sessions)
    r["bytes_per_step"] = {"suite": backend.bytes_read(64, length), "stream": backend.bytes_read(1, length),
                           "cache_length": length}
    r["peak_reserved_gib"] = peak_gib()
    prompts = engine.prompt_ids(chats)
    r["compaction"] = compaction(backend, prompts, engine.tokenizer)
    r["trace"] = {which: engine.trace(chats, which, AGREEMENT_STEPS) for which in ("adapter", None)}
    del engine, backend
    free()
    return r


def compaction(backend, prompts: list[list[int]], tokenizer, steps: int = 64) -> dict:
    """Rows that end at different steps (stop tokens picked from the unstopped answers) leave the batch, which
    shrinks through smaller graphs; the rows that carry on must continue their unstopped answers. A broken cache
    move would make them diverge at once; float differences between batch shapes can flip a near-tie late."""
    unstopped = backend.generate(prompts, "adapter", Sampling(max_new_tokens=steps), [], tokenizer)
    stops = sorted({unstopped[i][8 + (5 * i) % (steps - 16)] for i in range(0, len(unstopped), 3)})
    cut = [ids[:next((k + 1 for k, t in enumerate(ids) if t in stops), len(ids))] for ids in unstopped]
    got = backend.generate(prompts, "adapter", Sampling(max_new_tokens=steps), stops, tokenizer)
    return {"rows": len(unstopped), "identical": sum(g[:len(c)] == c for g, c in zip(got, cut)),
            "ended_early": sum(len(c) < steps for c in cut), "steps": steps}


def agreement(spec, adapter: Path, chats: list, trace: dict) -> dict:
    """The fast path's logits on its first decode steps against the 4-bit path's (the exact engine, transformers +
    peft) on the same tokens: relative L2 error per step, and how often the top token agrees."""
    from jobs.core.engine.generation import agreement as compare

    reference = Engine.load(spec, {"adapter": adapter}, EngineSettings(device=DEVICE, fast=False))
    r = {}
    for which in ("adapter", None):
        a = compare(trace[which], reference, chats, which)
        r[which or "base"] = a | {"within_tolerance": a["max_rel_l2"] <= TOLERANCE}
    del reference
    free()
    return r


def lora_unmerged_step_s(rows: int, layers: int = 28, r: int = 16) -> float:
    """Seconds per decode step that applying a q/k/v/o LoRA unmerged would add: y += (x @ A^T) @ B^T for 4 targets
    in every layer, replayed from a CUDA graph (the engine merges instead)."""
    import torch

    if not _cuda():
        return float("nan")
    shapes = [(1536, 1536), (256, 1536), (256, 1536), (1536, 1536)]  # (out, in) of q, k, v, o
    x = torch.randn(rows, 1536, dtype=torch.float16, device="cuda")
    mats = [(torch.randn(r, i, dtype=torch.float16, device="cuda") / 40, torch.randn(o, r, dtype=torch.float16,
             device="cuda") / 4, torch.zeros(rows, o, dtype=torch.float16, device="cuda")) for o, i in shapes]

    def step():
        for _ in range(layers):
            for a, b, y in mats:
                y.add_((x @ a.t()) @ b.t())

    step()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    _, seconds = timed(lambda: [graph.replay() for _ in range(200)])
    return seconds / 200


def copy_bandwidth() -> float:
    """Device-to-device copy rate, bytes read + written per second (the card's practical bandwidth)."""
    import torch

    if not _cuda():
        return float("nan")
    a, b = (torch.empty(1 << 30, dtype=torch.uint8, device="cuda") for _ in range(2))
    b.copy_(a)
    _, seconds = timed(lambda: [b.copy_(a) for _ in range(10)])
    return 2 * 10 * a.numel() / seconds


def a2000(row: dict, rows: int, per_row_tokens: int, step_bytes: int, bandwidth: float) -> dict:
    """Estimate: the A2000 reads the same bytes per step at 288 GB/s, and keeps the H200's fixed overhead
    (launches, host) measured here as the step time beyond the H200's own bytes / bandwidth."""
    step = row["seconds"] / per_row_tokens
    overhead = max(0.0, step - step_bytes / bandwidth)
    est = step_bytes / A2000_BYTES_PER_S + overhead
    return {"h200_step_ms": 1e3 * step, "bytes_per_step": step_bytes, "a2000_step_ms": 1e3 * est,
            "a2000_tokens_per_s": rows / est}


def phase(results: dict, name: str, fn) -> None:
    """Run one measurement; a failure is recorded (with its traceback printed) and the others still run."""
    import traceback

    start = time.perf_counter()
    print(f"bench: {name} ...", flush=True)
    try:
        results[name] = fn()
    except Exception as exc:  # a benchmark keeps the rows it has: one broken variant must not cost the call
        traceback.print_exc()
        results[name] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
        free()
    shown = {k: v for k, v in results[name].items() if k != "trace"}
    print(f"bench: {name} done in {time.perf_counter() - start:.1f} s: {json.dumps(shown, default=str)}", flush=True)


def table(r: dict) -> str:
    lines = ["| path | what | new tokens | seconds | new tokens/s | peak reserved GiB |",
             "|---|---|---:|---:|---:|---:|"]

    def row(path, what, part, key, peak=None):
        x = r.get(part, {}).get(key)
        if x is None:
            lines.append(f"| {path} | {what} | failed: {r.get(part, {}).get('error', 'not run')} | | | |")
            return
        gib = "" if peak is None else f"{r[part][peak]:.2f}"
        lines.append(f"| {path} | {what} | {x['new_tokens']:,} | {x['seconds']:.2f} | {x['tokens_per_s']:,.0f} | {gib} |")

    n = r["questions"]
    row("transformers NF4 + peft generate", f"suite: {n} questions at once, adapter", "baseline", "suite",
        "peak_reserved_gib")
    row("transformers NF4 + peft generate", "one question (batch 1)", "baseline", "batch1")
    for part, name in (("fast", "gpu-fast (compiled layers)"), ("eager", "gpu-fast, eager kernels in the graphs")):
        row(name, "suite, adapter", part, "adapter", "peak_reserved_gib")
        row(name, "suite, base (adapter switched off)", part, "base")
        row(name, "one stream (batch 1), adapter", part, "stream")
    f, e = r.get("fast", {}), r.get("eager", {})
    notes = [f"- compile + graph capture: {f.get('compile_s', float('nan')):.1f} s (warm-up wall "
             f"{f.get('warmup_s', float('nan')):.1f} s, load {f.get('load_s', float('nan')):.1f} s); eager graphs: "
             f"capture {e.get('compile_s', float('nan')):.1f} s; first stream chunk after "
             f"{1e3 * f.get('stream', {}).get('first_chunk_s', float('nan')):.0f} ms"]
    for which, a in r.get("agreement", {}).items():
        if "error" in r["agreement"]:
            notes.append(f"- agreement: failed: {r['agreement']['error']}")
            break
        notes.append(f"- logits vs the 4-bit path, {which}, first {AGREEMENT_STEPS} steps x {n}: relative L2 max "
                     f"{a['max_rel_l2']:.2e}, median {a['median_rel_l2']:.2e} (tolerance {TOLERANCE:g}: "
                     f"{'within' if a['within_tolerance'] else 'OUTSIDE'}); top-1 agrees {100 * a['top1_agree']:.0f}%, "
                     f"in the reference's top 5 {100 * a['top1_in_ref_top5']:.0f}%")
    c = f.get("compaction")
    if c:
        notes.append(f"- compaction check: {c['ended_early']} of {c['rows']} rows ended early on chosen stop tokens; "
                     f"{c['identical']} of {c['rows']} answers equal their unstopped answers up to the stop")
    lora = r.get("lora", {})
    notes.append(f"- LoRA unmerged would add {lora.get('unmerged_step_ms', float('nan')):.3f} ms per step at batch "
                 f"{n}; the exact merge switch (base and back) took {lora.get('merge_switch_ms', float('nan')):.1f} ms")
    fb = r.get("fallback", {})
    notes.append(f"- under a {fb.get('budget_gib', 3.0)} GiB budget the engine chose {fb.get('path', fb.get('error'))}: "
                 f"{fb.get('note', '')}")
    for key, x in r.get("a2000", {}).items():
        notes.append(f"- A2000 ESTIMATE ({key}): {x['bytes_per_step'] / 1e9:.2f} GB read per step, "
                     f"{x['a2000_step_ms']:.2f} ms per step (H200 measured {x['h200_step_ms']:.2f} ms) -> about "
                     f"{x['a2000_tokens_per_s']:,.0f} new tokens/s")
    return "\n".join(lines + [""] + notes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.eval", description=__doc__.split("\n\n")[1])
    p.add_argument("--out", type=Path, required=True, help="folder for results.json and table.md")
    p.add_argument("--work", type=Path, default=Path("/tmp/qslm-eval-bench"), help="model and adapter folder")
    p.add_argument("--new-tokens", type=int, default=256, help="every answer forced to this length")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per row; the fastest is reported")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model, smoke spec: checks the script only")
    args = p.parse_args(argv)
    import torch

    from jobs.core.engine.generation import chat_prompt_ids
    from jobs.core.engine.loading import load_tokenizer
    from jobs.core.engine.basemodel import resolve_base_model
    from jobs.core.store.provenance import library_versions

    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    global DEVICE
    DEVICE = "cpu" if args.smoke else "cuda"
    spec = spec_by_tag("smoke" if args.smoke else "v1")
    model_dir = resolve_base_model(spec) if args.smoke else build_model(args.work)
    os.environ["QSLM_BASE_MODEL"] = str(model_dir)  # the v1 spec then loads the random model
    adapter = make_adapter(model_dir, args.work)
    chats = conversations([q.question for q in load_suite(spec.eval.suite).questions], None)
    tokenizer = load_tokenizer(model_dir)
    prompts = chat_prompt_ids(tokenizer, chats)
    r = {"card": torch.cuda.get_device_name() if _cuda() else "CPU (--smoke)", "versions": library_versions(), "questions": len(chats),
         "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "new_tokens": args.new_tokens,
         "prompt_tokens": [min(map(len, prompts)), max(map(len, prompts))], "bandwidth": copy_bandwidth()}
    phase(r, "baseline", lambda: baseline(spec, model_dir, adapter, prompts, tokenizer.pad_token_id, args.new_tokens))
    phase(r, "fast", lambda: fast(spec, adapter, chats, args.new_tokens, args.repeats, True))
    phase(r, "eager", lambda: fast(spec, adapter, chats, args.new_tokens, args.repeats, False))
    trace = r["fast"].pop("trace", None)
    r["eager"].pop("trace", None)
    if trace:
        phase(r, "agreement", lambda: agreement(spec, adapter, chats, trace))
    phase(r, "lora", lambda: {"unmerged_step_ms": 1e3 * lora_unmerged_step_s(len(chats)),
                              "merge_switch_ms": 1e3 * r["fast"].get("switch_s", float("nan"))})
    small = dataclasses.replace(spec, train=dataclasses.replace(spec.train, memory_budget_gib=3.0))
    phase(r, "fallback", lambda: fallback(small, adapter))
    if "adapter" in r["fast"]:
        steps = r["fast"]["bytes_per_step"]
        r["a2000"] = {"suite": a2000(r["fast"]["adapter"], len(chats), args.new_tokens, steps["suite"], r["bandwidth"]),
                      "stream": a2000(r["fast"]["stream"], 1, args.new_tokens, steps["stream"], r["bandwidth"])}
    r["seconds"] = time.perf_counter() - start
    text = (f"{r['card']}, {r['date']}, torch {r['versions'].get('torch')}, transformers "
            f"{r['versions'].get('transformers')}, peft {r['versions'].get('peft')}, bitsandbytes "
            f"{r['versions'].get('bitsandbytes')}; copy bandwidth {r['bandwidth'] / 1e12:.2f} TB/s; prompts "
            f"{r['prompt_tokens'][0]}-{r['prompt_tokens'][1]} tokens; {r['seconds']:.0f} s in all\n\n" + table(r))
    (args.out / "results.json").write_text(json.dumps(r, indent=2, default=str) + "\n")
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    return 0


def fallback(spec, adapter: Path) -> dict:
    engine = Engine.load(spec, {"adapter": adapter}, EngineSettings(device=DEVICE, batch_size=spec.eval.batch_size,
                                                                   memory_budget_gib=spec.train.memory_budget_gib))
    r = {"budget_gib": spec.train.memory_budget_gib, "path": engine.path, "note": engine.path_note}
    del engine
    free()
    return r


if __name__ == "__main__":
    raise SystemExit(main())
