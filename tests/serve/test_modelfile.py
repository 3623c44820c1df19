"""The Ollama Modelfile: its TEMPLATE, rendered by Go's text/template as Ollama renders it, gives exactly the
prompt the tokenizer's own chat template gives, on the same conversations; and the Modelfile holds what the build
was trained and evaluated with (system prompt, stop tokens, greedy decoding)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from jobs.core.spec.load import spec_by_tag
from jobs.serve import ServeError
from jobs.serve.builds import Build
from jobs.serve.modelfile import PROBES, STOP_TOKENS, TEMPLATE, matches_chat_template, modelfile, render

CHATS = PROBES + [
    [{"role": "user", "content": "Braces {{ .System }} and {% raw %} and <b>tags</b> & \"quotes\" stay text."}],
    [{"role": "user", "content": "línea 1\n\nlínea 2 – ünïcode ≠ ascii\t"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
     {"role": "user", "content": "Again"}, {"role": "assistant", "content": "Hello again."},
     {"role": "user", "content": "Bye"}],
    [{"role": "system", "content": "You answer from the thesis."}, {"role": "user", "content": "Q"},
     {"role": "system", "content": "A later system turn."}, {"role": "user", "content": "Q2"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": ""}],
]


@pytest.fixture(scope="module")
def go_render(tmp_path_factory):
    if not shutil.which("go"):
        pytest.skip("needs Go to render Ollama's template: apt-get install golang-go (.ci/run installs it)")
    out = tmp_path_factory.mktemp("go") / "ollama_template"
    env = {**os.environ, "GO111MODULE": "off", "GOCACHE": str(out.parent / "cache"), "GOPATH": str(out.parent)}
    subprocess.run(["go", "build", "-o", str(out), str(Path(__file__).with_name("ollama_template.go"))], check=True,
                   env=env, timeout=300)

    def run(template: str, chats: list) -> list[str]:
        done = subprocess.run([str(out)], input=json.dumps({"template": template, "chats": chats}), text=True,
                              capture_output=True, check=True, timeout=60)
        return json.loads(done.stdout)
    return run


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def _template_of(text: str) -> str:
    return re.search(r'^TEMPLATE """(.*?)"""$', text, re.S | re.M).group(1)


def test_the_template_renders_as_the_tokenizers_chat_template(go_render, tokenizer):
    expected = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in CHATS]
    assert go_render(TEMPLATE, CHATS) == expected
    assert [render(c) for c in CHATS] == expected  # the Python twin export uses to decide whether to write it
    assert matches_chat_template(tokenizer)


def test_the_modelfile_of_a_build(go_render, tmp_path):
    spec = spec_by_tag("smoke")
    build = Build("smoke", {}, spec, tmp_path)
    text = modelfile(build, tmp_path / "smoke-Q4_K_M.gguf", with_template=True)
    assert text.splitlines()[1] == "FROM ./smoke-Q4_K_M.gguf"
    assert go_render(_template_of(text), CHATS[:2]) == [render(c) for c in CHATS[:2]]
    assert [line for line in text.splitlines() if line.startswith("PARAMETER stop")] == \
        [f'PARAMETER stop "{s}"' for s in STOP_TOKENS]
    assert "PARAMETER temperature 0\n" in text and "PARAMETER repeat_penalty 1\n" in text
    assert f"PARAMETER num_predict {spec.eval.max_new_tokens}\n" in text
    assert "SYSTEM" not in text  # the smoke spec trains without a system prompt
    assert "TEMPLATE" not in modelfile(build, tmp_path / "x.gguf", with_template=False)


def test_the_builds_system_prompt_becomes_system(tmp_path):
    import dataclasses

    spec = spec_by_tag("smoke")
    spec = dataclasses.replace(spec, curate=dataclasses.replace(spec.curate, system_prompt="Answer from my thesis."))
    text = modelfile(Build("t", {}, spec, tmp_path), tmp_path / "t.gguf", with_template=True)
    assert 'SYSTEM """Answer from my thesis."""' in text
    bad = dataclasses.replace(spec, curate=dataclasses.replace(spec.curate, system_prompt='say """hi"""'))
    with pytest.raises(ServeError, match="an Ollama Modelfile cannot quote"):
        modelfile(Build("t", {}, bad, tmp_path), tmp_path / "t.gguf", with_template=True)
