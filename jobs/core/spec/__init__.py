"""The build definition: the build spec (schema.py, parse.py, checks.py, load.py), build tags (tags.py), the eval
suite (suite.py), the curate overrides file (overrides.py), the audiences questions are written for (audiences.py),
the metric vocabulary (metrics.py) and the one bounded YAML reader they all use (yamlfile.py).

May import: jobs.core.errors, jobs.core.repo. No torch, no store, no engine: every image and the orchestration
load specs.
"""
