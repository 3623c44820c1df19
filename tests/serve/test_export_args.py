"""make export's arguments are checked before anything is installed, and an export never deletes or replaces
what it did not write."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jobs.serve import ServeError, export
from jobs.serve.exportargs import claim_folder, problems
from tests.serve.conftest import REPO


@pytest.mark.parametrize("variables,message", [
    (["FORMAT=gguf", "QUANT=Q9_BOGUS"], "export: error: QUANT=Q9_BOGUS is not a llama.cpp type offered here"),
    (["FORMAT=onnx"], "export: error: FORMAT=onnx is not an export format; pick one of hf, gguf"),
])
def test_make_export_refuses_a_bad_value_before_it_installs_anything(tmp_path, variables, message):
    """VENV names a folder that does not exist: had make reached the venv or llama.cpp, it would be there now."""
    venv = tmp_path / "venv"
    done = subprocess.run(["make", "-s", "export", "VERSION=smoke", *variables, f"VENV={venv}",
                           f"PYTHON={sys.executable}"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and message in done.stderr
    assert not venv.exists()


def test_every_problem_at_once_and_lower_case_quants_accepted():
    assert problems("hf", "q8_0", "original") == []
    found = problems("zip", "Q9", "neither")
    assert len(found) == 3 and found[2] == "--gguf-from neither: pick one of dequantized, original"


def test_the_entry_point_checks_arguments_before_it_opens_the_store(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("QSLM_STORE", str(tmp_path / "no-store-here"))
    assert export.main(["--tag", "smoke", "--format", "gguf", "--quant", "Q9_BOGUS"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("export: error: QUANT=Q9_BOGUS is not a llama.cpp type") and "Traceback" not in err
    assert not (tmp_path / "no-store-here").exists()


def test_a_missing_or_empty_folder_is_used_as_it_is(tmp_path):
    assert claim_folder(tmp_path / "new" / "deep", tmp_path / "default", "v2") == (tmp_path / "new" / "deep", "")
    (tmp_path / "empty").mkdir()
    assert claim_folder(tmp_path / "empty", tmp_path / "default", "v2") == (tmp_path / "empty", "")
    assert claim_folder(None, tmp_path / "exports" / "v2", "v2") == (tmp_path / "exports" / "v2", "")


def test_a_folder_that_holds_files_gets_a_new_subfolder_and_keeps_its_files(tmp_path):
    out = tmp_path / "models"
    (out / "v2").mkdir(parents=True)  # a user's own folder that happens to have the tag's name
    (out / "v2" / "notes.txt").write_text("mine")
    (out / "README.md").write_text("my models")
    folder, note = claim_folder(out, tmp_path / "default", "v2")
    assert folder == out / "v2-2" and folder.is_dir() and not any(folder.iterdir())
    assert note == f"{out} already holds files; they stay as they are: writing into {out / 'v2-2'} (new)"
    assert claim_folder(out, tmp_path / "default", "v2")[0] == out / "v2-3"  # never shared between two exports
    assert (out / "v2" / "notes.txt").read_text() == "mine" and (out / "README.md").read_text() == "my models"


def test_the_default_folder_gets_a_new_sibling(tmp_path):
    default = tmp_path / "exports" / "v2"
    default.mkdir(parents=True)
    (default / "README.md").write_text("an earlier export")
    assert claim_folder(None, default, "v2")[0] == tmp_path / "exports" / "v2-2"
    assert (default / "README.md").read_text() == "an earlier export"


def test_a_file_or_an_unwritable_place_is_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ServeError, match="OUT=.*/f is a file; give a folder"):
        claim_folder(tmp_path / "f", tmp_path / "d", "v2")
    with pytest.raises(ServeError, match="cannot make the export folder under .*/f/sub: Not a directory"):
        claim_folder(tmp_path / "f" / "sub", tmp_path / "d", "v2")  # a path through a file: refused even for root
