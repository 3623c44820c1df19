"""Dataset statistics (stats.json) and the human summary printed at the end of a curate run."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from jobs.curate.blocks import CurateError

TOKEN_BINS = [32, 64, 128, 256, 512, 1024, 2048, 4096]  # upper edges, tokens per chat-formatted example
DISPLAY_MATH = re.compile(r"^\$\$$", re.M)
INLINE_MATH = re.compile(r"(?<![$\\])\$[^$\n]+\$(?!\$)")


def chat_renderer(model_dir: Path):
    """messages -> the text training sees: the model's own chat template (tokenizer_config.json) when it has
    one, else ChatML, which is what Qwen2.5's template produces apart from its default system line."""
    config = model_dir / "tokenizer_config.json"
    template = json.loads(config.read_text()).get("chat_template") if config.is_file() else None
    if template:
        import jinja2

        compiled = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(template)
        return lambda messages: compiled.render(messages=messages, add_generation_prompt=False)
    return lambda messages: "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


def token_lengths(rows: list[dict], model_dir: Path) -> list[int]:
    from tokenizers import Tokenizer

    tok_file = model_dir / "tokenizer.json"
    if not tok_file.is_file():
        raise CurateError(f"{model_dir} has no tokenizer.json; the base model folder must hold the "
                          f"tokenizer (save it with tokenizer.save_pretrained)")
    tok = Tokenizer.from_file(str(tok_file))
    render = chat_renderer(model_dir)
    return [len(e.ids) for e in tok.encode_batch([render(r["messages"]) for r in rows], add_special_tokens=False)]


def histogram(lengths: list[int]) -> dict:
    bins, lower = {}, 0
    for edge in TOKEN_BINS:
        bins[f"{lower}-{edge - 1}"] = sum(lower <= n < edge for n in lengths)
        lower = edge
    bins[f">={lower}"] = sum(n >= lower for n in lengths)
    s = sorted(lengths)
    pct = (lambda q: s[min(len(s) - 1, int(q * len(s)))]) if s else (lambda q: 0)
    return {"bins": bins, "count": len(s), "min": s[0] if s else 0, "max": s[-1] if s else 0,
            "mean": round(sum(s) / len(s), 2) if s else 0.0, "p50": pct(0.5), "p95": pct(0.95)}


def math_counts(texts: list[str]) -> dict:
    display = sum(len(DISPLAY_MATH.findall(t)) // 2 for t in texts)
    return {"display": display, "inline": sum(len(INLINE_MATH.findall(t)) for t in texts)}


def keyword_coverage(keywords: tuple[str, ...], kept, rows: list[dict]) -> dict:
    par = Counter(k for s in kept for k in s.keywords)
    ex = Counter(k for r in rows for k in r["keywords"])
    return {k: {"paragraphs": par.get(k, 0), "examples": ex.get(k, 0)} for k in sorted(keywords, key=str.lower)}


# Below this many training examples a build learns little (12 optimizer steps of 4 examples): say so, with the fix.
MIN_TRAIN_EXAMPLES = 50


def summary(stats: dict, out: Path, seconds: float, dataset_sha256: str) -> str:
    d, p, e = stats["documents"], stats["paragraphs"], stats["examples"]
    missing = [k for k, v in stats["keyword_coverage"].items() if not v["paragraphs"]]
    lines = [
        f"curate: {d['count']} documents ({', '.join(f'{n} {f}' for f, n in sorted(d['by_format'].items()))}), "
        f"{d['files']} files, {d['bytes'] / 1e6:.2f} MB in {seconds:.1f} s",
        f"  paragraphs: {p['seen']} seen, {p['selected']} selected, {p['kept']} kept after "
        f"{p['duplicates_removed']} duplicates",
        "  selected by: " + (", ".join(f"{k[len('selected_'):]} {n}" for k, n in sorted(p["decisions"].items())
                                       if k.startswith("selected_")) or "nothing")
        + f"; semantic selection {p['semantic_selection']}",
        f"  examples:   {e['train']} train, {e['eval']} eval; templates: "
        + ", ".join(f"{t} {n}" for t, n in sorted(e["by_template"].items())),
        f"  held out:   by {stats['split']['by']}: {stats['split']['note']}",
        f"  removed:    {e['duplicates_removed']} duplicate examples, {e['leakage_removed']} near copies of eval "
        f"questions/answers (suites: {', '.join(e['leakage_suites'])}), {e['capped']} over max_examples",
        f"  tokens:     mean {stats['tokens']['mean']}, p95 {stats['tokens']['p95']}, max {stats['tokens']['max']} "
        f"({stats['tokens']['tokenizer']})",
        f"  equations:  {stats['equations']['examples']['display']} display, "
        f"{stats['equations']['examples']['inline']} inline in examples",
    ]
    for x in e["leakage"][:5]:
        lines.append(f"  leakage:    removed example {x['id']} of {x['paragraph_ids'][0]}: it nearly copies the "
                     f"{x['field']} of {x['suite']}/{x['eval_question']} (overlap {x['overlap']})")
    if e["train"] < MIN_TRAIN_EXAMPLES:
        lines.append(f"  warning: only {e['train']} training examples (fewer than {MIN_TRAIN_EXAMPLES}): the adapter "
                     f"will learn little. Lower curate.min_paragraph_chars, add keywords or documents, or turn on "
                     f"synthesis (a synthesize: section, see data/builds/v2.yaml)")
    if missing:
        lines.append(f"  keywords with no paragraph: {', '.join(missing)}")
    if d["skipped"]:
        lines.append(f"  SKIPPED {len(d['skipped'])} bad input file(s):")
        lines += [f"    {s['path']}: {s['reason']}" for s in d["skipped"]]
    for w in d["warnings"]:
        lines.append(f"  warning: {w}")
    lines.append(f"  wrote {out} (dataset sha256 {dataset_sha256[:16]}...)")
    return "\n".join(lines)
