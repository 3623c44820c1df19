"""Reading documents: PDF page furniture, bad input (skip and report, or fail), ids and discovery."""

from __future__ import annotations

import io

import pypdf
import pytest

from jobs.curate import parse_pdf
from jobs.curate.blocks import BadInput, CurateError
from jobs.curate.documents import load_documents
from tests.curate.pdfs import make_pdf

HEADER = "Estudio de algoritmos cuánticos."


def thesis_pdf() -> bytes:
    body = ("Los kernels cuánticos permiten comparar estados en un espacio de Hilbert de dimensión muy "
            "grande, y su estimación requiere repetir el circuito muchas veces en el ordenador cuán-")
    pages = [
        ["2", "Estado del Arte", "2.1. Kernels Cuánticos", body[:90], body[90:],
         "tico para reducir el error.", "11"],
        [HEADER, "El ruido del hardware degrada la estimación del kernel y por ello usamos técnicas de",
         "mitigación de errores en todos los experimentos de este trabajo.", "12 CAPÍTULO 2. ESTADO DEL ARTE"],
        [HEADER, "2.2. Ruido", "Figura 2.1: Un circuito de kernel.", "Las medidas se repiten mil veces.",
         "CAPÍTULO 2. ESTADO DEL ARTE 13"],
        [HEADER, "Texto final del capítulo con una conclusión breve.", "14 CAPÍTULO 2. ESTADO DEL ARTE"],
    ]
    return make_pdf(pages)


def test_pdf_headers_page_numbers_and_hyphens(tmp_path):
    path = tmp_path / "t.pdf"
    blocks = parse_pdf.parse(path, thesis_pdf())
    text = "\n".join(b.text for b in blocks)
    assert "CAPÍTULO" not in text and HEADER not in text
    assert not any(line.strip().isdigit() for b in blocks for line in b.text.split("\n"))
    assert "ordenador cuántico para reducir el error." in text  # "cuán-" + "tico" joined
    assert "técnicas de mitigación de errores" in text  # a paragraph continues across the page break
    assert blocks[0].section == ("2. Estado del Arte", "2.1. Kernels Cuánticos")
    assert any(b.kind == "caption" and b.text.startswith("Figura 2.1") for b in blocks)
    assert any(b.section == ("2. Estado del Arte", "2.2. Ruido") for b in blocks)


def encrypted_pdf() -> bytes:
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(thesis_pdf())))
    writer.encrypt("secret", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


BAD = {
    "binary.md": (b"# Title\n\x00\x01\x02 binary junk", "binary data"),
    "empty.tex": (b"  \n\n", "empty"),
    "latin1.rst": ("Título\n======\n\nUn kernel cuántico.\n".encode("latin-1"), "not UTF-8"),
    "long.md": (b"# T\n\n" + b"kernel " * 10_000, "characters long"),
    "locked.pdf": (encrypted_pdf, "encrypted"),
    "broken.pdf": (b"%PDF-1.4\nthis is not really a pdf", "unreadable PDF"),
    "scan.pdf": (lambda: make_pdf([[]]), "no text layer"),
}


@pytest.fixture
def bad_sources(tmp_path):
    good = tmp_path / "docs" / "good.md"
    good.parent.mkdir()
    good.write_text("# Kernels\n\nA quantum kernel is an inner product of feature vectors in Hilbert space.\n")
    for name, (data, _) in BAD.items():
        (good.parent / name).write_bytes(data() if callable(data) else data)
    (good.parent / "LICENSE").write_text("MIT")
    return good.parent


def test_bad_input_is_skipped_and_reported(bad_sources):
    docs, skipped, ignored = load_documents([bad_sources], "skip")
    assert [d.path.rsplit("/", 1)[-1] for d in docs] == ["good.md"]
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in skipped}
    assert set(reasons) == set(BAD)
    for name, (_, expected) in BAD.items():
        assert expected in reasons[name], (name, reasons[name])
    assert any("LICENSE" in i for i in ignored)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_fails_naming_the_file(bad_sources, name):
    for other in BAD:
        if other != name:
            (bad_sources / other).unlink()
    with pytest.raises(CurateError) as err:
        load_documents([bad_sources], "fail")
    assert name in str(err.value) and BAD[name][1] in str(err.value) and "on_bad_input" in str(err.value)


def test_bad_input_error_type(tmp_path):
    with pytest.raises(BadInput):
        parse_pdf.read_pages(tmp_path / "x.pdf", b"")


def test_paragraph_ids_are_stable_and_sectioned(tmp_path):
    (tmp_path / "a.md").write_text("# Kernels\n\nFirst paragraph.\n\n## Fidelity\n\nSecond.\n\nThird.\n")
    docs, _, _ = load_documents([tmp_path], "skip")
    ids = [p.id for p in docs[0].paragraphs]
    name = docs[0].path
    assert ids == [f"{name}#kernels#p0", f"{name}#kernels/fidelity#p0", f"{name}#kernels/fidelity#p1"]
    again, _, _ = load_documents([tmp_path], "skip")
    assert [p.id for p in again[0].paragraphs] == ids


def test_missing_source_folder(tmp_path):
    with pytest.raises(CurateError, match="does not exist"):
        load_documents([tmp_path / "nope"], "skip")


def test_bad_included_file_skips_its_document_and_names_the_file(tmp_path):
    (tmp_path / "main.tex").write_text("\\documentclass{article}\n\\begin{document}\n\\input{ch1}\n\\end{document}\n")
    (tmp_path / "ch1.tex").write_bytes("Un kernel cuántico.\n".encode("latin-1"))
    docs, skipped, _ = load_documents([tmp_path], "skip")
    assert docs == [] and skipped[0]["path"].endswith("main.tex")
    assert "ch1.tex (included): not UTF-8" in skipped[0]["reason"]


def test_nothing_outside_a_source_folder_is_read(tmp_path, monkeypatch):
    """Links that leave the folder, hidden files, and \\input of a file elsewhere: none reaches a dataset (or,
    through curate-info.json's sources, the store). Curate used to crash on the first and read the last."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\nThe secret kernel is hunter2.\n")
    (outside / "secret.tex").write_text("The secret kernel is hunter2.\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.md").write_text("# Kernels\nA quantum kernel is an inner product of feature states.\n")
    (src / "link.md").symlink_to(outside / "secret.md")
    (src / "root").symlink_to("/")
    (src / ".env").write_text("AWS_SECRET_ACCESS_KEY=hunter2\n")
    (src / "main.tex").write_text("\\documentclass{article}\n\\begin{document}\n\\section{K}\n"
                                  "\\input{../outside/secret}\n\\end{document}\n")
    for data_root in (str(tmp_path), None):  # inside a data root, then outside every allowed folder
        if data_root is None:
            monkeypatch.delenv("QSLM_DATA_ROOT")
        docs, skipped, ignored = load_documents([src], "skip")
        assert [d.path.rsplit("/", 1)[-1] for d in docs] == ["ok.md"]
        assert not any("hunter2" in p.text for d in docs for p in d.paragraphs)
        assert any("link.md (a link to a file outside its source folder)" in i for i in ignored)
        (reason,) = [s["reason"] for s in skipped if s["path"].endswith("main.tex")]
        assert "secret.tex" in reason and "outside" in reason
    assert "(included): an \\input leads to" in reason  # refused before it was read
    with pytest.raises(CurateError, match="outside the document's folder"):
        load_documents([src], "fail")
