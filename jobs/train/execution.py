"""The train.execution knobs that act on the loaded model: they trade memory for speed, never what is learned.

- dequantize_once: bitsandbytes dequantizes each 4-bit weight at every use, three times per step with
  checkpointing (forward, recompute, backward), 196 weights for Qwen2.5-1.5B: 588 dequantize kernels and their
  Python per micro-step. Here each weight is dequantized once, at load, into an nn.Linear of the compute dtype:
  the same values bitsandbytes computes with (above 1,536 tokens per pass it runs exactly
  dequantize + F.linear), so the adapter still trains against the NF4-rounded base. A per-step cache would
  hold the same tensors at the peak (every layer's weights wait from its forward to its backward), so once
  per run costs no more memory than once per step. It costs the dense weights: 2 bytes per parameter in fp16
  or bf16 instead of about 0.56 (+1.75 GiB measured for Qwen2.5-1.5B's linears).
- checkpoint_layers (set by the preflight): with gradient checkpointing, only the first N decoder layers are
  recomputed in backward; the others keep their activations. Reentrant checkpointing replays the RNG and
  restores it after the recompute, so LoRA dropout draws the same masks whichever layers are checkpointed.
- compile: each decoder layer's forward compiled with torch.compile (inductor; its backward through AOTAutograd),
  one graph shared by all 28 layers, with dynamic shapes so every packed row length runs the same graph. With
  LoRA off the MLP's down projection (v1, v2), the compiled part stops before it (`_to_down`) and the projection
  runs after it: recomputing a checkpointed layer then skips that matmul, whose backward needs only the frozen
  weight (6.3 % faster at 32 examples a pass on the H100). Nor does the recompute compute the projection's
  input, silu(gate) * up: only its graph is needed, so `_SwiGLUForBackward` keeps gate and up for its backward and
  stands an uninitialised tensor for the product (2.4 % faster, H100). In eager mode a v1 step is bound by the
  host: about 7,600 kernels launched one by one from Python for 2,600 tokens (docs/benchmarks.md); compiled,
  each layer's norms, rotary embedding, LoRA dropout, scaling and adds become a few fused kernels. Needs
  dequantize_once with an NF4 base (bitsandbytes' 4-bit matmul is left out of compiled graphs). Checkpointing
  stays reentrant and outside the compiled function, as in eager mode: the forward runs a no-grad graph, the
  recompute in backward a training graph (a third compiles for a layer that keeps its activations), and the
  checkpoint restores the RNG state before the recompute, so both draw the same dropout masks. Non-reentrant
  checkpointing inside the compiled graph failed to compile on the H200 with torch 2.11 (partitioner: "Node
  add_471 was invalid, but is output"). The masks come from torch's own generator (inductor's
  `fallback_random`), as in eager mode: from the same seed, compiled and eager layers draw the same masks and
  agree to float32 rounding (tests/train/test_compile.py). Inductor's in-kernel generator was slower: at 32
  examples a pass on the H100, the input norm fused with its three LoRA dropouts took 0.54 ms a layer, and the
  step ran 3.2 % slower (docs/benchmarks.md). A resumed process meets other shapes first than an uninterrupted
  one (step 3's, not step 1's, after the same preflight on a GPU); with dynamic shapes the graphs are the same:
  the only recompiles are for grad mode (TORCH_LOGS=recompiles), and a run killed and resumed ends byte-identical
  to an uninterrupted one, on the CPU (tests/train/test_resume.py) and, with deterministic kernels (below), on
  an H100 (the GPU tier).
- deterministic (make_deterministic): the GPU's deterministic kernels only, so runs repeat bit for bit; off, the
  faster ones, whose atomic adds (flash attention's backward) differ between runs in the last bits.
"""

from __future__ import annotations

import os
from functools import partial

import torch
from torch.utils.checkpoint import checkpoint

from jobs.core.engine.loading import dequantized_weight, use_compile_cache


def decoder_layers(model) -> torch.nn.ModuleList:
    return model.get_base_model().model.layers


def dequantize_once(model) -> list[tuple[str, torch.nn.Module]]:
    """Swap every bitsandbytes 4-bit linear for an nn.Linear with its dequantized weight. Returns the swapped
    4-bit layers by name: keep them to swap back (`requantize`), drop them to free their memory."""
    import bitsandbytes as bnb

    swapped = []
    for name, layer in [(n, m) for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]:
        dtype = _dtype(layer)
        dense = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
        weight = dequantized_weight(layer, dtype)
        dense.weight = torch.nn.Parameter(weight, requires_grad=False)
        if layer.bias is not None:  # bitsandbytes adds the bias in the compute dtype too
            dense.bias = torch.nn.Parameter(layer.bias.data.to(dtype), requires_grad=False)
        _put(model, name, dense)
        swapped.append((name, layer))
    return swapped


