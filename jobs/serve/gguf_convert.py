"""Run llama.cpp's convert_hf_to_gguf.py, naming the BPE pre-tokenizer when the converter's table lacks it.

    python -m jobs.serve.gguf_convert LLAMA_CPP_DIR PRE MODEL_DIR --outfile F --outtype f16   # gguf.py runs this

The converter identifies a tokenizer by hashing the token ids of a test string, so every vocabulary it has not
been told about (the smoke build's tiny tokenizer) stops it, even when its pre-tokenizer is a standard one.
With PRE given (gguf.pre_tokenizer read it from tokenizer.json), an unrecognised vocabulary gets that name;
a recognised one keeps the converter's own answer. Run in its own process: the converter owns its imports.
"""

from __future__ import annotations

import runpy
import sys


def main() -> None:
    llama_dir, pre, *args = sys.argv[1:]
    sys.path[:0] = [llama_dir, f"{llama_dir}/gguf-py"]
    from conversion.base import TextModel

    known = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer) -> str:
        try:
            return known(self, tokenizer)
        except NotImplementedError:
            if pre:
                return pre
            raise

    TextModel.get_vocab_base_pre = get_vocab_base_pre
    sys.argv = ["convert_hf_to_gguf.py", *args]
    runpy.run_path(f"{llama_dir}/convert_hf_to_gguf.py", run_name="__main__")


if __name__ == "__main__":
    main()
