# syntax=docker/dockerfile:1
# Spark for rsparkhub's Spark Connect drivers and their executors (spark = 'kubernetes'),
# from Debian bookworm's archive and PyPI alone: for where the apache/spark images cannot
# be pulled (the lab cluster of scripts/k8s-lab.sh builds it with
# `scripts/k8s-lab.sh images spark-debian`). It keeps what rsparkhub uses of apache/spark:
# /opt/spark/bin/spark-submit; /opt/entrypoint.sh (docker/spark-entrypoint.sh: `executor`
# runs Spark's Kubernetes executor backend, any other command runs as it is, and a uid
# without a passwd entry gets one through libnss_wrapper); the `spark` user, uid 185; and
# a read-only root filesystem under any uid, with /tmp and /opt/spark/work-dir writable
# (emptyDirs in the pods). Java is Debian's OpenJDK 17; Spark is the full distribution
# inside the pyspark package (bin/, jars/ with the Kubernetes and Spark Connect jars), to
# which /opt/spark points.
#
#   docker build -f docker/spark-debian.Dockerfile -t registry.example.com/rsparkhub/spark:4.3.0 .
#
# PYSPARK_VERSION: the Spark version of the drivers. It must equal the pyspark (Spark
# Connect client) version of the clients: the session images' PYSPARK_VERSION, and the
# repository's .venv for tests/test_k8s_cluster.py.

FROM python:3.11.11-slim-bookworm
ARG PYSPARK_VERSION=4.3.0
ENV SPARK_HOME=/opt/spark \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
# (the JRE's packages expect man1 to exist: slim images drop /usr/share/man)
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless libnss-wrapper tini \
    && rm -rf /var/lib/apt/lists/* /usr/share/man/*
RUN pip install --no-cache-dir --root-user-action=ignore "pyspark==${PYSPARK_VERSION}"
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN ln -s "$(python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')" \
        /opt/spark \
    && mkdir -p /opt/spark/conf /opt/spark/work-dir \
    && chmod 1777 /opt/spark/work-dir \
    && groupadd --system --gid 185 spark \
    && useradd --system --uid 185 --gid 185 --home-dir /opt/spark/work-dir \
        --no-create-home --shell /bin/false spark \
    && SPARK_LOCAL_IP=127.0.0.1 /opt/spark/bin/spark-submit --version 2>&1 | grep -F "version ${PYSPARK_VERSION}"
COPY docker/spark-entrypoint.sh /opt/entrypoint.sh
WORKDIR /opt/spark/work-dir
USER 185:185
ENTRYPOINT ["/opt/entrypoint.sh"]
