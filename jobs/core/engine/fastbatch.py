"""Continuous batching on the fast path: rows join and leave between decode steps (engine.Batch drives it).

Only jobs.core.engine.fastgen's backend creates a FastDecoder (imports torch at the top). Each row of the KV cache holds
one request: its prompt sits at slots [start, width), and it decodes at a slot of its own (fastmodel.forward_rows),
so a request that arrives mid-answer of the others joins at the next step. Live rows are kept at the front of the
cache (a leaving row's place is taken by the last row), and the step for a bucket of 1, 2, 4 ... rows is a CUDA
graph, as in fastgen.

Adapters, per step: when every live row asks for the same adapter (or the base), that adapter is merged into the
weights exactly (fastgen.FastBackend.use: the fastest step, the one `generate` runs); when rows ask for different
adapters, the weights go back to the base and each row adds its own adapter's LoRA unmerged (fastmodel.lora_delta,
Punica/S-LoRA's scheme: every adapter's A and B stacked, each row masked to its own). `mode` names the one in use.

Sampling is per row: its own temperature, top-p, min_new_tokens and seeded generator, so a row's random draws do
not depend on its neighbours. The host reads each step's tokens one step late: step k+1 is queued on the GPU before
the host waits for step k's tokens, so the GPU does not idle while the host decodes text.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from jobs.core.engine import fastmodel
from jobs.core.engine.decoding import generator_for, pick
from jobs.core.engine.fastgen import PREFILL_CHUNK, SCORE_BYTES, Session, _bucket, _cache_length, _to_host

MERGED, PER_ROW = "merged", "per-row LoRA"

GROUPS = {"qkv": ("q_proj", "k_proj", "v_proj"), "o": ("o_proj",), "gate_up": ("gate_proj", "up_proj"),
          "down": ("down_proj",)}


def stack_loras(backend) -> tuple[list[fastmodel.LayerLora], dict[str, torch.Tensor], list[str]]:
    """(per-layer stacked LoRA, per group the adapter index that owns each of its R columns, adapter names)."""
    w, names = backend.w, list(backend.loras)
    if not names:
        return [], {}, []
    dtype, device = w.embed.dtype, w.embed.device
    layers, owners = [], {}
    for i, layer in enumerate(w.layers):
        nq = w.dims.heads * w.dims.head_dim
        nk = w.dims.kv_heads * w.dims.head_dim
        nf = len(layer.gate_up) // 2
        outs = {"q_proj": nq, "k_proj": nk, "v_proj": nk, "o_proj": len(layer.o), "gate_proj": nf, "up_proj": nf,
                "down_proj": len(layer.down)}
        ins = {"qkv": layer.qkv.shape[1], "o": layer.o.shape[1], "gate_up": layer.gate_up.shape[1],
               "down": layer.down.shape[1]}
        stacked = {}
        for group, projections in GROUPS.items():
            a_blocks, b_blocks, owner = [], [], []
            for index, name in enumerate(names):
                lora = backend.loras[name]
                rank = next((a.shape[0] for a, _, _ in lora.values()), 0)
                for p in projections:
                    a, b, scale = lora.get((i, p), (None, None, None))
                    a_blocks.append(a if a is not None else torch.zeros(rank, ins[group], device=device))
                    column = torch.zeros(sum(outs[q] for q in projections), rank, device=device)
                    if b is not None:
                        first = sum(outs[q] for q in projections[:projections.index(p)])
                        column[first:first + outs[p]] = scale * b
                    b_blocks.append(column)
                    owner += [index] * rank
            stacked[f"{group}_a"] = torch.cat(a_blocks).to(dtype)
            stacked[f"{group}_b"] = torch.cat(b_blocks, dim=1).to(dtype)
            owners[group] = torch.tensor(owner, dtype=torch.long, device=device)
        layers.append(fastmodel.LayerLora(**stacked))
    return layers, owners, names


@dataclass(eq=False)
class _Row:
    rid: int
    prompt: list[int]
    adapter: str | None
    sampling: object
    generator: object
    emitted: int = 0  # tokens picked so far (the next pick is step `emitted` of its answer)


class FastDecoder:
    """Up to `rows` requests of at most `length` tokens each (prompt + answer), decoded together."""

    def __init__(self, backend, rows: int, length: int, stop_ids: list[int]):
        self.b, self.length, self.rows = backend, length, rows
        self.session = Session(backend.w, _bucket(rows), length, backend.device)
        self.slots = torch.zeros(_bucket(rows), dtype=torch.long, device=backend.device)
        self.adapter_ids = torch.full((_bucket(rows),), -1, dtype=torch.long, device=backend.device)
        self.stops = torch.tensor(stop_ids, dtype=torch.long, device=backend.device)
        self.live: list[_Row] = []  # in cache-row order
        self.joining: list[_Row] = []
        self.in_flight = []  # (ready, rows) of launched picks whose tokens the host has not read
        self.graphs = {}  # (bucket, mixed) -> (CUDAGraph, logits)
        # Its own graph memory pool: the backend's may have been released with the sessions it dropped.
        self.pool = torch.cuda.graph_pool_handle() if backend.graphs else None
        self.ids = itertools.count()
        self.loras, self.owners, self.names = stacked_loras(backend)
        self.mode = MERGED

    def free(self) -> int:
        return self.rows - len(self.live) - len(self.joining)

    def busy(self) -> bool:
        return bool(self.live or self.joining or self.in_flight)

    def add(self, prompt: list[int], adapter: str | None, sampling) -> int:
        """Queue a request to join at the next step; its row id."""
        row = _Row(next(self.ids), prompt, adapter, sampling, generator_for(sampling.seed, self.b.device))
        self.joining.append(row)
        return row.rid

    def drop(self, rid: int) -> None:
        """The row leaves now (ended or cancelled): the last live row takes its place in the cache."""
        self.joining = [r for r in self.joining if r.rid != rid]
        at = next((k for k, r in enumerate(self.live) if r.rid == rid), None)
        if at is None:
            return
        last = len(self.live) - 1
        if at != last:
            with torch.inference_mode():
                s = self.session
                for keys, values in s.caches:
                    keys[at], values[at] = keys[last], values[last]
                for t in (s.tokens, s.starts, self.slots, self.adapter_ids):
                    t[at] = t[last]
            self.live[at] = self.live[last]
        self.live.pop()

    def step(self) -> list[tuple[int, int]]:
        """Admit the joining rows (their prompts in one prefill), queue one decode step for every live row, and
        return the (row id, token) pairs queued by the step before (the caller ignores rows it has dropped)."""
        before = len(self.in_flight)
        with torch.inference_mode():
            for row in [r for r in self.live if r.emitted >= r.sampling.max_new_tokens]:
                self.drop(row.rid)  # its last token is already on its way to the host
            decoding = list(self.live)
            self._set_mode(decoding + self.joining)
            if decoding:
                logits = self._decode(_bucket(len(decoding)), self.mode == PER_ROW)[:len(decoding)]
                self.slots[:len(decoding)] += 1
                self._launch(logits, decoding, 0)
            if self.joining:
                self._admit()
        launched = len(self.in_flight) - before
        ready = self.in_flight[:before] if launched else self.in_flight
        self.in_flight = self.in_flight[before:] if launched else []
        return [(row.rid, token) for fetch, rows in ready for row, token in zip(rows, fetch())]

    def _set_mode(self, rows: list[_Row]) -> None:
        adapters = {r.adapter for r in rows}
        self.mode = PER_ROW if len(adapters) > 1 else MERGED
        self.b.use(next(iter(adapters)) if self.mode == MERGED and adapters else None)

    def _masks(self, adapter_ids):
        dtype = self.b.w.embed.dtype
        return tuple((adapter_ids[:, None] == owner[None, :]).to(dtype)[:, None, :] for owner in self.owners.values())

    def _launch(self, logits, rows: list[_Row], first: int) -> None:
        """Pick each row's next token on the device, feed it to the next step, start its copy to the host."""
        tokens = logits.argmax(-1)
        for k, row in enumerate(rows):
            s = row.sampling
            if s.temperature > 0 or row.emitted < s.min_new_tokens:
                tokens[k:k + 1] = pick(logits[k:k + 1], s, row.emitted, self.stops, row.generator)
            row.emitted += 1
        self.session.tokens[first:first + len(rows), 0] = tokens
        self.in_flight.append((_to_host(tokens), rows))

    def _admit(self) -> None:
        """The joining rows' prompts run into their cache rows and give their first token. Prompts are
        left-padded to a common width, so rows are prefilled in groups whose width + max_new_tokens fits."""
        rows = sorted(self.joining, key=lambda r: len(r.prompt))
        self.joining = []
        group = []
        for row in rows:
            if group and len(row.prompt) + max(r.sampling.max_new_tokens for r in group + [row]) > self.length:
                self._prefill(group)
                group = []
            group.append(row)
        self._prefill(group)

    def _prefill(self, rows: list[_Row]) -> None:
        first, n, width = len(self.live), len(rows), max(len(r.prompt) for r in rows)
        dev, s = self.b.device, self.session
        starts = torch.tensor([width - len(r.prompt) for r in rows], device=dev)
        tokens = torch.tensor([[0] * (width - len(r.prompt)) + r.prompt for r in rows], device=dev)
        ids = torch.tensor([self.names.index(r.adapter) if r.adapter is not None else -1 for r in rows], device=dev)
        s.starts[first:first + n], self.slots[first:first + n] = starts, width
        self.adapter_ids[first:first + n] = ids
        per_row = self.b.w.dims.heads * min(width, PREFILL_CHUNK) * width * 6  # bytes of scores + softmax
        step = max(1, SCORE_BYTES // per_row)
        last = []
        for r in range(0, n, step):
            r_end = min(n, r + step)
            masks = self._masks(ids[r:r_end]) if self.mode == PER_ROW else None
            for c in range(0, width, PREFILL_CHUNK):
                end = min(width, c + PREFILL_CHUNK)
                hidden = fastmodel.forward(self.b.w, tokens[r:r_end, c:end], starts[r:r_end],
                                           torch.arange(c, end, device=dev),
                                           s.views(first + r, first + r_end, end), *self.b.eager,
                                           loras=None if masks is None else self.loras, masks=masks)
            last.append(F.linear(hidden[:, -1], self.b.w.lm_head).float())
        self.live += rows
        self._launch(torch.cat(last), rows, first)

    def _step(self, bucket: int, mixed: bool):
        s = self.session
        masks = self._masks(self.adapter_ids[:bucket]) if mixed else None
        hidden = fastmodel.forward_rows(self.b.w, s.tokens[:bucket], s.starts[:bucket], self.slots[:bucket],
                                        s.views(0, bucket), *self.b.step_fns, loras=self.loras if mixed else None,
                                        masks=masks)
        return F.linear(hidden[:, -1], self.b.w.lm_head).float()

    def _decode(self, bucket: int, mixed: bool):
        """Float32 logits (bucket, V) of one decode step for the first `bucket` rows, each at its own slot."""
        if not self.b.graphs:
            return self._step(bucket, mixed)
        key = (bucket, mixed)
        if key not in self.graphs:
            # Warm-up steps write keys at each row's current slot, which the real step overwrites before reading.
            start = time.perf_counter()
            side = torch.cuda.Stream(self.b.device)
            side.wait_stream(torch.cuda.current_stream(self.b.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._step(bucket, mixed)
            torch.cuda.current_stream(self.b.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                logits = self._step(bucket, mixed)
            self.graphs[key] = (graph, logits)
            torch.cuda.synchronize(self.b.device)
            self.b.compile_seconds += time.perf_counter() - start
        graph, logits = self.graphs[key]
        graph.replay()
        return logits


def decoder(backend, rows: int, tokens: int, stop_ids: list[int]) -> "FastDecoder":
    """A continuous-batching decoder over the fast path's weights for up to `rows` requests of at most `tokens`
    tokens each (prompt + answer), fewer rows if their KV cache would not fit the memory budget."""
    backend.sessions.clear()  # the decoder holds its own cache; generate() makes its sessions again if called
    length = _cache_length(tokens)
    return FastDecoder(backend, min(rows, backend._rows_for(length)), length, stop_ids)


def stacked_loras(backend):
    """Every adapter's LoRA stacked for per-row use, made once per backend (kept on it)."""
    if backend._stacked is None:
        with torch.inference_mode():
            backend._stacked = stack_loras(backend)
    return backend._stacked
