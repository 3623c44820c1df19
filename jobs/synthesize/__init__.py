"""The synthesis stage: a curated dataset folder in, the same with fact-based synthetic examples added out.

    python -m jobs.synthesize --spec data/builds/v2.yaml --dataset CURATED_DIR --out DATASET_DIR

prompts.py   the writer's protocol: facts (a choice per sentence), cloze (a choice of phrase), Q&A, paraphrases
(writers: jobs/core/engine/writers.py, the engine or an OpenAI-compatible endpoint, shared with `make new`)
cache.py     every reply in the store, keyed by paragraph, prompt version, writer, sampling and seed
plan.py      paragraphs -> requests -> candidates; filters.py: format, length, language, grounding
rows.py      similarity, chat rows with provenance, eval leakage, near duplicates
summary.py   stats.json's synthesis section (fact coverage, every filter's count and samples), the summary
run.py       the stage function
"""

from jobs.core.errors import QslmError


class SynthesisError(QslmError):
    """The synthesis stage cannot go on; the message names the input, the writer or the value, and the fix."""
