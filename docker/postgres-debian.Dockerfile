# syntax=docker/dockerfile:1
# PostgreSQL from Debian bookworm's own archive, for where the official postgres image
# cannot be pulled (the lab cluster of scripts/k8s-lab.sh, which builds it with
# `scripts/k8s-lab.sh images postgres-debian`). It keeps the interface the small overlay
# uses of postgres:16-bookworm: POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB and PGDATA
# (a database cluster made on the first start), uid/gid 999, pg_isready on PATH, and a
# read-only root filesystem with /var/run/postgresql and /tmp writable. Debian bookworm
# ships PostgreSQL 15, not 16.
#
#   docker build -f docker/postgres-debian.Dockerfile -t registry.example.com/rsparkhub/postgres:15 .

FROM debian:12.8-slim
# uid 999 as in the official image; no "main" cluster made by the package's scripts
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql \
        --shell /bin/sh postgres \
    && mkdir -p /etc/postgresql-common/createcluster.d \
    && echo "create_main_cluster = false" \
        > /etc/postgresql-common/createcluster.d/rsparkhub.conf \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/*
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data \
    LANG=C.UTF-8
COPY docker/postgres-debian-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER 999:999
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
