"""The store and its records: key layout (keys.py), the local-directory and S3 backends (backends.py), publishing
a build with its manifest last (publish.py), the registry of promoted builds (registry.py), garbage collection
(gc.py), hashes and versions (provenance.py), the dataset folder format (dataset_folder.py) and the store CLI
(cli.py: `make list`, `show`, `verify`, `promote`, `rollback`, `gc`).

May import: jobs.core.errors, jobs.core.repo, jobs.core.spec. No torch and no engine: the curate image and the
orchestration use it.
"""
