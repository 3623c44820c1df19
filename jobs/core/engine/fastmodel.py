"""The fast path's model: a Qwen2 decoder over compute-dtype weights and a static KV cache, in plain torch.

Only the fast generation path imports this (jobs/core/engine/fastgen.py, itself imported by jobs/core/engine/generation.py alone), so
torch is imported at the top. The layer math mirrors transformers' Qwen2 (RMSNorm in float32, rotate-half RoPE,
softmax in float32); a CPU test holds its logits to transformers' on the tiny model.

Weights: every 4-bit NF4 linear is dequantized once with bitsandbytes' own dequantize_4bit into the compute dtype,
the values its matmul multiplies with, so an adapter is still judged against the base it was trained on. q/k/v and
gate/up are stacked (one matmul each). For each LoRA-targeted projection the base's rows are kept aside, so an
adapter is merged exactly (see fastgen.FastBackend.use) and the base comes back bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from jobs.core.engine.loading import compute_dtype, dequantized_weight

WORKSPACE_BYTES = 3 << 29  # 1.5 GiB kept free for activations, logits, graph pools and allocator slack
MIN_CACHE = (8, 2048)  # rows x tokens of KV cache the budget must hold beside the weights


class Dims(NamedTuple):
    heads: int
    kv_heads: int
    head_dim: int
    eps: float


class Layer(NamedTuple):
    ln1: torch.Tensor
    qkv: torch.Tensor  # q, k and v projections stacked: one matmul
    qkv_bias: torch.Tensor | None
    o: torch.Tensor
    ln2: torch.Tensor
    gate_up: torch.Tensor  # gate and up projections stacked
    down: torch.Tensor


def rms_norm(x, weight, eps: float):
    """Qwen2RMSNorm: normalise in float32, round to the input dtype, then scale."""
    dtype = x.dtype
    x = x.float()
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)).to(dtype)


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


class LayerLora(NamedTuple):
    """Every loaded adapter's LoRA for one layer, stacked per projection group (q/k/v, o, gate/up, down): A is
    (R, in) with each adapter's rank-r blocks one after another, B is (out, R) with the scale folded in and zeros
    where an adapter does not target a projection. A row's mask keeps its own adapter's R columns."""
    qkv_a: torch.Tensor
    qkv_b: torch.Tensor
    o_a: torch.Tensor
    o_b: torch.Tensor
    gate_up_a: torch.Tensor
    gate_up_b: torch.Tensor
    down_a: torch.Tensor
    down_b: torch.Tensor


def lora_delta(x, a, b, mask):
    """Per-row LoRA without merging (Punica's and S-LoRA's idea, in plain matmuls): x @ every adapter's A at once,
    each row keeping only its adapter's columns (mask (B, 1, R): 1 or 0), then @ B. Reads each A and B once per
    step whatever the batch holds; the work grows with the number of adapters, which is small."""
    return F.linear(F.linear(x, a) * mask, b)


def attend_in(x, w: Layer, cos, sin, dims: Dims, lora=None):
    """Norm, q/k/v projection, rotary embedding: q (B, heads, T, d); k and v (B, kv_heads, T, d). lora: None, or
    (LayerLora, masks) with masks per group (qkv, o, gate_up, down), each (B, 1, R)."""
    b, t, _ = x.shape
    h, kv, d = dims.heads, dims.kv_heads, dims.head_dim
    normed = rms_norm(x, w.ln1, dims.eps)
    qkv = F.linear(normed, w.qkv, w.qkv_bias)
    if lora is not None:
        qkv = qkv + lora_delta(normed, lora[0].qkv_a, lora[0].qkv_b, lora[1][0])
    q, k, v = qkv.split((h * d, kv * d, kv * d), dim=-1)
    q = q.view(b, t, h, d).transpose(1, 2)
    k = k.view(b, t, kv, d).transpose(1, 2)
    return rotate(q, cos, sin), rotate(k, cos, sin), v.view(b, t, kv, d).transpose(1, 2)


def attend_out(x, q, keys, values, mask, w: Layer, dims: Dims, lora=None):
    """Attention over the cache (query heads grouped per key head, no copies), o projection, then the MLP."""
    b, h, t, d = q.shape
    kv, length = keys.shape[1], keys.shape[2]
    group = h // kv
    scores = (q.reshape(b, kv, group * t, d) @ keys.transpose(-1, -2)) * d ** -0.5
    scores = scores.view(b, kv, group, t, length) + mask  # mask (B, 1, 1, T, L): 0 or -inf
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    out = (probs.view(b, kv, group * t, length) @ values).view(b, kv, group, t, d)
    out = out.permute(0, 3, 1, 2, 4).reshape(b, t, h * d)
    if lora is None:
        x = x + F.linear(out, w.o)
        gate, up = F.linear(rms_norm(x, w.ln2, dims.eps), w.gate_up).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, w.down)
    (layer, masks) = lora
    x = x + F.linear(out, w.o) + lora_delta(out, layer.o_a, layer.o_b, masks[1])
    normed = rms_norm(x, w.ln2, dims.eps)
    gate_up = F.linear(normed, w.gate_up) + lora_delta(normed, layer.gate_up_a, layer.gate_up_b, masks[2])
    gate, up = gate_up.chunk(2, dim=-1)
    act = F.silu(gate) * up
    return x + F.linear(act, w.down) + lora_delta(act, layer.down_a, layer.down_b, masks[3])


def attention_mask(starts, query_slots, keys, dtype):
    """(B, 1, 1, T, L) additive mask: a query sees keys from its row's start up to its own slot; a padding query
    sees itself, so no softmax row is empty."""
    k, q = keys[None, None, :], query_slots[None, :, None]
    valid = ((k >= starts[:, None, None]) & (k <= q)) | (k == q)
    return torch.zeros(valid.shape, dtype=dtype, device=keys.device).masked_fill(~valid, float("-inf"))[:, None, None]


def unsupported(model) -> str | None:
    """Why this model's architecture is not the one the fast path implements (None: it is)."""
    c = model.config
    if c.model_type != "qwen2" or c.hidden_act != "silu":
        return f"it implements Qwen2 with SiLU, not {c.model_type} with {c.hidden_act}"
    if "sliding_attention" in c.layer_types or c.rope_parameters["rope_type"] != "default":
        return "it implements full attention with default RoPE, not sliding windows or scaled RoPE"
    return None


