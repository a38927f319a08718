# syntax=docker/dockerfile:1
# The R + Python session image on Debian bookworm alone: R 4.2 and its packages from
# Debian's archive (no CRAN, no Posit Package Manager, no Rocker), Python 3.11 of the
# python:*-slim-bookworm base with the rsparkhub agent, ipykernel, bash_kernel and the
# Spark Connect client. Kernels `ir`, `python3` and `bash`. The Kubernetes spawner runs
# the agent (`python -m rsparkhub.agent …`) as the pod's command, as uid 1000.
#
#   docker build -f docker/session-r-debian.Dockerfile \
#       -t registry.example.com/rsparkhub/session-r:0.1.0-debian .
#
# Use it where only a Debian mirror is reachable (scripts/k8s-lab.sh builds it that way);
# docker/session-r.Dockerfile has a newer R (Rocker, 4.4) and pinned CRAN snapshots.
# PYSPARK_VERSION: use the Spark version of the Spark Connect server the sessions talk to.

FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
ARG PYSPARK_VERSION=4.0.1
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg \
    RETICULATE_PYTHON=/usr/local/bin/python
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# R and the packages the agent and users rely on (IRkernel, rmarkdown/knitr with pandoc,
# DBI/RPostgreSQL/dbplyr, ggplot2, reticulate, data.table, dplyr; jsonlite, lobstr and
# rlang for the agent's R side), KaTeX (embedded in rendered documents) and a plot font.
# libpython3.11: reticulate loads Python as a shared library; python:*-slim has its own in
# /usr/local/lib, a base with Debian's python3 (scripts/k8s-lab.sh's) needs Debian's.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpython3.11 r-base-core r-cran-irkernel r-cran-rmarkdown r-cran-knitr r-cran-jsonlite \
        r-cran-ggplot2 r-cran-dbi r-cran-rpostgresql r-cran-dbplyr r-cran-reticulate \
        r-cran-data.table r-cran-dplyr r-cran-lobstr r-cran-r6 r-cran-tibble r-cran-rlang \
        pandoc libjs-katex fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# Python: the agent, its kernels and the Spark Connect client; then the `ir` kernel
# registered next to them (jupyter's system path, /usr/local/share/jupyter).
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --root-user-action=ignore \
        /wheels/rsparkhub-*.whl "pyspark[connect]==${PYSPARK_VERSION}" \
    && rm -rf /wheels \
    && python -m ipykernel install --sys-prefix \
    && python -m bash_kernel.install --sys-prefix \
    && R -q -e 'IRkernel::installspec(user = FALSE)' \
    && Rscript -e 'for (p in c("IRkernel", "rmarkdown", "RPostgreSQL", "reticulate", "lobstr")) library(p, character.only = TRUE)' \
    && python -m rsparkhub.agent.rload \
    && groupadd --gid 1000 rsparkhub \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash rsparkhub
USER 1000:1000
WORKDIR /home/rsparkhub
CMD ["bash"]
