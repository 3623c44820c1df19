"""The synthesis stage: a curated dataset folder in, the same with fact-based synthetic examples added out.

    python -m jobs.synthesize --spec data/builds/v2.yaml --dataset CURATED_DIR --out DATASET_DIR

prompts.py   the writer's protocol: facts (a choice per sentence), cloze (a choice of phrase), Q&A, paraphrases
writers.py   the engine (the build's base model) or an OpenAI-compatible endpoint; retries with backoff
cache.py     every reply in the store, keyed by paragraph, prompt version, writer, sampling and seed
plan.py      paragraphs -> requests -> candidates; filters.py: format, length, language, grounding
rows.py      similarity, chat rows with provenance, eval leakage, near duplicates
summary.py   stats.json's synthesis section (fact coverage, every filter's count and samples), the summary
run.py       the stage function
"""