def over_budget(model, spec, device, budget_gib: float) -> str | None:
    """Why the dequantized base would not fit `budget_gib` on this GPU (None: it fits, or a CPU)."""
    if device.type != "cuda":
        return None
    from peft.tuners.lora import LoraLayer

    c, size = model.config, compute_dtype(spec).itemsize
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and not isinstance(m, LoraLayer)]
    dense = sum(m.in_features * m.out_features for m in linears if m.weight.dtype == torch.uint8) * size
    kept = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, LoraLayer)) * size
    cache = MIN_CACHE[0] * MIN_CACHE[1] * token_bytes(c.num_hidden_layers, c.num_key_value_heads,
                                                       c.hidden_size // c.num_attention_heads, size)
    need = torch.cuda.memory_allocated(device) + dense + kept + cache + WORKSPACE_BYTES
    if need <= budget_gib * 2 ** 30:
        return None
    return (f"it needs about {need / 2 ** 30:.1f} GiB (4-bit model while converting, {dense / 2 ** 30:.1f} GiB of "
            f"dequantized weights, KV cache, workspace) and the memory budget is {budget_gib} GiB")


def token_bytes(layers: int, kv_heads: int, head_dim: int, size: int) -> int:
    return layers * 2 * kv_heads * head_dim * size  # keys and values of one token in every layer


class Weights(NamedTuple):
    embed: torch.Tensor
    norm: torch.Tensor
    lm_head: torch.Tensor
    layers: list[Layer]
    inv_freq: torch.Tensor
    dims: Dims


def _rope(w: Weights, positions, dtype):
    freqs = positions[..., None].float() * w.inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]


def forward(w: Weights, tokens, starts, slots, caches, pre, post, loras=None, masks=None):
    """Hidden states (B, T, D) for `tokens` written at cache `slots` (T,): RoPE positions are slot - start.
    loras (one LayerLora per layer) and masks (see attend_in): per-row LoRA over unmerged weights."""
    positions = (slots[None, :] - starts[:, None]).clamp(min=0)
    x = F.embedding(tokens, w.embed)
    cos, sin = _rope(w, positions, x.dtype)
    mask = attention_mask(starts, slots, torch.arange(caches[0][0].shape[2], device=x.device), x.dtype)
    for i, (layer, (keys, values)) in enumerate(zip(w.layers, caches)):
        lora = None if loras is None else (loras[i], masks)
        q, k, v = pre(x, layer, cos, sin, lora)
        keys.index_copy_(2, slots, k)
        values.index_copy_(2, slots, v)
        x = post(x, q, keys, values, mask, layer, lora)
    return rms_norm(x, w.norm, w.dims.eps)


