"""GGUF for llama.cpp and Ollama, made with llama.cpp's own converter.

The converter (convert_hf_to_gguf.py with its `conversion` and `gguf-py` packages) ships inside the
llama-cpp-python source distribution, at the llama.cpp revision that llama-cpp-python compiles, so converter
and runtime always agree. It is fetched once per llama-cpp-python version with pip and kept under
$QSLM_CACHE/llama.cpp/<version>/. The merged folder becomes an f16 GGUF, which llama.cpp's quantizer (through
llama-cpp-python's binding) turns into the type the user picked. `answer` loads the result and generates from it
in a child process (gguf_run.py), so a llama.cpp that crashes fails the export with the signal named.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from jobs.core.engine.basemodel import cache_dir
from jobs.core.repo import REPO_ROOT
from jobs.serve import ServeError
from jobs.serve.exportargs import QUANTS

# What to do when llama.cpp dies loading or running a GGUF this export wrote (the file itself is kept).
CRASH_HINT = ("the file is kept for inspection; llama.cpp's build here cannot run it: rebuild the binding with "
              "the project's options (rm -f .venv/.gguf && make gguf) and export again, or try QUANT=F16")
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
# Qwen2's split pattern, as transformers writes it into a Qwen2 tokenizer.json (the tiny model's included)
QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def llama_cpp_version() -> str:
    """The installed llama-cpp-python's version, after checking it was built without AMX (see CRASH_HINT)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("llama_cpp_python")
    except PackageNotFoundError:
        raise ServeError("FORMAT=gguf needs llama-cpp-python (it compiles llama.cpp, several minutes on 2 cores): "
                         "make gguf") from None
    import llama_cpp

    if "AMX_INT8 = 1" in llama_cpp.llama_print_system_info().decode(errors="replace"):
        raise ServeError(f"this llama-cpp-python {installed} was compiled with AMX, whose kernels segfault on "
                         f"Q8_0 and K-quant GGUFs (ggml-org/llama.cpp#20824); rebuild it without: rm -f .venv/.gguf "
                         f"&& make gguf")
    return installed


def converter_dir() -> Path:
    """llama.cpp's converter from the llama-cpp-python sdist of the installed version, fetched once."""
    ver = llama_cpp_version()
    out = cache_dir() / "llama.cpp" / ver
    if (out / "convert_hf_to_gguf.py").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", "-d", tmp,
               f"llama-cpp-python=={ver}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if done.returncode or not sdists:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise ServeError(f"could not fetch llama.cpp's converter ({' '.join(cmd[2:])} failed: {last}); run "
                             f"that command with network access and extract vendor/llama.cpp/"
                             f"{{{','.join(CONVERTER_PARTS)}}} from the sdist into {out}")
        prefix = f"{sdists[0].name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
        staged = Path(tmp) / "llama.cpp"
        with tarfile.open(sdists[0]) as tar:
            members = [m for m in tar.getmembers()
                       if m.name.startswith(prefix) and m.name[len(prefix):].startswith(CONVERTER_PARTS)]
            for m in members:
                m.name = m.name[len(prefix):]
            tar.extractall(staged, members=members, filter="data")
        try:
            os.rename(staged, out)
        except OSError:  # another export fetched it first
            pass
    return out


def pre_tokenizer(model_dir: Path) -> str:
    """llama.cpp's name for the BPE pre-tokenizer, for vocabularies its table does not list (the converter knows
    released models such as Qwen2.5 by a hash of their tokens; the smoke build's tiny tokenizer is new). It is
    read from tokenizer.json: Qwen2's split pattern before byte-level is "qwen2", byte-level with GPT-2's own
    pattern is "gpt-2"; anything else is left to the converter, which then names what it does not recognise."""
    pre = json.loads((model_dir / "tokenizer.json").read_text()).get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if [s.get("type") for s in steps] == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True) \
            and steps[0].get("pattern", {}).get("Regex") == QWEN2_SPLIT:
        return "qwen2"
    return ""


def to_f16(merged: Path, out: Path, outtype: str = "f16") -> Path:
    """`out`: the merged folder as an f16 (or bf16) GGUF, by llama.cpp's own converter in a child process."""
    llama = converter_dir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), str(llama), str(llama / "gguf-py")]))
    cmd = [sys.executable, "-m", "jobs.serve.gguf_convert", str(llama), pre_tokenizer(merged), str(merged),
           "--outfile", str(out), "--outtype", outtype]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise ServeError(f"llama.cpp's converter failed on {merged}:\n{done.stderr.strip()[-2000:]}")
    return out


def quantize(f16: Path, out: Path, quant: str) -> Path:
    """`out`: `f16` quantized by llama.cpp to `quant` (one of QUANTS but F16/BF16)."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant}")
    rc = llama_cpp.llama_model_quantize(str(f16).encode(), str(out).encode(), ctypes.byref(params))
    if rc != 0:
        raise ServeError(f"llama.cpp could not quantize {f16} to {quant} (status {rc}); try QUANT=Q8_0 or F16")
    return out


def convert(merged: Path, out: Path, quant: str) -> Path:
    """`out`: a GGUF file of the merged folder at `quant` (one of QUANTS)."""
    f16 = to_f16(merged, out.with_name(out.stem + ".f16.tmp.gguf"), "bf16" if quant == "BF16" else "f16")
    if quant in ("F16", "BF16"):
        os.replace(f16, out)
        return out
    try:
        return quantize(f16, out, quant)
    finally:
        f16.unlink()


def answer(gguf: Path, prompt: str, max_tokens: int = 8, timeout_s: float = 600) -> dict:
    """Load `gguf` with llama.cpp and complete `prompt` greedily, in a child process: {"text", "tokens", ...}.
    A crash (a signal) or a load failure raises ServeError naming it, instead of taking this process down."""
    cmd = [sys.executable, "-m", "jobs.serve.gguf_run", str(gguf), prompt, str(max_tokens)]
    try:
        done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ServeError(f"llama.cpp did not answer from {gguf} within {timeout_s:.0f} s") from None
    last = (done.stderr.strip().splitlines() or [""])[-1]
    if done.returncode < 0:
        raise ServeError(f"llama.cpp crashed ({signal.Signals(-done.returncode).name}) loading or running {gguf}; "
                         f"{CRASH_HINT}")
    if done.returncode:
        raise ServeError(f"llama.cpp could not load or run {gguf}: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    """`python -m jobs.serve.gguf --check` (make gguf runs it): the binding is installed and built without AMX."""
    import argparse

    p = argparse.ArgumentParser(description="Check llama.cpp's binding for FORMAT=gguf exports.")
    p.add_argument("--check", action="store_true", required=True, help="installed, and built without AMX")
    p.parse_args()
    try:
        print(f"llama-cpp-python {llama_cpp_version()} ready for FORMAT=gguf (built without AMX)")
    except ServeError as exc:
        print(f"gguf: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
