"""Word (.docx) and HTML documents, made in the test: sections from headings, kinds, order, bad input."""

from __future__ import annotations

import docx

from jobs.curate import parse_docx, parse_html
from jobs.curate.documents import load_documents

KERNEL = "A quantum kernel is the squared overlap of two feature-map states, estimated shot by shot on hardware."
NOISE = "Depolarizing noise flattens the kernel matrix towards a constant as circuits get deeper."


def make_docx(path):
    d = docx.Document()
    d.add_heading("My thesis", 0)  # style Title
    d.add_heading("Kernels", 1)
    d.add_paragraph(KERNEL)
    d.add_paragraph("Figure 1: the swap test.", style="Caption")
    table = d.add_table(rows=2, cols=2)
    for (i, j), value in {(0, 0): "qubits", (0, 1): "depth", (1, 0): "4", (1, 1): "12"}.items():
        table.cell(i, j).text = value
    d.add_heading("Noise", 2)
    d.add_paragraph(NOISE)
    d.save(path)


def test_docx_headings_paragraphs_captions_tables(tmp_path):
    path = tmp_path / "t.docx"
    make_docx(path)
    blocks = parse_docx.parse(path, path.read_bytes())
    assert [(b.section, b.kind) for b in blocks] == [
        (("My thesis", "Kernels"), "prose"), (("My thesis", "Kernels"), "caption"),
        (("My thesis", "Kernels"), "table"), (("My thesis", "Kernels", "Noise"), "prose")]
    assert blocks[0].text == KERNEL and blocks[2].text == "qubits | depth\n4 | 12"
    assert all(b.start < b.end <= c.start for b, c in zip(blocks, blocks[1:]))


PAGE = f"""<!doctype html><html><head><title>t</title><style>p {{color: red}}</style></head><body>
<nav><a href="/">Home</a></nav>
<h1>Kernels</h1><p>{KERNEL}</p>
<ul><li><p>Fidelity kernels need <b>many</b> shots.</p></li></ul>
<figure><img src="x.png"><figcaption>Figure 1: the swap test.</figcaption></figure>
<h2>Noise</h2><p>{NOISE}</p><pre>k = overlap(a, b)
print(k)</pre>
<table><tr><th>qubits</th><th>depth</th></tr><tr><td>4</td><td>12</td></tr></table>
<script>var x = "not content";</script><footer>Copyright</footer></body></html>"""


def test_html_sections_kinds_and_what_is_not_content(tmp_path):
    blocks = parse_html.parse(tmp_path / "p.html", PAGE)
    assert [(b.section, b.kind) for b in blocks] == [
        (("Kernels",), "prose"), (("Kernels",), "prose"), (("Kernels",), "caption"), (("Kernels", "Noise"), "prose"),
        (("Kernels", "Noise"), "code"), (("Kernels", "Noise"), "table")]
    assert blocks[1].text == "Fidelity kernels need many shots."  # the li read once, not again for its p
    assert blocks[4].text == "k = overlap(a, b)\nprint(k)" and blocks[5].text == "qubits | depth\n4 | 12"
    text = " ".join(b.text for b in blocks)
    assert "Home" not in text and "not content" not in text and "Copyright" not in text


def test_curate_reads_both_and_skips_a_broken_docx(tmp_path):
    make_docx(tmp_path / "a.docx")
    (tmp_path / "b.html").write_text(PAGE, encoding="utf-8")
    (tmp_path / "c.docx").write_bytes(b"this is not a zip")
    docs, skipped, _ = load_documents([tmp_path], "skip")
    assert [(d.path.split("/")[-1], d.format) for d in docs] == [("a.docx", "docx"), ("b.html", "html")]
    assert docs[0].paragraphs[0].id.endswith("a.docx#my-thesis/kernels#p0")
    assert skipped[0]["path"].endswith("c.docx") and "save it again as .docx" in skipped[0]["reason"]
