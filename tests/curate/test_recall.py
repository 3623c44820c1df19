"""Selection recall: a section title or a caption beside a paragraph makes it relevant; --explain says why."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from jobs.core.repo import REPO_ROOT
from jobs.curate import select
from jobs.curate.documents import load_documents
from tests.curate.conftest import curate_spec

# The case from the issue: a subsection whose title names a keyword holds the chapter's key numerical result in a
# paragraph with no keyword, next to a figure caption that names one.
THESIS = r"""\documentclass{article}
\begin{document}
\section{Results}
\subsection{Kernel concentration on hardware}
On eight qubits the off-diagonal Gram entries fell to 0.031 on average, a factor of twelve below the simulator,
and the classifier's accuracy dropped from 0.94 to 0.61 over the same circuits.

\section{Measurements}
We ran each circuit for three days and collected 8192 shots per entry, repeating the calibration every six hours
so that drifts in the readout could be corrected afterwards.
\begin{figure}
\caption{Fidelity of the prepared states per qubit.}
\end{figure}

The readout error stayed below two percent on every qubit during the runs, so no readout correction was applied.

Our group met weekly to discuss the schedule, the budget and the travel plans for the coming conferences in spring.
\end{document}
"""


def _docs(tmp_path):
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "main.tex").write_text(THESIS)
    return load_documents([tmp_path / "thesis"], "skip")[0]


def test_a_section_title_hit_and_a_caption_neighbour_are_selected(tmp_path, smoke_spec):
    docs = _docs(tmp_path)
    spec = curate_spec(smoke_spec, keywords=("kernel", "fidelity"), min_paragraph_chars=60)
    sel = select.select(docs, spec.curate, None, Counter())
    reasons = {s.paragraph.text[:20]: (s.reason, s.keywords) for s in sel.selected}
    assert reasons["On eight qubits the "] == ("title", ["kernel"])
    assert reasons["We ran each circuit "] == ("neighbour", ["fidelity"])
    assert reasons["The readout error st"] == ("neighbour", ["fidelity"])  # on either side of the figure
    assert not any(t.startswith("Our group met") for t in reasons)  # beside nothing relevant: dropped
    why = {p.text[:20]: sel.why[p.id] for d in docs for p in d.paragraphs}
    assert why["Our group met weekly"][0] == "" and "no keyword" in why["Our group met weekly"][1]
    assert why["We ran each circuit "][1].startswith("next to caption p1 naming fidelity")


def test_explain_names_the_reason_for_every_paragraph(tmp_path):
    docs = _docs(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text((REPO_ROOT / "data/builds/smoke.yaml").read_text().replace(
        "  context_paragraphs: 1", "  context_paragraphs: 1\n  semantic_selection: false\n  min_paragraph_chars: 60"))
    run = subprocess.run([sys.executable, "-m", "jobs.curate", "--spec", str(spec), "--sources",
                          str(tmp_path / "thesis"), "--explain"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    for p in docs[0].paragraphs:  # every paragraph is listed by its full id, ready for the overrides file
        assert any(line.split()[-1] == p.id for line in lines if line.startswith("  ") and "#p" in line), p.id

    def verdict(start: str) -> str:
        i = next(i for i, line in enumerate(lines) if start in line)
        return lines[i - 1].split()[0] + " " + lines[i]

    assert verdict("On eight qubits").startswith("KEPT") and 'section title "Kernel concentration on hardware" ' \
        'names kernel' in verdict("On eight qubits")
    assert "next to caption p1 naming fidelity" in verdict("We ran each circuit")
    assert verdict("Our group met").startswith("drop") and "semantic selection: off" in run.stdout
    assert not (tmp_path / "out").exists()  # --explain without --out writes nothing
