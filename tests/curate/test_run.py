"""The curate stage end to end: the project's documents, the shared real corpus, determinism, the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from jobs.core.repo import REPO_ROOT
from jobs.curate.blocks import CurateError
from jobs.curate.documents import load_documents
from jobs.core.store.dataset_folder import DATA_FILES, EXAMPLE_SCHEMA, PARAGRAPH_SCHEMA
from jobs.curate.run import curate
from tests.curate.conftest import read_rows

RAW = REPO_ROOT / "data" / "raw"
COLUMNS = EXAMPLE_SCHEMA.names
DISPLAY = re.compile(r"^\$\$\s*$.*?^\$\$\s*$", re.S | re.M)
INLINE = re.compile(r"\$[^$\n]+\$")
CODE = re.compile(r"^```.*?^```\s*$|`[^`\n]+`", re.S | re.M)
STRUCTURAL = re.compile(r"\\(section|subsection|subsubsection|chapter|paragraph|begin|end|input|include|cite\w*|"
                        r"ref|eqref|cref|label|caption|includegraphics|href|url|textbf|emph|texttt|item|maketitle|"
                        r"newcommand|def|usepackage|documentclass)\b|```\{|^\s*\.\. [\w:-]+::|^:::|"
                        r"\{(?:doc|cite|ref|eq|math|numref|term|download|abbr|code-cell|contents|image|figure)[\w:-]*\}|"
                        r":(math|class|func|ref|doc|cite):`|^\+\+\+|^\(\w+\)=\s*$", re.M)


def prose_only(text: str) -> str:
    return INLINE.sub("", DISPLAY.sub("", CODE.sub("", text)))


def leaks(text: str) -> list[str]:
    return [m.group(0) for m in STRUCTURAL.finditer(prose_only(text))]


@pytest.fixture(scope="module")
def raw_dataset(smoke_spec, tiny_model, tmp_path_factory):
    if not RAW.is_dir() or not any(RAW.rglob("*.*")):
        pytest.skip("data/raw holds no documents yet")
    out = tmp_path_factory.mktemp("raw") / "dataset"
    curate(smoke_spec, out, quiet=True)
    return out


def test_dataset_folder_contract(raw_dataset):
    for name in DATA_FILES + ("curate-info.json",):
        assert (raw_dataset / name).is_file(), name
    for split in ("train", "eval"):
        table = pq.read_table(raw_dataset / f"{split}.parquet")
        assert table.column_names == COLUMNS
        assert table.num_rows > 0
    assert pq.read_table(raw_dataset / "heldout.parquet").column_names == ["id", "text", "source_path", "section"]
    assert {r["origin"] for r in read_rows(raw_dataset)} == {"template"}
    paragraphs = read_rows(raw_dataset, "paragraphs")
    assert pq.read_table(raw_dataset / "paragraphs.parquet").column_names == PARAGRAPH_SCHEMA.names
    assert {p["split"] for p in paragraphs} == {"train", "eval"} and all(p["language"] == "en" for p in paragraphs)
    trained = {i for r in read_rows(raw_dataset) for i in r["paragraph_ids"]}
    assert trained <= {i for p in paragraphs for i in [p["id"]] + [c["id"] for c in p["before"] + p["after"]]}
    stats = json.loads((raw_dataset / "stats.json").read_text())
    assert stats["documents"]["count"] >= 1 and stats["paragraphs"]["seen"] >= stats["paragraphs"]["kept"] > 0
    assert sum(stats["tokens"]["bins"].values()) == stats["examples"]["train"] + stats["examples"]["eval"]
    assert set(stats["keyword_coverage"]) == set(json.loads((raw_dataset / "curate-info.json").read_text())
                                                 ["spec"]["curate"]["keywords"])
    info = json.loads((raw_dataset / "curate-info.json").read_text())
    assert info["stage"] == "curate" and info["seconds"] > 0 and len(info["dataset_sha256"]) == 64
    assert all(len(s["sha256"]) == 64 and s["bytes"] > 0 for s in info["sources"])
    train, evals = read_rows(raw_dataset, "train"), read_rows(raw_dataset, "eval")
    sections = lambda rows: {r["paragraph_ids"][0].rsplit("#p", 1)[0] for r in rows}  # noqa: E731
    assert not sections(train) & sections(evals)
    assert len({r["id"] for r in train + evals}) == len(train + evals)


def test_no_eval_question_or_answer_is_copied_into_training(raw_dataset, smoke_spec):
    import yaml

    from jobs.core.text.neardup import shingles

    suite = yaml.safe_load(open(smoke_spec.eval.suite, encoding="utf-8"))
    probes = [shingles(q[f]) for q in suite["questions"] for f in ("question", "reference")]
    for r in read_rows(raw_dataset, "train"):
        text = shingles("\n".join(m["content"] for m in r["messages"]))
        for probe in probes:
            assert len(probe & text) / len(probe) < smoke_spec.curate.near_duplicate_threshold


def copy_raw(dest):
    shutil.copytree(RAW, dest / "raw")
    return dest / "raw"


def test_deterministic_and_content_addressed(smoke_spec, tiny_model, tmp_path):
    if not RAW.is_dir() or not any(RAW.rglob("*.md")):
        pytest.skip("data/raw holds no Markdown yet")
    a, b = copy_raw(tmp_path / "a"), copy_raw(tmp_path / "b")  # same folder name: same relative paths
    first = curate(smoke_spec, tmp_path / "out1", [a], quiet=True)
    # the second run is another process with another string-hash seed: no set or dict order may leak out
    cli = subprocess.run([sys.executable, "-m", "jobs.curate", "--spec", smoke_spec.source_file, "--sources", str(b),
                          "--out", str(tmp_path / "out2")], cwd=REPO_ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert cli.returncode == 0, cli.stderr
    assert "dataset sha256" in cli.stdout  # the human summary
    for name in DATA_FILES:
        assert (tmp_path / "out1" / name).read_bytes() == (tmp_path / "out2" / name).read_bytes(), name
    digest = lambda out: json.loads((out / "curate-info.json").read_text())["dataset_sha256"]  # noqa: E731
    assert digest(tmp_path / "out1") == digest(tmp_path / "out2")
    md = sorted(b.rglob("*.md"))[0]
    md.write_text(md.read_text() + "\n\nA quantum kernel on NISQ hardware suffers from depolarizing noise, "
                                   "which flattens the kernel matrix towards a constant.\n")
    curate(smoke_spec, tmp_path / "out3", [b], quiet=True)
    assert digest(tmp_path / "out3") != digest(tmp_path / "out1")
    assert first["examples"]["train"] > 0


def test_output_folder_rules(smoke_spec, tiny_model, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("precious")
    with pytest.raises(CurateError, match="not empty"):
        curate(smoke_spec, tmp_path / "out", [tmp_path / "out"], quiet=True)
    assert (tmp_path / "out" / "keep.txt").read_text() == "precious"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "k.md").write_text("# Kernels\n\nA quantum kernel is the squared overlap of two "
                                            "feature-map states, estimated on NISQ hardware under noise, shot by shot, "
                                            "with error mitigation.\n")
    (tmp_path / "empty").mkdir()  # an existing empty folder (a volume mount, say) is filled in place
    curate(smoke_spec, tmp_path / "empty", [tmp_path / "docs"], quiet=True)
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == sorted(DATA_FILES + ("curate-info.json",))
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_cli_help_and_bad_input_exit_code(tmp_path):
    help_ = subprocess.run([sys.executable, "-m", "jobs.curate", "--help"], capture_output=True, text=True,
                           cwd=REPO_ROOT)
    assert help_.returncode == 0 and "--sources" in help_.stdout
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "empty.md").write_text("")
    spec = tmp_path / "spec.yaml"
    spec.write_text((REPO_ROOT / "data/builds/smoke.yaml").read_text().replace(
        "  context_paragraphs: 1", "  context_paragraphs: 1\n  on_bad_input: fail"))
    run = subprocess.run([sys.executable, "-m", "jobs.curate", "--spec", str(spec), "--sources",
                          str(tmp_path / "docs"), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                         cwd=REPO_ROOT)
    assert run.returncode == 2 and "empty.md" in run.stderr and "empty" in run.stderr
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ the shared corpus of real documents


def test_leak_check_is_not_vacuous():
    assert leaks("see \\cite{x}\n```{note}\n.. autosummary::\n{doc}`intro`") == ["\\cite", "```{", ".. autosummary::",
                                                                                 "{doc}"]
    assert leaks("$\\begin{pmatrix}a\\end{pmatrix}$ and `\\input` and\n```\n\\section\n```") == []


def test_corpus_every_document_parses_without_leaks(corpus):
    docs, skipped, _ = load_documents([corpus], "fail")
    assert skipped == [] and len(docs) >= 5
    formats = {d.format for d in docs}
    assert {"tex", "pdf", "md", "rst"} <= formats
    for d in docs:
        assert d.paragraphs, d.path
        for p in d.paragraphs:
            if p.kind != "code" and not p.doc.endswith("SOURCES.md"):  # SOURCES.md quotes markup on purpose
                assert leaks(p.text) == [], (p.id, leaks(p.text), p.text[:300])
    tex = next(d for d in docs if d.format == "tex")
    assert any("letter case" in w for w in tex.warnings)
    assert not any("8.3_Quantum_Virtual" in f["path"] for f in tex.files)  # commented-out \input


def test_corpus_dataset(corpus_dataset):
    rows = read_rows(corpus_dataset, "train") + read_rows(corpus_dataset, "eval")
    held = pq.read_table(corpus_dataset / "heldout.parquet").to_pylist()
    stats = json.loads((corpus_dataset / "stats.json").read_text())
    assert stats["documents"]["skipped"] == [] and stats["documents"]["count"] >= 5
    answers = [m["content"] for r in rows for m in r["messages"]]
    texts = answers + [h["text"] for h in held]
    for r in rows:
        if not r["source_path"].endswith("SOURCES.md"):
            for m in r["messages"]:
                assert leaks(m["content"]) == [], (r["paragraph_ids"], leaks(m["content"]))
    # display equations survive, from LaTeX (equation env), MyST ($$) and RST (a lone :math: paragraph)
    joined = "\n".join(texts)
    assert "$$\n\\Psi(\\rho) = \\sum_i K_i \\rho K_i^\\dagger," in joined
    assert "K(x_i,x_j):=|\\langle\\phi(x_j)|\\phi(x_i)\\rangle|^2" in joined
    assert stats["equations"]["examples"]["display"] > 20
    # code stays code: import lines appear only inside fences; a `#` comment in a code cell is never a section
    for text in texts:
        outside = re.sub(r"^```.*?^```\s*$", "", text, flags=re.S | re.M)
        assert not re.search(r"^(import \w+|from [\w.]+ import )", outside, re.M), outside[:300]
    assert any("```python\n" in a for a in answers)
    assert not any("Read out variables" in r["section"] for r in rows + held)
    # the PDF's running headers, footers and page numbers are gone
    pdf = [t for r in rows + held if r["source_path"].endswith(".pdf")
           for t in ([m["content"] for m in r["messages"]] if "messages" in r else [r["text"]])]
    assert pdf
    for text in pdf:
        assert not re.search(r"CAP[IÍ]TULO \d+\.", text), text[:300]
        assert not re.search(r"[\x00-\x08\x0b-\x1f]", text)  # glyph codes of flattened big delimiters
        assert "Estudio de algoritmos de aprendizaje automático basados en computación cuántica." not in text
        assert not any(re.fullmatch(r"\d+|[ivxlc]+", line.strip()) for line in text.split("\n"))


def test_no_matching_paragraph_is_a_clear_error(smoke_spec, tiny_model, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "food.md").write_text("# Food\n\nPasta needs salted water, a large pot and about ten "
                                               "minutes; taste it before draining, then add the sauce at once.\n")
    with pytest.raises(CurateError, match="no training examples.*curate.keywords"):
        curate(smoke_spec, tmp_path / "out", [tmp_path / "docs"], quiet=True)
    assert not (tmp_path / "out").exists()