def requantize(model, swapped: list[tuple[str, torch.nn.Module]]) -> None:
    for name, layer in swapped:
        _put(model, name, layer)


def _put(model, name: str, layer: torch.nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, layer)


def four_bit_bytes(swapped: list[tuple[str, torch.nn.Module]]) -> int:
    """Memory the swapped 4-bit weights take: packed values and their absmax scales (bytes)."""
    return sum(layer.weight.data.nbytes + layer.weight.quant_state.absmax.nbytes for _, layer in swapped)


def extra_bytes(swapped: list[tuple[str, torch.nn.Module]]) -> int:
    """Memory the dense copies take beyond the 4-bit weights they replace (bytes)."""
    dense = sum(layer.in_features * layer.out_features * _dtype(layer).itemsize for _, layer in swapped)
    return dense - four_bit_bytes(swapped)


def _dtype(layer) -> torch.dtype:
    """The dtype bitsandbytes computes a 4-bit layer in."""
    return layer.compute_dtype or layer.weight.quant_state.dtype


def _layer_forward(forward, hidden_states, *args, **kwargs):
    return forward(hidden_states, *args, **kwargs)


class _SwiGLUForBackward(torch.autograd.Function):
    """silu(gate) * up for a recompute, whose output's value nobody reads: reentrant checkpointing runs the layer
    again only to build its graph, then back-propagates the gradient the down projection already gave. So the
    product is not computed (an uninitialised tensor of its shape stands for it) and backward is silu * mul's own.
    That is one pass less a layer and step: reading gate and up and writing the product, three [tokens x 8,960]
    tensors."""

    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return torch.empty_like(gate)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        gate, up = ctx.saved_tensors
        return torch.ops.aten.silu_backward(grad * up, gate), grad * torch.nn.functional.silu(gate)


def _to_down(layer, hidden_states, value: bool = True, **kwargs):
    """Qwen2DecoderLayer.forward (transformers 5.x) up to its MLP's down projection: the residual stream after
    attention, and the down projection's input. The layer's output is the first plus the down projection of the
    second (tests/train/test_compile.py checks it against transformers' own forward). value=False: the recompute
    in backward, where the down projection's input is not computed (`_SwiGLUForBackward`)."""
    residual = hidden_states
    hidden_states, _ = layer.self_attn(hidden_states=layer.input_layernorm(hidden_states), **kwargs)
    residual = residual + hidden_states
    hidden_states = layer.post_attention_layernorm(residual)
    mlp = layer.mlp
    gate, up = mlp.gate_proj(hidden_states), mlp.up_proj(hidden_states)
    return residual, (mlp.act_fn(gate) * up if value else _SwiGLUForBackward.apply(gate, up))


def splits_down(layer) -> bool:
    """Whether a layer's recompute can stop before its MLP's down projection: a Qwen2 decoder layer as transformers
    writes it, whose down projection is a frozen plain linear (no LoRA on it). Its backward needs only the
    frozen weight, not the input, so nothing more is kept and its matmul (29 % of a Qwen2.5-1.5B layer's FLOPs) is
    not computed again. With LoRA on it (v3's seven linears) its input would be kept for every layer instead."""
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2MLP

    down = getattr(getattr(layer, "mlp", None), "down_proj", None)
    return (type(layer).forward is Qwen2DecoderLayer.forward and type(layer.mlp).forward is Qwen2MLP.forward
            and getattr(layer.mlp.config, "hidden_act", None) == "silu"  # _SwiGLUForBackward's derivative
            and type(down) is torch.nn.Linear and not down.weight.requires_grad)


class CompiledLayer:
    """A decoder layer's forward through compiled code, set as the layer's own `forward` (so parameter names, and
    the adapter saved from them, are unchanged). `checkpointed` is read at each call.

    In training, a layer that `splits_down` runs the compiled `_to_down` (inside the checkpoint when checkpointed)
    and adds its down projection after it, outside: the recompute in backward stops before that matmul and
    does not compute its input (`value=False`). Otherwise the whole layer runs through the compiled
    `_layer_forward`."""

    def __init__(self, layer, step, to_down, checkpointed: bool):
        self.layer, self.step, self.checkpointed = layer, step, checkpointed
        self.to_down = to_down if splits_down(layer) else None
        self.forward = partial(type(layer).forward, layer)

    def __call__(self, hidden_states, *args, **kwargs):
        if self.layer.training and self.to_down is not None and not args:
            if self.checkpointed:
                residual, act = checkpoint(partial(self._checkpointed_to_down, **kwargs), hidden_states,
                                           use_reentrant=True)
            else:
                residual, act = self.to_down(self.layer, hidden_states, **kwargs)
            return residual + self.layer.mlp.down_proj(act)
        if self.checkpointed and self.layer.training:  # what transformers' own checkpointing does, around the graph
            return checkpoint(partial(self.step, self.forward, **kwargs), hidden_states, *args, use_reentrant=True)
        return self.step(self.forward, hidden_states, *args, **kwargs)

    def _checkpointed_to_down(self, hidden_states, **kwargs):
        """Reentrant checkpointing runs this twice: without grad (the forward: the down projection's input is
        computed) and with it (the recompute in backward: only the graph is needed, `_SwiGLUForBackward`)."""
        return self.to_down(self.layer, hidden_states, value=not torch.is_grad_enabled(), **kwargs)


