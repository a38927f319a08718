# syntax=docker/dockerfile:1
# The R + Python session image, on a Rocker base: R with IRkernel, rmarkdown/knitr and
# pandoc, DBI/RPostgreSQL/dbplyr, ggplot2, reticulate; Python with the rsparkhub agent,
# ipykernel, bash_kernel and the Spark Connect client (no Java: Spark runs elsewhere). The
# Kubernetes spawner runs the agent (`python -m rsparkhub.agent …`) as the pod's command,
# as uid 1000.
#
#   docker build -f docker/session-r.Dockerfile \
#       -t registry.example.com/rsparkhub/session-r:0.1.0 .
#
# Python here is Ubuntu 24.04's python3 (3.12; the package needs >= 3.11) in a virtualenv
# that also sees the user site, so `pip install --user` lands on the per-user volume.
# PYSPARK_VERSION: use the Spark version of the Spark Connect server the sessions talk to.

FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels .

FROM rocker/r-ver:4.4.2
ARG PYSPARK_VERSION=4.0.1
ENV VIRTUAL_ENV=/opt/rsparkhub/venv \
    PATH=/opt/rsparkhub/venv/bin:$PATH \
    RETICULATE_PYTHON=/opt/rsparkhub/venv/bin/python \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# System packages: Python, pandoc for R Markdown, KaTeX (embedded in rendered documents so
# their math needs no internet), libpq for RPostgreSQL, a font for plots.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev pandoc libjs-katex libpq-dev fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*

# Python: the agent, its kernels and the Spark Connect client.
COPY --from=build /wheels /wheels
RUN python3 -m venv --system-site-packages "$VIRTUAL_ENV" \
    && pip install --no-cache-dir /wheels/rsparkhub-*.whl "pyspark[connect]==${PYSPARK_VERSION}" \
    && rm -rf /wheels \
    && python -m ipykernel install --sys-prefix \
    && python -m bash_kernel.install --sys-prefix

# R packages from the base image's dated Posit Package Manager snapshot (binaries), and
# the `ir` kernel registered system-wide.
RUN install2.r --error --skipinstalled --ncpus -1 \
        IRkernel rmarkdown knitr jsonlite ggplot2 DBI RPostgreSQL dbplyr reticulate \
        data.table dplyr lobstr R6 tibble rlang \
    && rm -rf /tmp/downloaded_packages \
    && R -q -e 'IRkernel::installspec(user = FALSE)' \
    && Rscript -e 'for (p in c("IRkernel", "rmarkdown", "RPostgreSQL", "reticulate")) library(p, character.only = TRUE)' \
    && python -m rsparkhub.agent.rload

# The session user (the base image already removed Ubuntu's uid 1000).
RUN if ! getent group 1000 >/dev/null; then groupadd --gid 1000 rsparkhub; fi \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash rsparkhub
USER 1000:1000
WORKDIR /home/rsparkhub
CMD ["bash"]
