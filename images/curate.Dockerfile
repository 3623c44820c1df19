# curate: documents in, dataset folder out (python -m jobs.curate). Core + the curate extra, no torch.
# The steps that need only core run from this image too: the spec check (python -m jobs.core.spec), publish
# (python -m jobs.core.store.publish), and the workflow's own small steps that read no ML code: the git push's plan
# (python -m workflows.trigger) and the build's verdict (python -m workflows.verdict).
#   python images/build_images.py --tag v2 curate        # or: make images VERSION=v2
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    QSLM_CACHE=/cache \
    HF_HOME=/cache/huggingface \
    HF_HUB_OFFLINE=1

# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it; /cache is the model-cache volume's mount point.
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/qslm qslm \
 && mkdir -p /cache && chown qslm:qslm /cache

# Dependencies before sources: this layer is rebuilt only when pyproject.toml or the constraints (the exact
# version of every package) change. Kept lean, in the same layer: bytecode is compiled at import instead of
# stored (~120 MB; costs ~2 s per run), the packages' own test suites go, and so do pyarrow's Flight RPC and
# S3 filesystem (~50 MB; the store talks to S3 through boto3).
COPY pyproject.toml images/requirements.py images/constraints.txt /tmp/build/
RUN python /tmp/build/requirements.py curate > /tmp/build/requirements.txt \
 && python -m pip install --no-cache-dir --no-compile -r /tmp/build/requirements.txt -c /tmp/build/constraints.txt \
 && site=$(python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") \
 && find "$site" -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} + \
 && rm -rf "$site"/pyarrow/include "$site"/pyarrow/src "$site"/pyarrow/_pyarrow_cpp_tests* \
           "$site"/pyarrow/_flight* "$site"/pyarrow/libarrow_flight* "$site"/pyarrow/libarrow_python_flight* \
           "$site"/pyarrow/_s3fs* "$site"/pyarrow/libarrow_s3* \
 && python -c "import pyarrow.parquet, pyarrow.fs" \
 && rm -rf /tmp/build

COPY jobs/ /app/jobs/
COPY workflows/__init__.py workflows/names.py workflows/payload.py workflows/stages.py workflows/trigger.py workflows/verdict.py /app/workflows/
COPY data/ /app/data/
WORKDIR /app
USER 10001:10001

# Last, so a new commit or tag rebuilds only this metadata, not the layers above.
ARG GIT_COMMIT=unknown
ARG BUILD_TAG=dev
LABEL org.opencontainers.image.title="qslm-curate" \
      org.opencontainers.image.description="quantum-slm curate stage: documents in, instruction dataset out" \
      org.opencontainers.image.source="quantum-slm" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.version="${BUILD_TAG}" \
      qslm.stage="curate"
ENV QSLM_GIT_COMMIT=${GIT_COMMIT} QSLM_BUILD_TAG=${BUILD_TAG}
ENTRYPOINT ["python", "-m", "jobs.curate"]
CMD ["--help"]
