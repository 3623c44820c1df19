"""Generation for every stage and command: one engine loads a base once and answers chats, streams, scores text.

    from jobs.core.engine.generation import Engine, EngineSettings, Sampling
    engine = Engine.load(spec, {"adapter": adapter_dir}, EngineSettings(device="cuda", batch_size=8))
    [answer] = engine.chat([[{"role": "user", "content": "What is a quantum kernel?"}]], "adapter", Sampling())
    for chunk in engine.stream(conversation, None, Sampling(temperature=0.7, seed=1)): print(chunk.text, end="")
    [(nats, tokens)] = engine.nll(["A held-out paragraph."], "adapter")

The base is loaded once, exactly as spec.train defines it (jobs/core/engine/loading.py: 4-bit NF4 or plain, in the compute
dtype), so an adapter is judged against the base it was trained on. Each adapter is attached under its name, and
adapter None is the base alone from the same weights (no reload). `engine.path` says which code answers:
  cpu-exact  transformers' own `generate` over the base as trained, with peft attaching the adapter. Greedy answers
             equal plain `generate` with peft token for token at every batch size: the reference path.
  gpu-nf4    the same code on the GPU (gpu-exact for an unquantized base): the fallback when the dequantized base
             does not fit the memory budget (EngineSettings), or the architecture is not one the fast path implements.
  gpu-fast   jobs/core/engine/fastgen.py + fastmodel.py: the NF4 base dequantized once to the compute dtype (the values
             bitsandbytes multiplies with), LoRA merged exactly, static KV cache, decode steps replayed from CUDA
             graphs. (cpu-fast, the same code without graphs, runs only when asked for: the tests use it.)
A conversation is a list of {role, content} messages, formatted with the base's chat template and its generation
prompt. A prompt longer than the model's context less max_new_tokens is refused with an EngineError that names it
(never truncated). Answers stop at the end-of-turn token, the end-of-text token or a Sampling.stop string;
Generation.text is the answer before the stop, stripped of surrounding whitespace, and the chunks of a stream
concatenate to that text before the strip.

Not thread-safe: one call at a time, and a stream counts as a call until it is exhausted or closed (a server
serializes or batches requests itself). torch is imported inside functions here; the path modules (exactgen,
fastgen, fastmodel and decoding, which the first two share) import it at the top and are imported only from here
and from each other, so jobs.core stays importable without torch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from jobs.core.errors import QslmError
from jobs.core.engine.loading import ModelError, load_adapter, load_base, load_tokenizer, pick_device
from jobs.core.engine.backend import Backend
from jobs.core.engine.basemodel import resolve_base_model
from jobs.core.spec.schema import BuildSpec

END_OF_TURN = "<|im_end|>"
END_OF_TEXT = "<|endoftext|>"  # Qwen's generation_config stops on it too; a base model may emit it instead
NLL_MAX_TOKENS = 1024  # a longer text is scored on its first 1,024 tokens (the count returned says so)


@dataclass(frozen=True)
class EngineSettings:
    """How an engine runs, chosen by its caller (eval from its spec section, serve from its flags, synthesis from
    its writer), never read from a spec section behind the caller's back."""

    device: str = "auto"  # auto (cuda when present) | cpu | cuda
    batch_size: int = 8  # conversations per generate call on the exact path
    memory_budget_gib: float = 11.5  # GPU memory the fast path may take (weights, KV cache, workspace)
    cpu_threads: int | None = None  # torch threads on a CPU; None: torch's default (every core)
    fast: bool | None = None  # None: the fast path on a GPU when it fits; True forces it (tests, on the CPU); False: exact
    compile_layers: bool = True  # torch.compile the fast path's layers inside its CUDA graphs (False: eager kernels)
    # A pool of compile worker processes (inductor's default, one per core) compiles cold kernels in parallel; a
    # process that answers one question and exits (ask) compiles in-process instead: a pool started for it would
    # import torch in every worker beside the first token and be waited for at exit (docs/benchmarks.md, cold start).
    compile_workers: bool = True


class EngineError(QslmError):
    """A request the engine cannot answer: a prompt too long for the context, an unknown adapter, bad sampling."""


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()  # extra stop strings; the chat template's end-of-turn always stops
    seed: int | None = None  # sampling seed (same seed + same request = same text)
    min_new_tokens: int = 0  # end-of-turn suppressed before this many tokens (benchmarks force the length)

    def __post_init__(self):
        if self.max_new_tokens < 1 or not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise EngineError(f"sampling: max_new_tokens {self.max_new_tokens} must be >= 1 and min_new_tokens "
                              f"{self.min_new_tokens} between 0 and it")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise EngineError(f"sampling: temperature {self.temperature} must be >= 0 and top_p {self.top_p} "
                              f"in (0, 1]")


