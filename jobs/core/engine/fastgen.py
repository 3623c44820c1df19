"""The fast generation path (engine.path "gpu-fast"): decoding over jobs/core/engine/fastmodel.py's weights.

Only jobs.core.engine imports this module (it imports torch at the top); what it shares with the exact path
(the sampling rule, NLL batches) is jobs/core/engine/decoding.py. Prompts are sorted by length and
left-padded; the prompt runs in chunks (bounded attention scores), then one token per step. The step for a bucket of
1, 2, 4 ... 64 rows is captured once as a CUDA graph that reads the token, start and cache-slot tensors in place, so
a replay costs one launch; the layer functions inside it are compiled with torch.compile (compile_layers=False keeps
eager kernels, for measuring). Every SYNC_EVERY steps the host looks at which rows ended (end of turn, stop string):
when all have, decoding stops; when at most half the bucket is live, the live rows move to the front and the next
smaller bucket's graph runs. On the CPU (tests) the same steps run eagerly, without graphs.

Adapters are merged exactly: a targeted projection's live rows are rewritten from the base's rows kept aside plus
scale * B @ A (float32, rounded once to the compute dtype), so switching adapter, or to the base (adapter None),
costs milliseconds, needs no reload and never drifts. The graphs read the live weights, so they stay valid.
"""

from __future__ import annotations

import gc
import time
from typing import Iterator

import torch
import torch.nn.functional as F

from jobs.core.engine import fastmodel
from jobs.core.engine.decoding import NLL_TOKENS_PER_BATCH, generator_for, pick, token_batches, token_nll
from jobs.core.engine.loading import cap_memory, compute_dtype, use_compile_cache

BUCKETS = (1, 2, 4, 8, 16, 32, 64)  # rows of the captured decode graphs
SYNC_EVERY = 8  # decode steps between the host's looks at finished rows (each look waits for the GPU once)
LENGTH_STEP = 256  # cache length rounded up to a multiple (tokens): fewer shapes, fewer graphs and compiles
PREFILL_CHUNK = 512  # prompt tokens per prefill pass
SCORE_BYTES = 256 << 20  # one prefill pass's attention scores (fp16 + float32 softmax) stay under 256 MiB


def _bucket(rows: int) -> int:
    return next(b for b in BUCKETS if b >= rows)


