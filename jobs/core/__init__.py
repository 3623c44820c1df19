"""What every stage shares, in packages by role. Each package's docstring says what it holds and may import;
tests/test_architecture.py enforces it.

    errors.py  the one error family (QslmError); imports nothing
    repo.py    the repository root and its data folders; imports nothing
    progress.py the progress event file of a running build (standard library only); imports nothing
    spec/      the build definition: spec, tags, suite, overrides, metric vocabulary   -> errors, repo
    store/     the store and its records: keys, backends, publish, registry, gc,
               provenance, dataset folders, the store CLI                              -> errors, repo, spec
    text/      text tools: prose (sentences, language), near-duplicates, leakage, grounding, embeddings  -> errors, repo, spec
    engine/    model loading and generation: the only torch in core                    -> errors, repo, spec
"""