@dataclass(frozen=True)
class Generation:
    text: str
    new_tokens: int  # generated tokens before the stop
    stopped: bool  # ended on end-of-turn / a stop string within max_new_tokens
    finish_reason: str  # "stop" | "length"


@dataclass(frozen=True)
class Chunk:
    text: str  # newly decoded text (may be "")
    generation: Generation | None  # set on the last chunk only


class Engine:
    """A loaded base (+ named adapters) and the generation path that runs it. Not thread-safe (module docstring)."""

    def __init__(self, backend, tokenizer, *, path: str, path_note: str, adapters: tuple[str, ...], context: int,
                 device: str, base_dir: Path):
        self._backend: Backend = backend
        self.tokenizer = tokenizer
        self.base_dir = base_dir  # the base model's checkpoint folder, as resolve_base_model found it
        self.path, self.path_note, self.adapters = path, path_note, adapters
        self.context, self.device = context, device
        vocab = tokenizer.get_vocab()
        self._stop_ids = sorted({vocab[t] for t in (END_OF_TURN, END_OF_TEXT) if t in vocab}
                                | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()))

    @classmethod
    def load(cls, spec: BuildSpec, adapters: dict[str, Path] | None = None,
             settings: EngineSettings = EngineSettings()) -> "Engine":
        """The base once (as spec.base_model and spec.train define it), each adapter under its name, run as
        `settings` say (device, batch size, memory budget, threads, which path)."""
        adapters = dict(adapters or {})
        fast = settings.fast
        base_dir = resolve_base_model(spec)
        tokenizer = load_tokenizer(base_dir)
        if END_OF_TURN not in tokenizer.get_vocab():
            raise ModelError(f"{base_dir}: the tokenizer has no {END_OF_TURN} token to stop answers on "
                             f"(the engine expects a Qwen2.5-style chat model)")
        dev = pick_device(settings.device)
        if dev.type == "cpu" and settings.cpu_threads:  # the tiny model decodes ~30x faster on 1 busy core
            import torch

            torch.set_num_threads(settings.cpu_threads)
        model = load_base(spec, base_dir, dev)
        for i, (name, folder) in enumerate(adapters.items()):
            if i == 0:
                model = load_adapter(model, folder, name)
            else:
                model.load_adapter(str(folder), adapter_name=name)
        model.eval()
        context = model.config.max_position_embeddings
        kind = "gpu" if dev.type == "cuda" else "cpu"
        use_fast = fast if fast is not None else kind == "gpu"
        why_not = _fast_blocker(spec, model, dev, settings.memory_budget_gib) if use_fast else None
        if fast and why_not:
            raise EngineError(f"the fast generation path cannot run here: {why_not}")
        if use_fast and not why_not:
            from jobs.core.engine import fastgen

            backend = fastgen.FastBackend.build(model, list(adapters), spec, settings.memory_budget_gib,
                                                compile_layers=settings.compile_layers,
                                                compile_workers=settings.compile_workers)
            del model
            backend.release()
            path = f"{kind}-fast"
            weights = (f"NF4 base dequantized once to {spec.train.compute_dtype} (the values bitsandbytes multiplies "
                       f"with)" if spec.train.quantization == "nf4" else f"{spec.train.compute_dtype} base")
            note = (f"{weights}, LoRA merged exactly, static KV cache"
                    f"{', decode steps replayed from CUDA graphs' if kind == 'gpu' else ''}; judged against "
                    f"transformers generate on the 4-bit base + peft (logits agreement: docs/benchmarks.md)")
        else:
            from jobs.core.engine.exactgen import ExactBackend

            backend = ExactBackend(model, tokenizer, settings.batch_size)
            path = "cpu-exact" if kind == "cpu" else "gpu-nf4" if spec.train.quantization == "nf4" else "gpu-exact"
            note = (f"transformers generate over the base as trained ({spec.train.quantization}, "
                    f"{spec.train.compute_dtype}) with peft adapters, batches of {settings.batch_size}: "
                    f"the reference path")
            if why_not:
                note += f"; the fast path was not used because {why_not}"
        return cls(backend, tokenizer, path=path, path_note=note, adapters=tuple(adapters), context=context,
                   device=str(dev), base_dir=base_dir)

    @property
    def compile_seconds(self) -> float:
        """Seconds spent compiling and capturing decode graphs so far (0 on the exact path)."""
        return self._backend.compile_seconds

    def prompt_ids(self, conversations: list[list[dict]]) -> list[list[int]]:
        """Token ids of each conversation under the chat template, with its generation prompt."""
        return chat_prompt_ids(self.tokenizer, conversations)

    def complete_ids(self, prompts: list[list[int]], adapter: str | None, sampling: Sampling,
                     names: list[str] | None = None) -> list[list[int]]:
        """New token ids per tokenized prompt, in input order, up to and including the first stop token (chat
        decodes these). A prompt longer than the context less max_new_tokens is refused, named by `names`."""
        self._check(prompts, adapter, sampling, names)
        if not prompts:
            return []
        raw = self._backend.generate(prompts, adapter, sampling, self._stop_ids, self.tokenizer)
        return [ids[:next((k + 1 for k, t in enumerate(ids) if t in self._stop_ids), len(ids))] for ids in raw]

    def _check(self, prompts: list[list[int]], adapter: str | None, sampling: Sampling,
               names: list[str] | None) -> None:
        if adapter is not None and adapter not in self.adapters:
            raise EngineError(f"adapter {adapter!r} is not loaded (loaded: {list(self.adapters) or 'none'}); "
                              f"pass one of them, or None for the base alone")
        for i, ids in enumerate(prompts):
            if len(ids) + sampling.max_new_tokens > self.context:
                name = names[i] if names else f"prompt {i}"
                raise EngineError(f"{name} is {len(ids)} tokens; with max_new_tokens {sampling.max_new_tokens} it "
                                  f"exceeds the model's context of {self.context} tokens: shorten it or lower "
                                  f"max_new_tokens")

    def chat(self, conversations: list[list[dict]], adapter: str | None, sampling: Sampling) -> list[Generation]:
        """Batched answers, in input order; adapter None = the base model alone (no reload)."""
        raw = self.complete_ids(self.prompt_ids(conversations), adapter, sampling, _names(conversations))
        return [finish(self.tokenizer, ids, self._stop_ids, sampling.stop) for ids in raw]

    def stream(self, conversation: list[dict], adapter: str | None, sampling: Sampling) -> Iterator[Chunk]:
        """One conversation token by token: text chunks, the last one carrying the Generation."""
        [prompt] = self.prompt_ids([conversation])
        self._check([prompt], adapter, sampling, _names([conversation]))
        ids, sent = [], ""
        with contextlib.closing(self._backend.stream(prompt, adapter, sampling, self._stop_ids)) as tokens:
            for token in tokens:
                ids.append(token)
                if token in self._stop_ids:
                    break
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                if stop_at(text, sampling.stop) is not None:
                    break
                safe = text[:len(text) - held_back(text, sampling.stop)]
                if len(safe) > len(sent) and safe.startswith(sent):
                    yield Chunk(safe[len(sent):], None)
                    sent = safe
        _, text, _ = cut(self.tokenizer, ids, self._stop_ids, sampling.stop)
        yield Chunk(text[len(sent):] if text.startswith(sent) else text,
                    finish(self.tokenizer, ids, self._stop_ids, sampling.stop))

    def trace(self, conversations: list[list[dict]], adapter: str | None, steps: int,
              forced: list[list[int]] | None = None) -> tuple[list[list[int]], list]:
        """Greedy: each conversation's first `steps` new token ids and their float32 logits (steps x vocab, on the
        CPU); on the exact path, `forced` tokens (another path's trace) are scored instead. The one window into a
        path's numbers: `agreement` compares two paths with it (tests, benchmarks)."""
        prompts = self.prompt_ids(conversations)
        sampling = Sampling(max_new_tokens=steps, min_new_tokens=steps)
        self._check(prompts, adapter, sampling, _names(conversations))
        return self._backend.trace(prompts, adapter, sampling, self._stop_ids, self.tokenizer, forced)

    def tokens_needed(self, conversation: list[dict], sampling: Sampling) -> int:
        """Prompt + max_new_tokens of one conversation: the tokens a batch must hold for it."""
        return len(self.prompt_ids([conversation])[0]) + sampling.max_new_tokens

    def decoder(self, rows: int, tokens: int):
        """The path's continuous-batching decoder (what jobs/core/engine/batch.py drives) for up to `rows` requests
        of at most `tokens` tokens each (prompt + answer); fewer rows on a GPU whose budget cannot hold their cache."""
        if self.path.endswith("-fast"):
            from jobs.core.engine import fastbatch

            return fastbatch.decoder(self._backend, rows, tokens, self._stop_ids)
        return self._backend.decoder(rows, tokens, self._stop_ids)

    def nll(self, texts: list[str], adapter: str | None) -> list[tuple[float, int]]:
        """(sum of next-token NLL in nats, tokens scored) per text, in order: held-out perplexity."""
        self._check([], adapter, Sampling(), None)
        encoded = [self.tokenizer(t, add_special_tokens=False, truncation=True, max_length=NLL_MAX_TOKENS)["input_ids"]
                   for t in texts]
        return self._backend.nll(encoded, adapter, self.tokenizer.pad_token_id)


