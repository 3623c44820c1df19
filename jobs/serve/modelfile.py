"""The Ollama Modelfile written beside an exported GGUF: `ollama create <tag> -f Modelfile`, then `ollama run <tag>`.

It holds FROM (the GGUF beside it), Qwen2.5's chat template as Ollama's TEMPLATE (Go text/template), the stop
tokens, the build's system prompt (SYSTEM: the one it was trained with) and the decoding its eval scored: greedy
(temperature 0), eval.max_new_tokens as num_predict, and no repeat penalty (Ollama's default 1.1 would change
every answer). The TEMPLATE renders what the tokenizer's chat template renders for chats of system, user and
assistant turns (tools are not offered); a test renders it with Go's text/template and compares. Ollama passes a
request's system message, or SYSTEM when the request has none, as the first of .Messages.
"""

from __future__ import annotations

from pathlib import Path

from jobs.core.engine.basemodel import QWEN25_DEFAULT_SYSTEM
from jobs.serve import ServeError
from jobs.serve.builds import Build

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")

TEMPLATE = (
    '{{- if or (not .Messages) (ne (index .Messages 0).Role "system") }}<|im_start|>system\n'
    + QWEN25_DEFAULT_SYSTEM + "<|im_end|>\n"
    "{{ end }}"
    "{{- range .Messages }}"
    '{{- if or (eq .Role "system") (eq .Role "user") (eq .Role "assistant") }}<|im_start|>{{ .Role }}\n'
    "{{ .Content }}<|im_end|>\n"
    "{{ end }}"
    "{{- end }}<|im_start|>assistant\n"
)


def render(messages: list[dict]) -> str:
    """What TEMPLATE renders, in Python: export compares it with the model's own chat template before it writes
    a TEMPLATE (a base whose template differs gets none, and Ollama uses the one inside the GGUF)."""
    head = "" if messages and messages[0]["role"] == "system" else \
        f"<|im_start|>system\n{QWEN25_DEFAULT_SYSTEM}<|im_end|>\n"
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages
                    if m["role"] in ("system", "user", "assistant"))
    return head + turns + "<|im_start|>assistant\n"


PROBES = [
    [{"role": "user", "content": "What is a quantum kernel?"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Define fidelity."},
     {"role": "assistant", "content": "The overlap of two states."}, {"role": "user", "content": "And noise?"}],
]


def matches_chat_template(tokenizer) -> bool:
    return all(tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) == render(m)
               for m in PROBES)


def _quoted(name: str, text: str) -> str:
    if '"""' in text:
        raise ServeError(f'{name} holds """, which an Ollama Modelfile cannot quote; remove it from the build spec')
    return f'"""{text}"""'


def modelfile(build: Build, gguf: Path, with_template: bool) -> str:
    lines = [f"# Ollama: ollama create {build.tag} -f Modelfile && ollama run {build.tag}", f"FROM ./{gguf.name}"]
    if with_template:
        lines.append(f"TEMPLATE {_quoted('TEMPLATE', TEMPLATE)}")
    system = build.system_prompt()
    if system:
        lines.append(f"SYSTEM {_quoted('curate.system_prompt', system)}")
    lines += [f'PARAMETER stop "{s}"' for s in STOP_TOKENS]
    lines += ["# the decoding the build's eval scored: greedy, at most eval.max_new_tokens, no repeat penalty",
              "PARAMETER temperature 0", f"PARAMETER num_predict {build.spec.eval.max_new_tokens}",
              "PARAMETER repeat_penalty 1"]
    return "\n".join(lines) + "\n"
