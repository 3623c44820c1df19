"""The curate stage: a researcher's documents in, an instruction dataset folder out.

    python -m jobs.curate --spec data/builds/smoke.yaml [--sources DIR ...] --out DATASET_DIR

documents.py   find files, reject bad input (skip and report, or fail), number paragraphs into stable ids
parse_tex.py   LaTeX: \\input/\\include trees, comments, blocks   (tex_macros.py, tex_text.py: macros, text)
parse_md.py    Markdown / MyST / MkDocs and plain text
parse_rst.py   reStructuredText (Sphinx)
parse_pdf.py   text-based PDF: headers, footers, page numbers, hyphenation
select.py      keywords, optional MiniLM similarity to the eval questions, human overrides, context
examples.py    chat examples from templates: explain, define, relate, researcher, engineer
dedup.py       exact and near-duplicate paragraphs (MinHash), duplicate examples, eval leakage
split.py       held-out sections
stats.py       stats.json and the printed summary
run.py         the stage function; bench.py: the benchmark (python -m jobs.curate.bench)

Overrides (spec `curate.overrides`), for a human in the loop; ids come from a dataset's `paragraph_ids`:
    pin:  ["data/raw/thesis/main.tex#quantum-kernel-methods#p3"]    # always make examples from these
    drop: ["data/raw/notes/device-noise-log.md#device-noise-characterisation-log#p0"]   # never use these
"""