def agreement(trace: tuple[list[list[int]], list], reference: "Engine", conversations: list[list[dict]],
              adapter: str | None) -> dict:
    """How closely a path's `trace` (Engine.trace of `conversations`) follows `reference`, an exact-path engine,
    teacher-forced on the traced tokens: relative L2 error per step (worst and median) and how often the top token
    agrees (a random model's top logits are nearly tied, so top-1 is the weaker test)."""
    tokens, got = trace
    _, ref = reference.trace(conversations, adapter, len(tokens[0]), forced=tokens)
    errors, top1, top5 = [], 0, 0
    for g, r in zip(got, ref):
        errors += ((g - r).norm(dim=-1) / r.norm(dim=-1)).tolist()
        top1 += int((g.argmax(-1) == r.argmax(-1)).sum())
        top5 += int((r.topk(min(5, r.shape[-1])).indices == g.argmax(-1)[:, None]).any(-1).sum())
    errors.sort()
    return {"steps": len(errors), "max_rel_l2": errors[-1], "median_rel_l2": errors[len(errors) // 2],
            "top1_agree": top1 / len(errors), "top1_in_ref_top5": top5 / len(errors)}


def chat_prompt_ids(tokenizer, conversations: list[list[dict]]) -> list[list[int]]:
    """Token ids of each conversation under the tokenizer's chat template, with its generation prompt."""
    return [tokenizer(tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True),
                      add_special_tokens=False)["input_ids"] for m in conversations]


