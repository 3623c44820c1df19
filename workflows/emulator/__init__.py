"""The local Docker runner that plays Argo: a development tool, kept apart from the pipeline definition.

    python -m workflows.emulator.run --tag smoke     (make local-run)

run.py walks the rendered workflow's DAG as Argo would; pod.py runs one step as a pod under the cluster's
conditions (user, groups, read-only root, artifact modes); lint.py checks those conditions in rendered YAML.
May import: workflows, jobs.core (no ML code).
"""
