"""Load a GGUF with llama.cpp and answer one prompt, in a process of its own (gguf.answer runs this).

    python -m jobs.serve.gguf_run MODEL.gguf PROMPT MAX_TOKENS      # prints {"text": ..., "tokens": n} as JSON

PROMPT is the whole chat as Ollama's TEMPLATE renders it (special tokens written out), so this also checks the
Modelfile's template against the GGUF's vocabulary. Greedy, ends on Qwen's stop tokens. A separate process
because a llama.cpp that crashes (a segfault in native code) must fail one export or one test with its signal
named, not end the caller.
"""

from __future__ import annotations

import json
import sys

from jobs.serve.modelfile import STOP_TOKENS


def main() -> None:
    import llama_cpp

    path, prompt, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = llama_cpp.Llama(model_path=path, n_ctx=512, verbose=False)
    out = model.create_completion(prompt, max_tokens=max_tokens, temperature=0.0, stop=list(STOP_TOKENS))
    print(json.dumps({"text": out["choices"][0]["text"], "tokens": out["usage"]["completion_tokens"],
                      "prompt_tokens": out["usage"]["prompt_tokens"]}))


if __name__ == "__main__":
    main()