def _names(conversations: list[list[dict]]) -> list[str]:
    """How an error names each conversation: its index and the start of its last message."""
    return [f"conversation {i} ({str(m[-1].get('content', ''))[:50]!r}...)" if m else f"conversation {i}"
            for i, m in enumerate(conversations)]


def _fast_blocker(spec: BuildSpec, model, device, budget_gib: float) -> str | None:
    """Why the fast path cannot run for this model and budget (None: it can)."""
    from jobs.core.engine import fastmodel

    return fastmodel.unsupported(model) or fastmodel.over_budget(model, spec, device, budget_gib)


def cut(tokenizer, ids: list[int], stop_ids: list[int], stops: tuple[str, ...]) -> tuple[list[int], str, bool]:
    """(tokens before the stop, their text unstripped, stopped) for raw new token ids: the first stop token or
    stop string ends the answer."""
    end = next((k for k, t in enumerate(ids) if t in stop_ids), None)
    kept = ids if end is None else ids[:end]
    text = tokenizer.decode(kept, skip_special_tokens=True)
    at = stop_at(text, stops)
    if at is not None:
        text = text[:at]
        # the tokens whose text lies wholly before the stop string
        kept = kept[:max(k for k in range(len(kept) + 1)
                         if text.startswith(tokenizer.decode(kept[:k], skip_special_tokens=True)))]
    return kept, text, end is not None or at is not None


def finish(tokenizer, ids: list[int], stop_ids: list[int], stops: tuple[str, ...]) -> Generation:
    """The Generation for raw new token ids (see cut)."""
    kept, text, stopped = cut(tokenizer, ids, stop_ids, stops)
    return Generation(text.strip(), len(kept), stopped, "stop" if stopped else "length")


def stop_at(text: str, stops: tuple[str, ...]) -> int | None:
    """Index of the earliest stop string in text, or None."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None


def held_back(text: str, stops: tuple[str, ...]) -> int:
    """Characters at the end of text a stream must not send yet: an unfinished UTF-8 character, or the start of
    a stop string that the next tokens may complete."""
    hold = len(text) - len(text.rstrip("\ufffd"))
    for s in stops:
        hold = max([hold] + [k for k in range(1, len(s)) if text.endswith(s[:k])])
    return hold
