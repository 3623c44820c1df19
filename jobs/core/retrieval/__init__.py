"""Retrieval over a build's own documents: the hybrid index (hybrid.py: BM25 + MiniLM, optionally the multilingual
E5, fused by reciprocal rank), the one prompt layout that puts numbered passages before a question and asks for
citations (rag.py: training's RAFT examples and inference alike), and question sets with their recall@k and MRR
(recall.py: what `python -m jobs.retrieve` reports).

May import: jobs.core.errors, jobs.core.repo, jobs.core.spec, jobs.core.text, jobs.core.store (hashes). No engine:
the embedders load through jobs.core.text.embed.
"""
