"""Model loading and generation: the base model's resolution and the tiny model (basemodel.py), loading a base,
tokenizer and adapters (loading.py), and the generation engine (generation.py: Engine, Sampling) with its paths:
the reference (exactgen.py) and the GPU fast path (fastgen.py, fastmodel.py), sharing decoding.py.

May import: jobs.core.errors, jobs.core.repo, jobs.core.spec. Never the store: a caller hands it folders.
torch is imported inside functions of basemodel.py, loading.py and generation.py (their callers that only resolve a
base model stay torch-free); exactgen, fastgen, fastmodel and decoding import it at the top, and only
generation.py imports them.
"""
