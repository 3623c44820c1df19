"""The eval stage: dataset + adapter (+ the previous build's report) in, report folder out.

    python -m jobs.eval --spec SPEC --dataset DATASET_DIR --adapter ADAPTER_DIR --out REPORT_DIR [--previous DIR]

run.py the stage function; generate.py the suite as chats for the engine (jobs/core/engine/generation.py); scoring.py pure
per-answer scores; bootstrap.py intervals; the knowledge diagnostics: diagnose.py (verdicts, outcomes, rates, the
build-to-build diff, where to add data), faithfulness.py (answer sentences against their sources), probes.py
(training questions asked again: memorised vs generalised), sources.py (each question's source paragraphs,
ranked by the build's retrieval index where it has one); arms.py the retrieval arms; gate.py the regression gate;
report.py + templates/ the HTML report; dataset.py what eval reads from the dataset folder; compare.py two builds
side by side. The generation benchmark is bench/eval.py.
"""

from jobs.core.errors import QslmError


class EvalError(QslmError):
    """Input the eval stage cannot use (a missing or foreign folder, a report folder in the way)."""
