# syntax=docker/dockerfile:1
# A Python-only session image: the rsparkhub agent with the Python (ipykernel) and bash
# kernels, and the Spark Connect client. The Kubernetes spawner runs the agent
# (`python -m rsparkhub.agent …`) as the pod's command, as uid 1000.
#
#   docker build -f docker/session-python.Dockerfile \
#       -t registry.example.com/rsparkhub/session-python:0.1.0 .
#
# PYSPARK_VERSION: use the Spark version of the Spark Connect server the sessions talk to
# (spark_kubernetes_image, or your external server).

FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
ARG PYSPARK_VERSION=4.0.1
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg
# KaTeX, embedded in rendered notebooks so their math needs no internet.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libjs-katex \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --root-user-action=ignore \
        /wheels/rsparkhub-*.whl "pyspark[connect]==${PYSPARK_VERSION}" \
    && rm -rf /wheels \
    && python -m ipykernel install --sys-prefix \
    && python -m bash_kernel.install --sys-prefix \
    && groupadd --gid 1000 rsparkhub \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash rsparkhub
USER 1000:1000
WORKDIR /home/rsparkhub
CMD ["bash"]
