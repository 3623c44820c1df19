"""`make new` and `make review`: from a folder of a researcher's documents to a build spec and a reviewed suite.

    python -m jobs.new --tag mine --sources ~/thesis            # make new VERSION=mine SOURCES=~/thesis
    python -m jobs.new.review --tag mine                        # make review VERSION=mine

run.py       copy (or link) the documents, parse them as curate does, write the spec and the draft suite
keywords.py  the terms that distinguish the documents (TF-IDF against a general background), section titles
draft.py     extractive questions across every section, references never verbatim, abstain items, leakage
phrase.py    a writer (jobs/core/engine/writers.py) phrases the drafts as a person would ask, filtered for grounding
specfile.py  the spec's YAML, every value commented
review.py    the terminal review (accept, edit, drop); the logic is jobs/core/spec/suite_review.py, for the studio too
"""