def compile_layers(model, checkpointed: bool) -> int:
    """Compile every decoder layer (see the module docstring); returns how many. The model must not have
    transformers' checkpointing enabled (jobs.train.model.load_model leaves it off when compile is set): the
    compiled layers checkpoint themselves."""
    use_compile_cache()
    # dynamic: a packed row's length changes every step; a graph is compiled at its first call only
    options = {"fallback_random": True}  # LoRA dropout's masks drawn by torch's own generator (module docstring)
    step = torch.compile(_layer_forward, dynamic=True, options=options)
    to_down = torch.compile(_to_down, dynamic=True, options=options)
    layers = decoder_layers(model)
    for layer in layers:
        layer.forward = CompiledLayer(layer, step, to_down, checkpointed)
    return len(layers)


def checkpointed_layers(model) -> list[bool]:
    """Which decoder layers recompute their forward in backward."""
    return [layer.forward.checkpointed if isinstance(layer.forward, CompiledLayer) else layer.gradient_checkpointing
            for layer in decoder_layers(model)]


def set_checkpoint_layers(model, n: int) -> None:
    """Checkpoint the first n decoder layers; the model must have had checkpointing enabled at load."""
    for i, layer in enumerate(decoder_layers(model)):
        if isinstance(layer.forward, CompiledLayer):
            layer.forward.checkpointed = i < n
        else:
            layer.gradient_checkpointing = i < n


ALLOC_CONF = "expandable_segments:True"


def expandable_segments() -> None:
    """The CUDA allocator grows its memory as segments that extend (PYTORCH_CUDA_ALLOC_CONF=expandable_segments)
    rather than as fixed blocks. A packed step's row length changes every step, so its largest tensors (each
    layer's [tokens x 8,960] gate and up) change size with it; fixed blocks cached for earlier sizes did not fit
    later ones, and the reserved memory grew with the longest row seen (10.22 GiB reserved for 7.43 allocated at
    32 examples a step on an H100). Expandable, the same run reserved 7.58 GiB at the same speed (54,787 against
    54,730 tokens/s in one call, docs/benchmarks.md): headroom on the 12 GB card. A setting the user exported
    wins. The allocator reads it when CUDA starts in this process: call before the first CUDA call (pick_device's
    included); it is only read on a GPU."""
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", ALLOC_CONF)


def make_deterministic(device: torch.device) -> None:
    """train.execution.deterministic: this process runs deterministic kernels only, so a run repeats bit for bit
    and a resumed one ends as an uninterrupted one does (the GPU tier's resume test, H200). With the default kernels
    two uninterrupted runs differed by up to 2.2e-4 on an H100 (docs/benchmarks.md, GPU test tier); the likely
    kernel is flash attention's backward, which sums dQ with atomic adds in whatever order the blocks finish.
    torch.use_deterministic_algorithms gives flash attention its deterministic backward, refuses kernels that have
    none, and turns on inductor's deterministic mode (no autotuning by timing);
    cuBLAS needs a fixed workspace, set before its first handle (the process's first matmul). Memory torch.empty
    returns is not filled (the mode's default, a kernel per allocation): nothing here reads memory before writing
    it. Call before the model loads. A CPU run needs none of it: its kernels are already deterministic."""
    if device.type != "cuda":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.utils.deterministic.fill_uninitialized_memory = False


def apply(model, spec) -> dict:
    """Apply the load-time knobs to a model from jobs.train.model.load_model; returns what was done.
    checkpoint_layers: fit is applied by the preflight, which measures what fits. The spec loader has checked
    that the knobs apply (dequantize_once with an NF4 base, fit with checkpointing, compile with no 4-bit layer).
    Compiling happens at the first forward pass (the preflight's, on a GPU)."""
    ex, done = spec.train.execution, {}
    if ex.dequantize_once:
        swapped = dequantize_once(model)  # the 4-bit layers are dropped here: their memory is freed
        done["dequantized_gib_added"] = round(extra_bytes(swapped) / 2 ** 30, 3)
    if ex.compile:
        done["compiled_layers"] = compile_layers(model, ex.gradient_checkpointing)
    return done
