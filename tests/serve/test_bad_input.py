"""Bad input to ask, serve and export: one line on stderr naming the problem and the fix, exit status 2."""

from __future__ import annotations

import pytest

from jobs.core.store import keys
from jobs.serve import api, ask, export
from tests.serve.conftest import ADAPTER_FILES, commit_fake_build

ENTRY_POINTS = [("ask", ask.main, ["-q", "hello"]), ("serve", api.main, ["--port", "1"]), ("export", export.main, [])]


def _run(main, args, capsys) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("stage,main,extra", ENTRY_POINTS)
def test_an_unknown_tag_names_the_builds_that_exist(fake_store, smoke_spec_dict, capsys, stage, main, extra):
    commit_fake_build(fake_store, "good", smoke_spec_dict, {"adapter": ADAPTER_FILES})
    err = _run(main, ["--tag", "nope", *extra], capsys)
    assert err.startswith(f"{stage}: error: build 'nope' is not complete") and "complete builds: good" in err


def test_an_incomplete_tag_is_refused(fake_store, capsys):
    fake_store.put_bytes(keys.artifact_prefix("half", "adapter") + "adapter_config.json", b"{}")  # still building
    err = _run(ask.main, ["--tag", "half", "-q", "hello"], capsys)
    assert "build 'half' is not complete" in err and "no builds/half/manifest.json" in err


def test_a_tampered_adapter_file_is_refused(fake_store, smoke_spec_dict, capsys):
    commit_fake_build(fake_store, "good", smoke_spec_dict, {"adapter": ADAPTER_FILES})
    fake_store.put_bytes(keys.artifact_prefix("good", "adapter") + "adapter_model.safetensors", b"swapped")
    err = _run(ask.main, ["--tag", "good", "-q", "hello"], capsys)
    assert "does not match its manifest (adapter): adapter_model.safetensors (sha256 differs" in err
    assert "Do not use or promote it" in err


def test_a_missing_base_model_gives_the_builds_own_message(fake_store, smoke_spec_dict, capsys, tmp_path,
                                                           monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("QSLM_BASE_MODEL", raising=False)
    spec = {**smoke_spec_dict, "base_model": {"id": "qslm-test/absent-model", "revision": None, "path": None,
                                              "tiny": None}}
    commit_fake_build(fake_store, "remote", spec, {"adapter": ADAPTER_FILES})
    err = _run(ask.main, ["--tag", "remote", "-q", "hello"], capsys)
    assert err.startswith("ask: error: base model 'qslm-test/absent-model'")
    assert "is not in the Hugging Face cache" in err and "QSLM_BASE_MODEL" in err


def test_no_version_and_nothing_promoted(fake_store, smoke_spec_dict, capsys):
    commit_fake_build(fake_store, "good", smoke_spec_dict, {"adapter": ADAPTER_FILES})
    err = _run(ask.main, ["-q", "hello"], capsys)
    assert "no VERSION given and no build is promoted" in err and "VERSION=<tag>" in err


def test_an_export_quantization_llama_cpp_does_not_offer(fake_store, smoke_spec_dict, capsys):
    commit_fake_build(fake_store, "good", smoke_spec_dict, {a: ADAPTER_FILES for a in ("adapter", "dataset", "report")})
    err = _run(export.main, ["--tag", "good", "--format", "gguf", "--quant", "q9_9"], capsys)
    assert "QUANT=Q9_9 is not a llama.cpp type offered here; pick one of" in err and "Q4_K_M" in err
