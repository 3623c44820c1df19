"""python -m bench.arms --prompts FILE (--write --index INDEX_DIR [--k 4] | --out DIR [--new-tokens 256])

What retrieval costs in generation: the eval suite answered by the four arms on the GPU with the random
Qwen2.5-1.5B-shaped model of bench/eval.py (NF4 base, random LoRA, the engine's default path), every answer
forced to --new-tokens. --write (here, where the index and its embedders are) writes FILE: each question plain and
in the retrieval layout with its top --k passages (jobs/core/retrieval/rag.py); the GPU run reads FILE, so the device needs no
embedder. Prints prompt tokens and new tokens/s per arm; the best of 2 timed runs after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from jobs.core.spec.metrics import ARMS


def write_prompts(index_dir: Path, k: int, path: Path) -> None:
    from jobs.core.retrieval.rag import user_turn
    from jobs.core.retrieval.hybrid import Index
    from jobs.core.spec.suite import load_suite

    index = Index.load(index_dir)
    questions = [q.question for q in load_suite("data/eval/core.yaml").questions]
    rows = [{"plain": q, "retrieval": user_turn(q, [h.passage for h in index.search(q, k)])} for q in questions]
    path.write_text(json.dumps({"k": k, "index": str(index_dir), "rows": rows}, indent=1))


def run(path: Path, out: Path, new_tokens: int) -> dict:
    import torch

    from bench.benchmodel import build_model
    from jobs.core.engine.generation import Engine, EngineSettings, Sampling
    from jobs.core.spec.load import spec_by_tag
    from bench.eval import make_adapter

    work = Path("/tmp/qslm-arms-bench")
    work.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(work)
    os.environ["QSLM_BASE_MODEL"] = str(model_dir)
    adapter = make_adapter(model_dir, work)
    spec = spec_by_tag("v1")
    engine = Engine.load(spec, {"adapter": adapter}, EngineSettings(device="cuda", batch_size=spec.eval.batch_size,
                                                                   memory_budget_gib=spec.train.memory_budget_gib))
    rows = json.loads(path.read_text())["rows"]
    chats = {kind: [[{"role": "user", "content": r[kind]}] for r in rows] for kind in ("plain", "retrieval")}
    forced = Sampling(max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    result = {"card": torch.cuda.get_device_name(), "path": engine.path, "questions": len(rows),
              "new_tokens": new_tokens, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for kind, conv in chats.items():
        ids = engine.prompt_ids(conv)
        result[f"prompt_tokens_{kind}"] = sum(map(len, ids)) / len(ids)
    for arm in ARMS:
        conv = chats["retrieval" if arm.endswith("+retrieval") else "plain"]
        adapter_name = "adapter" if arm.startswith("adapter") else None
        engine.chat(conv, adapter_name, forced)  # warm-up: compile and capture for these shapes
        best = min(_timed(lambda: engine.chat(conv, adapter_name, forced)) for _ in range(2))
        result[arm] = {"seconds": best, "tokens_per_s": len(conv) * new_tokens / best}
    out.mkdir(parents=True, exist_ok=True)
    (out / "arms.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


def _timed(fn) -> float:
    import torch

    torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.arms", description=__doc__.split("\n\n")[1])
    p.add_argument("--prompts", type=Path, required=True)
    p.add_argument("--write", action="store_true", help="write the prompts file (needs --index)")
    p.add_argument("--index", type=Path)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--out", type=Path)
    p.add_argument("--new-tokens", type=int, default=256)
    args = p.parse_args(argv)
    if args.write:
        write_prompts(args.index, args.k, args.prompts)
    else:
        run(args.prompts, args.out, args.new_tokens)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
