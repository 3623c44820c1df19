"""LaTeX parsing: \\input trees, comments, macros, environments, and what must never leak into text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobs.curate import parse_tex
from jobs.curate.blocks import CurateError

MAIN = r"""\documentclass{article}
\usepackage{mymacros}
\newcommand{\qk}{quantum kernel}
\newcommand{\pair}[2]{#1 and #2}
\def\tr{\text{tr}}
\begin{document}
\title{A thesis}
\maketitle
\section{Kernels}\label{sec:k}
\input{chapters/Kernels}
% \input{chapters/missing}
\section{Noise}
\include{chapters/noise}
\end{document}
"""
KERNELS = r"""A \qk\ compares \pair{two states}{their overlap}, see Fig.~\ref{fig:k}~\cite{havlicek2019}.
% a commented sentence that must not appear
It uses \Lib{} and the \emph{feature map} $U(x)$.

\begin{equation}
  k(x, x') = \tr[\rho(x)\rho(x')] \label{eq:k}
\end{equation}

\begin{figure}[h]
  \centering
  \includegraphics[width=\linewidth]{figures/kernel.png}
  \caption{A fidelity kernel circuit.}
  \label{fig:k}
\end{figure}

\subsection{Code}
\begin{lstlisting}
# not a heading, 100% code
k = kernel(x, y)
\end{lstlisting}
"""
NOISE = r"""\input{chapters/sections/depol}  % relative to the main file, as LaTeX does
"""
DEPOL = r"""The depolarizing channel is $\Delta_p(\rho) = (1-p)\rho + p I/d$.
\begin{itemize}
  \item Kraus operators
  \item \textbf{Error mitigation}
\end{itemize}
"""


def write_thesis(root: Path, kernels_name: str = "Kernels.tex") -> Path:
    (root / "chapters" / "sections").mkdir(parents=True)
    (root / "main.tex").write_text(MAIN)
    (root / "mymacros.sty").write_text("\\ProvidesPackage{mymacros}\n\\def\\Lib{\\href{https://x.org}{QLib}}\n")
    (root / "chapters" / kernels_name).write_text(KERNELS)
    (root / "chapters" / "noise.tex").write_text(NOISE)
    (root / "chapters" / "sections" / "depol.tex").write_text(DEPOL)
    return root / "main.tex"


def test_nested_inputs_sections_macros_math_code(tmp_path):
    blocks, read, warnings = parse_tex.parse(write_thesis(tmp_path))
    assert {p.relative_to(tmp_path).as_posix() for p, _ in read} == {
        "main.tex", "mymacros.sty", "chapters/Kernels.tex", "chapters/noise.tex", "chapters/sections/depol.tex"}
    assert warnings == []
    text = "\n\n".join(b.text for b in blocks)
    assert "A quantum kernel compares two states and their overlap, see the figure." in text
    assert "It uses QLib and the feature map $U(x)$." in text
    assert "commented sentence" not in text
    assert "$$\nk(x, x') = \\text{tr}[\\rho(x)\\rho(x')]\n$$" in text  # display math kept, macro expanded
    assert any(b.kind == "caption" and b.text == "Figure: A fidelity kernel circuit." for b in blocks)
    assert "kernel.png" not in text and "A thesis" not in text
    code = [b for b in blocks if b.kind == "code"]
    assert code and code[0].text.startswith("```python\n# not a heading, 100% code") and code[0].section == (
        "Kernels", "Code")
    depol = next(b for b in blocks if "depolarizing" in b.text)
    assert depol.section == ("Noise",) and depol.file.name == "depol.tex"
    assert "- Kraus operators\n- Error mitigation" in depol.text
    prose = re.sub(r"\$\$.*?\$\$|\$[^$]*\$", "", text, flags=re.S)
    prose = re.sub(r"```.*?```", "", prose, flags=re.S)
    assert not re.search(r"\\[A-Za-z]+|[{}]", prose), prose


def test_offsets_point_into_the_file(tmp_path):
    blocks, _, _ = parse_tex.parse(write_thesis(tmp_path))
    depol = next(b for b in blocks if "depolarizing" in b.text)
    source = depol.file.read_text()
    assert source[depol.start:depol.end].startswith("The depolarizing channel")


def test_case_mismatched_input_is_found_with_a_warning(tmp_path):
    blocks, _, warnings = parse_tex.parse(write_thesis(tmp_path, kernels_name="kernels.tex"))
    assert any("quantum kernel" in b.text for b in blocks)
    assert len(warnings) == 1 and "kernels.tex" in warnings[0] and "letter case" in warnings[0]


def test_missing_input_names_the_file_and_the_line(tmp_path):
    main = write_thesis(tmp_path)
    (tmp_path / "chapters" / "noise.tex").write_text("\\input{chapters/gone}\n")
    with pytest.raises(CurateError) as err:
        parse_tex.parse(main)
    msg = str(err.value)
    assert "noise.tex:1" in msg and "chapters/gone" in msg and "\\input{chapters/gone}" in msg


def test_plan_separates_mains_included_and_orphans(tmp_path):
    write_thesis(tmp_path)
    (tmp_path / "chapters" / "draft.tex").write_text("An unused draft about noise.\n")
    files = sorted(tmp_path.rglob("*.tex"))
    mains, included, unreferenced = parse_tex.plan(files)
    assert [m.name for m in mains] == ["main.tex"]
    assert {p.name for p in included} == {"Kernels.tex", "noise.tex", "depol.tex"}
    assert {p.name for p in unreferenced} == {"draft.tex"}