def forward_rows(w: Weights, tokens, starts, slots, caches, pre, post, loras=None, masks=None):
    """One decode step where every row sits at its own cache slot (continuous batching: rows joined at different
    times): tokens (B, 1), starts and slots (B,). Hidden states (B, 1, D)."""
    rows = torch.arange(len(tokens), device=tokens.device)
    x = F.embedding(tokens, w.embed)
    cos, sin = _rope(w, (slots - starts)[:, None], x.dtype)
    keys_at = torch.arange(caches[0][0].shape[2], device=x.device)[None, :]
    valid = ((keys_at >= starts[:, None]) & (keys_at <= slots[:, None])) | (keys_at == slots[:, None])
    mask = torch.zeros(valid.shape, dtype=x.dtype, device=x.device).masked_fill(~valid, float("-inf"))
    mask = mask[:, None, None, None, :]  # (B, 1, 1, 1, L)
    for i, (layer, (keys, values)) in enumerate(zip(w.layers, caches)):
        lora = None if loras is None else (loras[i], masks)
        q, k, v = pre(x, layer, cos, sin, lora)
        keys[rows, :, slots] = k[:, :, 0]
        values[rows, :, slots] = v[:, :, 0]
        x = post(x, q, keys, values, mask, layer, lora)
    return rms_norm(x, w.norm, w.dims.eps)


def _base_layer(module):
    """The wrapped linear of a peft LoRA layer, or the module itself."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return module.get_base_layer() if isinstance(module, BaseTunerLayer) else module


def _dense(module, quantized: bool, dtype):
    """A linear layer's weight in the compute dtype: NF4 dequantized exactly as bitsandbytes' matmul does."""
    module = _base_layer(module)
    if not quantized:
        return module.weight.detach().to(dtype)
    return dequantized_weight(module, dtype)


def build_weights(model, adapters: list[str], quantized: bool, dtype):
    """(Weights, targets, loras) from a loaded (peft) model. targets: {(layer, projection): (live rows, base rows)};
    loras: {adapter: {(layer, projection): (A, B, scale)}} in float32."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    from jobs.core.engine.loading import ModelError

    base = model.get_base_model() if isinstance(model, PeftModel) else model
    inner, c = base.model, base.config
    layers, targets, loras = [], {}, {name: {} for name in adapters}
    for i, block in enumerate(inner.layers):
        att, mlp = block.self_attn, block.mlp
        mods = {"q_proj": att.q_proj, "k_proj": att.k_proj, "v_proj": att.v_proj, "o_proj": att.o_proj,
                "gate_proj": mlp.gate_proj, "up_proj": mlp.up_proj, "down_proj": mlp.down_proj}
        dense = {name: _dense(m, quantized, dtype) for name, m in mods.items()}
        biases = [_base_layer(m).bias for m in (att.q_proj, att.k_proj, att.v_proj)]
        layer = Layer(ln1=block.input_layernorm.weight.to(dtype),
                      qkv=torch.cat([dense["q_proj"], dense["k_proj"], dense["v_proj"]]),
                      qkv_bias=None if biases[0] is None else torch.cat(biases).to(dtype), o=dense["o_proj"],
                      ln2=block.post_attention_layernorm.weight.to(dtype),
                      gate_up=torch.cat([dense["gate_proj"], dense["up_proj"]]), down=dense["down_proj"])
        nq, nk, nf = len(dense["q_proj"]), len(dense["k_proj"]), len(dense["gate_proj"])
        rows = {"q_proj": layer.qkv[:nq], "k_proj": layer.qkv[nq:nq + nk], "v_proj": layer.qkv[nq + nk:],
                "o_proj": layer.o, "gate_proj": layer.gate_up[:nf], "up_proj": layer.gate_up[nf:], "down_proj": layer.down}
        for name, m in mods.items():
            if not isinstance(m, LoraLayer):
                continue
            targets[(i, name)] = (rows[name], rows[name].clone())
            for adapter in adapters:
                if adapter not in m.lora_A:
                    continue
                if m.use_dora.get(adapter) or m.lora_bias.get(adapter):
                    raise ModelError(f"adapter {adapter!r}: DoRA and LoRA biases are not merged by the fast path; "
                                     f"train a plain LoRA adapter")
                loras[adapter][(i, name)] = (m.lora_A[adapter].weight.float(), m.lora_B[adapter].weight.float(),
                                             m.scaling[adapter])
        layers.append(layer)
    head_dim = len(layers[0].qkv) // (c.num_attention_heads + 2 * c.num_key_value_heads)
    dims = Dims(c.num_attention_heads, c.num_key_value_heads, head_dim, c.rms_norm_eps)
    weights = Weights(embed=inner.embed_tokens.weight.to(dtype), norm=inner.norm.weight.to(dtype),
                      lm_head=base.lm_head.weight.to(dtype), layers=layers,
                      inv_freq=inner.rotary_emb.inv_freq.float(), dims=dims)
    return weights, targets, loras
