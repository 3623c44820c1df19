"""Loading a base model, its tokenizer and an adapter: one place for every stage that runs the model.

    from jobs.core.engine.loading import load_base, load_tokenizer, load_adapter, pick_device

The base is loaded exactly as spec.train defines it (4-bit NF4 or unquantized, in the compute dtype), whether
train, eval or anything else asks, so an adapter always meets the base it was trained on. torch and
transformers are imported inside the functions: the curate image (no torch) can import jobs.core freely.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from jobs.core.errors import QslmError
from jobs.core.engine.quiet import quiet
from jobs.core.spec.schema import BuildSpec

quiet()  # every stage that runs the model imports this module before transformers: its noise stays off the terminal


class ModelError(QslmError):
    """A model, tokenizer or adapter folder that cannot be used, or a device that is not there."""


def pick_device(wanted: str = "auto"):
    """torch.device for a spec's `device` value: auto = the current GPU when torch sees one, else the CPU."""
    import torch

    if wanted == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device is 'cuda' in the build spec but torch {torch.__version__} sees no GPU; "
                         f"set it to 'auto' or 'cpu'")
    if wanted == "cpu" or (wanted == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def use_compile_cache() -> None:
    """Keep torch.compile's on-disk caches (inductor's compiled graphs and kernels, AOTAutograd's) under the
    project's cache folder ($QSLM_CACHE/torchinductor) instead of /tmp: the next process that compiles the same
    layers loads them instead of compiling again (docs/benchmarks.md, cold start), and they survive a reboot or, with
    the folder mounted, a new container. A TORCHINDUCTOR_CACHE_DIR already set wins. Call before the first compile."""
    from jobs.core.engine.basemodel import cache_dir

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "torchinductor"))


def cap_memory(device, budget_gib: float) -> None:
    """Make this process's CUDA allocator refuse memory beyond the budget (train.memory_budget_gib), so that what
    passes on a larger card fits the 12 GB A2000: the train stage and the generation engine's fast path both cap
    themselves. Under the cap, memory the allocator holds but no longer uses (a replaced session's KV cache and CUDA
    graph pool) is given back before the process grows, as it would be on the small card. No-op off CUDA."""
    import torch

    if device.type != "cuda":
        return
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, budget_gib * 2 ** 30 / total), device)


@contextmanager
def gpu_memory_errors(fix: str):
    """Inside, a CUDA out-of-memory error becomes a ModelError: one line with the card's memory as it stood and what
    the user can do (close the other programs on the GPU, or `fix`: the caller's own knob), in place of a traceback.
    On the 12 GB A2000 the budget leaves little room (the rehearsal's synthesis peaked at 11.93 of its 11.99 GiB),
    so a card that also drives a display, or a second job on it, is the expected way to get here."""
    try:
        yield
    except Exception as exc:
        torch = sys.modules.get("torch")  # not imported: not a CUDA error (and the curate image has no torch)
        if torch is None or not isinstance(exc, torch.OutOfMemoryError):
            raise
        raise ModelError(f"the GPU ran out of memory{_memory_state(torch)}: close the other programs that use it "
                         f"(nvidia-smi lists them), or {fix} (torch: {str(exc).splitlines()[0][:200]})") from None


def budget_fix(spec: BuildSpec, spec_path) -> str:
    """gpu_memory_errors' fix for a stage that plans its memory from the spec it was given (train, eval, synthesize)."""
    return f"lower train.memory_budget_gib ({spec.train.memory_budget_gib:g} GiB now) in {spec_path}"


def _memory_state(torch) -> str:
    """' (card: X GiB in all, Y held by this process's allocator, Z by CUDA contexts and other programs)', or ''."""
    try:
        free, total = torch.cuda.mem_get_info()
        held = torch.cuda.memory_reserved()
        name = torch.cuda.get_device_name()
    except Exception:  # no CUDA context to ask (the error came before one, or from elsewhere): say nothing more
        return ""
    gib = 2 ** 30
    return (f" ({name}: {total / gib:.2f} GiB in all, {held / gib:.2f} held by this process's allocator, "
            f"{(total - free - held) / gib:.2f} by CUDA contexts and other programs)")


def compute_dtype(spec: BuildSpec):
    """The torch dtype of spec.train.compute_dtype (the spec loader allows only float16, bfloat16, float32)."""
    import torch

    return getattr(torch, spec.train.compute_dtype)


def load_tokenizer(model_dir: Path):
    """The base model's tokenizer; it must carry a chat template (train and generation format chats with it)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    if tok.chat_template is None:
        raise ModelError(f"{model_dir}: the tokenizer has no chat template; use an -Instruct checkpoint (or one "
                         f"whose tokenizer_config.json has a chat_template)")
    if tok.pad_token is None:  # some checkpoints ship without one; padding is masked out, any token will do
        tok.pad_token = tok.eos_token
    return tok


def load_base(spec: BuildSpec, model_dir: Path, device):
    """The frozen base exactly as spec.train defines it (4-bit NF4 or unquantized, compute dtype)."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = compute_dtype(spec)
    quant = None
    if spec.train.quantization == "nf4":
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    # Unquantized parts (embeddings, norms) load in the compute dtype; no fp32 upcast of the residual stream
    # (prepare_model_for_kbit_training does that and costs speed for no accuracy gain with RMSNorm in fp32).
    return AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quant, dtype=dtype,
                                                device_map={"": str(device)}, attn_implementation="sdpa")


def load_adapter(model, adapter_dir: Path, name: str = "default"):
    """Attach a trained LoRA adapter folder to a loaded base (peft); `model.disable_adapter()` gives the base."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelError(f"{adapter_dir}: not an adapter folder (no adapter_config.json); pass the train stage's "
                         f"--out folder")
    return PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=name)


def dequantized_weight(layer, dtype):
    """A bitsandbytes 4-bit linear's weight in `dtype`: exactly the values its matmul multiplies with (bitsandbytes
    dequantizes then runs F.linear). Training's dequantize_once and the engine's fast path both take it from here,
    so an adapter is trained and judged against the same NF4-rounded base."""
    from bitsandbytes.functional import dequantize_4bit

    return dequantize_4bit(layer.weight.data, layer.weight.quant_state).to(dtype)
