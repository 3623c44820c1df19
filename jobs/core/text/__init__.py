"""Text tools the stages share: sentences and the language guess (prose.py), near-duplicate detection
(neardup.py), leakage of eval suites into training data (leakage.py), grounding of numbers, symbols and equations
(grounding.py) and the MiniLM embedder (embed.py: sentence-transformers loads on first use only).

May import: jobs.core.errors, jobs.core.repo, jobs.core.spec. No store, no engine.
"""
