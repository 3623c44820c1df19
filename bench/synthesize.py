"""Synthesis speed on a GPU: a spec's synthesis (v2's settings, the engine writer) of a corpus, with the engine's
calls counted: requests, new tokens, tokens/s, and an RTX A2000 estimate from the bytes each decode step reads
(as bench/eval.py estimates generation).

    python -m bench.synthesize --out DIR --sources ../shared/corpus [--tag rehearsal] [--max-paragraphs 40]

Curate runs first (its own command, over --sources), then the stage in this process on the first --max-paragraphs
training paragraphs (0: all) with an empty synthesis cache, so every reply is generated. Minutes for the whole
corpus are extrapolated per paragraph from the measured ones (said so in the table). A random base writes no
end-of-turn, so each free-text request runs to synthesize.max_new_tokens: the token count is the worst case.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from jobs.core.repo import REPO_ROOT
from jobs.core.spec.load import spec_by_tag

A2000_BYTES_PER_S = 288e9  # RTX A2000 12 GB memory bandwidth (datasheet); bench/eval.py's figure


def count_engine_calls(counts: dict) -> None:
    """Wrap Engine.complete_ids (free text) and Engine.nll (the choices) to count rows, new tokens, seconds and
    the bytes each decode step reads."""
    import torch

    from jobs.core.engine import generation as engine_module
    from jobs.core.engine import fastgen

    complete, nll = engine_module.Engine.complete_ids, engine_module.Engine.nll

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def complete_ids(self, prompts, adapter, sampling, names=None):
        sync()
        t = time.perf_counter()
        out = complete(self, prompts, adapter, sampling, names)
        sync()
        seconds = time.perf_counter() - t
        steps = max(map(len, out), default=0)
        counts["calls"] += 1
        counts["rows"] += len(prompts)
        counts["new_tokens"] += sum(map(len, out))
        counts["generate_s"] += seconds
        counts["decode_steps"] += steps
        counts["compile_s"] = self.compile_seconds
        if hasattr(self._backend, "bytes_read") and prompts:
            length = fastgen._cache_length(max(map(len, prompts)) + sampling.max_new_tokens)
            counts["step_bytes"] += steps * self._backend.bytes_read(fastgen._bucket(len(prompts)), length)
        return out

    def timed_nll(self, texts, adapter):
        t = time.perf_counter()
        out = nll(self, texts, adapter)
        counts["choice_texts"] += len(texts)
        counts["choice_s"] += time.perf_counter() - t
        return out

    engine_module.Engine.complete_ids, engine_module.Engine.nll = complete_ids, timed_nll


def copy_bandwidth() -> float:
    """Device-to-device copy rate here, bytes read + written per second (as bench/eval.py measures it)."""
    import torch

    x = torch.empty(2 ** 30, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    y.copy_(x)
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(10):
        y.copy_(x)
    torch.cuda.synchronize()
    return 2 * 10 * x.numel() / (time.perf_counter() - t)


def run(tag: str, sources: Path, out: Path, max_paragraphs: int) -> dict:
    from jobs.synthesize.run import read_curated, synthesize, training_paragraphs

    spec = spec_by_tag(tag)
    work = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    env = {**os.environ, "QSLM_DATA_ROOT": str(sources.resolve()), "QSLM_STORE": str(work / "store")}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jobs.curate", "--spec", spec.source_file, "--sources", str(sources),
                    "--out", str(work / "curated")], cwd=REPO_ROOT, env=env, check=True)
    curate_s = time.perf_counter() - t
    uncapped = dataclasses.replace(spec, synthesize=dataclasses.replace(spec.synthesize, max_paragraphs=None))
    everything = training_paragraphs(uncapped, read_curated(work / "curated")["paragraphs"])
    capped = dataclasses.replace(spec, synthesize=dataclasses.replace(spec.synthesize,
                                                                      max_paragraphs=max_paragraphs or None))
    os.environ["QSLM_STORE"] = env["QSLM_STORE"]  # an empty cache: every reply is generated
    counts = dict.fromkeys(("calls", "rows", "new_tokens", "generate_s", "decode_steps", "compile_s", "step_bytes",
                            "choice_texts", "choice_s"), 0)
    count_engine_calls(counts)
    t = time.perf_counter()
    synthesize(capped, work / "curated", work / "dataset")
    seconds = time.perf_counter() - t
    info = json.loads((work / "dataset" / "synthesize-info.json").read_text())
    done = min(len(everything), max_paragraphs or len(everything))
    gen = counts["generate_s"] - counts["compile_s"]
    # The A2000 reads the same bytes per step at 288 GB/s and keeps this card's fixed cost per step (launches, host):
    # the measured decode time beyond what its bytes take at the bandwidth measured here.
    overhead = max(0.0, gen - counts["step_bytes"] / copy_bandwidth()) if counts["step_bytes"] else gen
    a2000_s = counts["step_bytes"] / A2000_BYTES_PER_S + overhead
    r = {"corpus": str(sources), "curate_s": round(curate_s, 1), "training_paragraphs": len(everything),
         "paragraphs_synthesized": done, "requests": info["calls"]["requests"], "stage_s": round(seconds, 1),
         **{k: round(v, 2) if isinstance(v, float) else v for k, v in counts.items()},
         "new_tokens_per_s": round(counts["new_tokens"] / gen, 1) if gen > 0 else None,
         "a2000_generate_s_estimate": round(a2000_s, 1),
         "whole_corpus_minutes_estimate": round(seconds * len(everything) / max(done, 1) / 60, 1),
         "whole_corpus_a2000_minutes_estimate": round(
             (seconds - counts["generate_s"] + a2000_s) * len(everything) / max(done, 1) / 60, 1)}
    (out / "synthesis.json").write_text(json.dumps(r, indent=2))
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Synthesis speed on a GPU (module docstring).")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sources", type=Path, required=True, help="the corpus folder (e.g. ../shared/corpus)")
    p.add_argument("--tag", default="rehearsal")
    p.add_argument("--max-paragraphs", type=int, default=40, help="training paragraphs synthesized (0: all)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    r = run(args.tag, args.sources, args.out, args.max_paragraphs)
    print(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
