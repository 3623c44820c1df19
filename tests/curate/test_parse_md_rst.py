"""Markdown/MyST and reStructuredText parsing."""

from __future__ import annotations

import re
from pathlib import Path

from jobs.curate import parse_md, parse_rst

MYST = """---
jupytext:
  format_name: myst
kernelspec:
  name: python3
---

+++ {"pycharm": {"name": "#%% md"}}

# Quantum kernels

See {doc}`the intro <intro>` and the **SVM**{cite}`svm2020`. :rocket:

```{contents} Contents
---
local: true
---
```

$\\newcommand{\\ket}[1]{| #1 \\rangle}$

(q_kernel)=
## Definition

The kernel is the overlap of two states:

$$
K(x, x') = |\\langle \\phi(x) | \\phi(x') \\rangle|^2
$$

```{code-cell} ipython3
---
jupyter:
  outputs_hidden: false
---
# Read out variables from input file
import numpy as np
```

```{image} figs/circuit.png
:alt: circuit
```

![Kernel](figures/k_light.png#only-light)

```{math}
:label: eq1
y = \\mathrm{sgn}(w \\cdot x)
```
"""

RST = """.. _kernels:

.. currentmodule:: squlearn.kernel

##############
Kernel Methods
##############

The kernel :math:`K(x,y) = \\Braket{\\phi(x), \\phi(y)}` is an inner product [1]_ of
*feature* vectors, see :class:`~squlearn.kernel.FidelityKernel`.

.. autosummary::
   :nosignatures:

   QSVC
   QGPC

Fidelity kernels
----------------
:math:`k(x,x')=|\\langle\\psi(x)|\\psi(x')\\rangle|^2`

.. code-block:: python

    kernel = FidelityKernel(encoding_circuit=enc)

.. figure:: ../_static/missing.png
    :width: 500

    **Figure 1** The fidelity kernel circuit.

.. jupyter-execute::

   print("hi")
"""


def leaks(text: str) -> list[str]:
    outside = re.sub(r"```.*?```", "", re.sub(r"\\$\\$.*?\\$\\$|\\$[^$]*\\$", "", text, flags=re.S), flags=re.S)
    return re.findall(r"\\{[\\w:-]+\\}`|```\\{|^\\.\\. [\\w-]+::|:\\w+:`|^\\+\\+\\+|^\\(\\w+\\)=|^---$", outside, flags=re.M)


def test_myst(tmp_path):
    path = tmp_path / "nb.md"
    blocks = parse_md.parse(path, MYST)
    text = "\n\n".join(b.text for b in blocks)
    assert "jupytext" not in text and "pycharm" not in text and "newcommand" not in text
    assert "See the intro and the SVM." in text
    assert leaks(text) == []
    sections = {b.section for b in blocks}
    assert ("Quantum kernels", "Definition") in sections
    assert not any("Read out" in s[-1] for s in sections if s)  # a `#` comment in code is no heading
    code = [b for b in blocks if b.kind == "code"]
    assert code[0].text == "```python\n# Read out variables from input file\nimport numpy as np\n```"
    assert "$$\nK(x, x') = |\\langle \\phi(x) | \\phi(x') \\rangle|^2\n$$" in text
    assert "$$\ny = \\mathrm{sgn}(w \\cdot x)\n$$" in text
    assert "circuit.png" not in text and "k_light.png" not in text
    for b in blocks:  # offsets point at the block's source
        assert MYST[b.start:b.end].strip()


def test_rst(tmp_path):
    blocks = parse_rst.parse(tmp_path / "k.rst", RST)
    text = "\n\n".join(b.text for b in blocks)
    assert leaks(text) == []
    assert "currentmodule" not in text and "QSVC" not in text and "nosignatures" not in text
    assert "The kernel $K(x,y) = \\Braket{\\phi(x), \\phi(y)}$ is an inner product of feature vectors, see " \
           "`FidelityKernel`." in text
    assert {b.section for b in blocks} >= {("Kernel Methods",), ("Kernel Methods", "Fidelity kernels")}
    assert "$$\nk(x,x')=|\\langle\\psi(x)|\\psi(x')\\rangle|^2\n$$" in text  # a lone :math: paragraph is display
    code = [b.text for b in blocks if b.kind == "code"]
    assert code == ["```python\nkernel = FidelityKernel(encoding_circuit=enc)\n```", "```python\nprint(\"hi\")\n```"]
    assert any(b.kind == "caption" and "The fidelity kernel circuit." in b.text for b in blocks)
    assert "missing.png" not in text


MKDOCS = """---
title: Home
---
# Out of Tune <br> Noise

See [the paper](https://arxiv.org/abs/2506.09527) :scroll: and the [coefficients](coefficients.md).

![Noise Model](figures/noise_0_light.png#only-light)
![Noise Model](figures/noise_0_dark.png#only-dark)

!!! note "Coherent errors"
    They rotate every gate by a small angle $\\epsilon$.
"""


def test_mkdocs(tmp_path):
    blocks = parse_md.parse(tmp_path / "index.md", MKDOCS)
    assert [b.text for b in blocks] == ["See the paper and the coefficients.",
                                        "Coherent errors: They rotate every gate by a small angle $\\epsilon$."]
    assert blocks[0].section == ("Out of Tune Noise",)


def test_plain_text(tmp_path):
    blocks = parse_md.parse_plain(Path("n.txt"), "First para\nline two.\n\n\nSecond para.\n")
    assert [b.text for b in blocks] == ["First para line two.", "Second para."]


def test_indented_code_is_code_but_list_continuations_are_not(tmp_path):
    text = "Install it:\n\n    pip install qml-essentials\n\n- item one\n\n    still item one\n\nAfter.\n"
    blocks = parse_md.parse(tmp_path / "s.md", text)
    assert [(b.kind, b.text) for b in blocks] == [
        ("prose", "Install it:"), ("code", "```\npip install qml-essentials\n```"), ("prose", "- item one"),
        ("prose", "still item one"), ("prose", "After.")]
