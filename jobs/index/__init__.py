"""The index stage: a build's retrieval index from its dataset's catalogue (jobs/core/retrieval/hybrid.py)."""
