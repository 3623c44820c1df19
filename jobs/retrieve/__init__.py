"""The retrieval command: any question set through a build's index (python -m jobs.retrieve)."""