def _cache_length(tokens: int) -> int:
    """KV cache length for `tokens` tokens: rounded up to a multiple of LENGTH_STEP."""
    return -(-tokens // LENGTH_STEP) * LENGTH_STEP


def _to_host(token):
    """A function giving the token ids as a list, waiting only for the GPU work queued before this call."""
    if token.device.type != "cuda":
        values = token.tolist()
        return lambda: values
    host = torch.empty(token.shape, dtype=token.dtype, pin_memory=True)
    host.copy_(token, non_blocking=True)
    event = torch.cuda.Event()
    event.record()

    def ready():
        event.synchronize()
        return host.tolist()
    return ready


class Session:
    """Static buffers for up to `rows` sequences of `length` tokens: the KV cache and the decode step's inputs."""

    def __init__(self, w: fastmodel.Weights, rows: int, length: int, device):
        shape = (rows, w.dims.kv_heads, length, w.dims.head_dim)
        self.caches = [(torch.zeros(shape, dtype=w.embed.dtype, device=device),
                        torch.zeros(shape, dtype=w.embed.dtype, device=device)) for _ in w.layers]
        self.bytes = 2 * len(w.layers) * self.caches[0][0].numel() * w.embed.element_size()
        self.tokens = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.starts = torch.zeros(rows, dtype=torch.long, device=device)
        self.slot = torch.zeros(1, dtype=torch.long, device=device)  # where the step writes its token's keys
        self.graphs = {}  # bucket -> (CUDAGraph, the logits it writes)
        # The session's graphs share one memory pool, its own: a pool whose graphs are all gone is freed by torch,
        # and capturing into its handle again fails (an internal assert), which a shared pool met once a session
        # of another length replaced this one (synthesis: prompts of many lengths).
        self.pool = torch.cuda.graph_pool_handle() if device.type == "cuda" else None

    def views(self, first: int, last: int, length: int | None = None):
        return [(k[first:last, :, :length], v[first:last, :, :length]) for k, v in self.caches]

    def compact(self, keep) -> None:
        """Move the rows `keep` (device indices) to the front, in that order."""
        n = len(keep)
        for k, v in self.caches:
            k[:n], v[:n] = k[keep], v[keep]
        self.tokens[:n], self.starts[:n] = self.tokens[keep], self.starts[keep]


class FastBackend:
    """Chat, stream and NLL over the fast path's weights (see the module docstring)."""

    def __init__(self, weights, targets, loras, device, budget_bytes: int | None, compile_layers: bool,
                 compile_workers: bool):
        self.w, self.targets, self.loras, self.device, self.budget = weights, targets, loras, device, budget_bytes
        self.current = None  # the adapter merged into the live weights; None = the base
        self.graphs = device.type == "cuda"
        dims = weights.dims

        def pre(x, layer, cos, sin, lora=None):
            return fastmodel.attend_in(x, layer, cos, sin, dims, lora)

        def post(x, q, keys, values, mask, layer, lora=None):
            return fastmodel.attend_out(x, q, keys, values, mask, layer, dims, lora)

        self.eager = (pre, post)
        compiled = compile_layers and self.graphs
        if compiled:  # one compiled variant per batch shape, with and without per-row LoRA (fastbatch): above 8
            use_compile_cache()
            if not compile_workers:  # EngineSettings.compile_workers: no pool of worker processes, none to wait for
                import torch._inductor.config as inductor_config

                inductor_config.compile_threads = 1
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        self.step_fns = tuple(torch.compile(f, fullgraph=True) for f in self.eager) if compiled else self.eager
        self.sessions: dict[tuple[int, int], Session] = {}
        self.token_bytes = fastmodel.token_bytes(len(weights.layers), dims.kv_heads, dims.head_dim,
                                                 weights.embed.element_size())
        self.compile_seconds = 0.0
        self._stacked = None  # every adapter's LoRA stacked for per-row use (fastbatch.stack_loras), made once

    @classmethod
    def build(cls, model, adapters: list[str], spec, budget_gib: float, compile_layers: bool,
              compile_workers: bool) -> "FastBackend":
        dtype = compute_dtype(spec)
        device = next(model.parameters()).device
        with torch.inference_mode():
            weights, targets, loras = fastmodel.build_weights(model, adapters, spec.train.quantization == "nf4", dtype)
        budget = int(budget_gib * 2 ** 30) if device.type == "cuda" else None
        cap_memory(device, budget_gib)  # the whole process, as the train stage caps itself
        return cls(weights, targets, loras, device, budget, compile_layers, compile_workers)

    @staticmethod
    def release() -> None:
        """Give the loaded 4-bit model's memory back once the caller has dropped it."""
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def use(self, adapter: str | None) -> None:
        """Merge `adapter` into the live weights (None: the base's rows back, bit for bit)."""
        if adapter == self.current:
            return
        lora = self.loras[adapter] if adapter is not None else {}
        with torch.inference_mode():  # the weights are inference tensors
            for key, (live, base) in self.targets.items():
                if key in lora:
                    a, b, scale = lora[key]
                    live.copy_((base.float() + scale * (b @ a)).to(live.dtype))
                else:
                    live.copy_(base)
        self.current = adapter

    def bytes_read(self, rows: int, length: int) -> int:
        """Bytes a decode step reads at least: every weight once (the embedding by row only) and the KV cache."""
        tensors = [t for layer in self.w.layers for t in layer if t is not None] + [self.w.lm_head, self.w.norm]
        return sum(t.numel() * t.element_size() for t in tensors) + rows * length * self.token_bytes

    def _session(self, rows: int, length: int) -> Session:
        """Buffers for `rows` x `length`. One batch session and one stream (one-row) session are kept: a new one
        replaces the old of its kind, with its graphs."""
        key = (rows, length)
        if key not in self.sessions:
            replaced = [k for k in self.sessions if (k[0] == 1) == (rows == 1)]
            for old in replaced:
                del self.sessions[old]
            if replaced:
                # The old KV cache and graph pool go back to the card now rather than staying cached: synthesis (a
                # session per prompt length) held 23 GiB of an uncapped H100 in the rehearsal, where eval, with one
                # session, held 7 (docs/benchmarks.md, Rehearsal; with this and the cap, not yet re-measured).
                self.release()
            self.sessions[key] = Session(self.w, rows, length, self.device)
        return self.sessions[key]

    def _rows_for(self, length: int) -> int:
        """The largest bucket whose KV cache of `length` tokens fits the memory budget beside the weights."""
        if self.budget is None:
            return BUCKETS[-1]
        held = sum(s.bytes for k, s in self.sessions.items() if k[0] != 1)  # dropped if the shape changes
        free = self.budget - torch.cuda.memory_allocated(self.device) + held - fastmodel.WORKSPACE_BYTES
        return max([b for b in BUCKETS if b * length * self.token_bytes <= free], default=1)

    def _prefill(self, session: Session, tokens, starts):
        """Run the (left-padded) prompts into the cache; float32 logits (n, V) at each prompt's last token."""
        n, width = tokens.shape
        session.starts[:n] = starts
        per_row = self.w.dims.heads * min(width, PREFILL_CHUNK) * width * 6  # bytes of scores + softmax
        rows = max(1, SCORE_BYTES // per_row)
        last = []
        for r in range(0, n, rows):
            r_end = min(n, r + rows)
            for c in range(0, width, PREFILL_CHUNK):
                end = min(width, c + PREFILL_CHUNK)
                slots = torch.arange(c, end, device=self.device)
                hidden = fastmodel.forward(self.w, tokens[r:r_end, c:end], starts[r:r_end], slots,
                                           session.views(r, r_end, end), *self.eager)
            last.append(F.linear(hidden[:, -1], self.w.lm_head).float())
        return torch.cat(last)

    def _step(self, session: Session, bucket: int):
        hidden = fastmodel.forward(self.w, session.tokens[:bucket], session.starts[:bucket], session.slot,
                                   session.views(0, bucket), *self.step_fns)
        return F.linear(hidden[:, -1], self.w.lm_head).float()

    def _decode(self, session: Session, bucket: int):
        """One decode step for the first `bucket` rows: float32 logits (bucket, V)."""
        if not self.graphs:
            return self._step(session, bucket)
        if bucket not in session.graphs:
            self._capture(session, bucket)
        graph, logits = session.graphs[bucket]
        graph.replay()
        return logits

    def _capture(self, session: Session, bucket: int) -> None:
        # The warm-up steps write keys at the current slot, which the next real step overwrites before reading.
        start = time.perf_counter()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):  # the first call compiles (once per shape), the second runs as it will be captured
                self._step(session, bucket)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=session.pool):
            logits = self._step(session, bucket)
        session.graphs[bucket] = (graph, logits)
        torch.cuda.synchronize(self.device)
        self.compile_seconds += time.perf_counter() - start

    def generate(self, prompts, adapter, sampling, stop_ids, tokenizer):
        """New token ids per prompt (to its first stop token, or max_new_tokens), in input order."""
        return self._generate(prompts, adapter, sampling, stop_ids, tokenizer, 0)[0]

    def trace(self, prompts, adapter, sampling, stop_ids, tokenizer, forced=None):
        """Greedy, exactly sampling.max_new_tokens tokens: new ids and float32 logits per prompt (Engine.trace).
        Teacher forcing (`forced`) is the reference path's: this path is the one being checked."""
        if forced is not None:
            raise ValueError("the fast path traces its own tokens; pass forced tokens to the exact path")
        tokens, logits = self._generate(prompts, adapter, sampling, stop_ids, tokenizer, sampling.max_new_tokens)
        return tokens, [x.float().cpu() for x in logits]

    def _generate(self, prompts, adapter, sampling, stop_ids, tokenizer, keep_logits: int):
        with torch.inference_mode():
            self.use(adapter)
            stops = torch.tensor(stop_ids, dtype=torch.long, device=self.device)
            generator = generator_for(sampling.seed, self.device)
            order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
            length = _cache_length(max(map(len, prompts)) + sampling.max_new_tokens)
            rows = min(self._rows_for(length), _bucket(len(prompts)))
            session = self._session(_bucket(rows), length)
            results, logits = {}, {}
            for b in range(0, len(order), rows):
                group = order[b:b + rows]
                out, kept = self._run(session, [prompts[i] for i in group], sampling, stops, generator, tokenizer,
                                      keep_logits)
                results.update(zip(group, out))
                logits.update(zip(group, kept))
        return [results[i] for i in range(len(prompts))], [logits.get(i) for i in range(len(prompts))]

    def _run(self, session, prompts, sampling, stops, generator, tokenizer, keep_logits):
        n, width = len(prompts), max(map(len, prompts))
        starts = torch.tensor([width - len(p) for p in prompts], device=self.device)
        tokens = torch.tensor([[0] * (width - len(p)) + p for p in prompts], device=self.device)
        logits = self._prefill(session, tokens, starts)
        out = torch.zeros(n, sampling.max_new_tokens, dtype=torch.long, device=self.device)
        live = torch.arange(n, device=self.device)  # the row of `out` that each cache row holds
        ended = torch.zeros(n, dtype=torch.bool, device=self.device)
        steps, bucket, kept = sampling.max_new_tokens, _bucket(n), []
        session.slot.fill_(width)
        for step in range(sampling.max_new_tokens):
            if step:
                if step % SYNC_EVERY == 0:
                    done = self._ended(ended, out, live, step, sampling.stop, tokenizer)
                    if all(done):
                        steps = step
                        break
                    if len(done) - sum(done) <= bucket // 2:  # finished rows stop costing work
                        keep = torch.tensor([k for k, d in enumerate(done) if not d], device=self.device)
                        session.compact(keep)
                        live, bucket = live[keep], _bucket(len(keep))
                logits = self._decode(session, bucket)[:len(live)]
                session.slot += 1
            if step < keep_logits:
                kept.append(logits.clone())
            token = pick(logits, sampling, step, stops, generator)
            out[live, step] = token
            ended[live] |= torch.isin(token, stops)
            session.tokens[:len(live), 0] = token
        kept = torch.stack(kept, dim=1).cpu() if kept else torch.empty(n, 0)
        return out[:, :steps].tolist(), list(kept)

    @staticmethod
    def _ended(ended, out, live, step: int, stops: tuple[str, ...], tokenizer) -> list[bool]:
        """Per live row: has it emitted a stop token, or a stop string (decoded here on the host)?"""
        done = ended[live].tolist()
        if stops:
            rows = out[live, :step].tolist()
            done = [d or any(s in tokenizer.decode(r, skip_special_tokens=True) for s in stops)
                    for d, r in zip(done, rows)]
        return done

    def stream(self, prompt, adapter, sampling, stop_ids) -> Iterator[int]:
        """Token ids one at a time; each step is queued before the previous token is read, so the GPU never waits
        on the reader."""
        with torch.inference_mode():
            self.use(adapter)
            stops = torch.tensor(stop_ids, dtype=torch.long, device=self.device)
            generator = generator_for(sampling.seed, self.device)
            length = _cache_length(len(prompt) + sampling.max_new_tokens)
            session = self._session(1, length)
            zero = torch.zeros(1, dtype=torch.long, device=self.device)
            token = pick(self._prefill(session, torch.tensor([prompt], device=self.device), zero), sampling, 0,
                         stops, generator)
            session.slot.fill_(len(prompt))
            pending = _to_host(token)
        for step in range(1, sampling.max_new_tokens):
            with torch.inference_mode():
                session.tokens[:1, 0] = token
                token = pick(self._decode(session, 1)[:1], sampling, step, stops, generator)
                session.slot += 1
                ready, pending = pending(), _to_host(token)
            yield ready[0]
        yield pending()[0]

    def nll(self, encoded, adapter, pad_id: int) -> list[tuple[float, int]]:
        with torch.inference_mode():
            self.use(adapter)
            order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
            results = {}
            for chunk in token_batches(order, encoded, NLL_TOKENS_PER_BATCH):
                width = max(len(encoded[i]) for i in chunk)
                starts = torch.tensor([width - len(encoded[i]) for i in chunk], device=self.device)
                tokens = torch.tensor([[pad_id] * (width - len(encoded[i])) + encoded[i] for i in chunk],
                                      device=self.device)
                session = Session(self.w, len(chunk), width, self.device)
                hidden = fastmodel.forward(self.w, tokens, starts, torch.arange(width, device=self.device),
                                           session.views(0, len(chunk)), *self.eager)
                logits = F.linear(hidden[:, :-1], self.w.lm_head).float()
                scored = torch.arange(width - 1, device=self.device)[None] >= starts[:, None]
                nll = token_nll(logits, tokens[:, 1:]) * scored
                for row, i in enumerate(chunk):
                    results[i] = (float(nll[row].sum()), int(scored[row].sum()))
        return [results[i] for i in range(len(encoded))]
