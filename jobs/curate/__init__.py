"""The curate stage: a researcher's documents in, an instruction dataset folder out.

    python -m jobs.curate --spec data/builds/smoke.yaml [--sources DIR ...] --out DATASET_DIR

documents.py   find files, reject bad input (skip and report, or fail), number paragraphs into stable ids
parse_tex.py   LaTeX: \\input/\\include trees, comments, blocks   (tex_macros.py, tex_text.py: macros, text)
parse_md.py    Markdown / MyST / MkDocs and plain text
parse_rst.py   reStructuredText (Sphinx)
parse_pdf.py   text-based PDF: headers, footers, page numbers, hyphenation
select.py      keywords in the text or a section title, captions/tables beside it, MiniLM similarity to the
               eval questions (on where installed), human overrides, context; explain.py: --explain's listing
examples.py    chat examples from templates: explain, define, relate, researcher, engineer
split.py       held-out sections
               (near duplicates, eval leakage, the language guess: jobs/core/text/neardup.py, leakage.py, prose.py)
stats.py       stats.json and the printed summary
run.py         the stage function (+ paragraphs.parquet for synthesis); the benchmark: python -m bench.curate

Overrides (spec `curate.overrides`), for a human in the loop; ids come from `--explain` or a dataset's `paragraph_ids`:
    pin:  ["data/raw/thesis/main.tex#quantum-kernel-methods#p3"]    # always make examples from these
    drop: ["data/raw/notes/device-noise-log.md#device-noise-characterisation-log#p0"]   # never use these
"""
