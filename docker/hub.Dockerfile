# syntax=docker/dockerfile:1
# The rsparkhub hub for Kubernetes (spawner = "kubernetes"): the Python package and its
# prebuilt web client. No R, no kernels, no bubblewrap, no Java: sessions run in their own
# pods and Spark in its own drivers.
#
#   docker build -f docker/hub.Dockerfile -t registry.example.com/rsparkhub/hub:0.1.0 .

FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /wheels .

FROM python:3.11.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
RUN groupadd --gid 1000 rsparkhub \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin rsparkhub
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --root-user-action=ignore /wheels/rsparkhub-*.whl \
    && rm -rf /wheels
USER 1000:1000
WORKDIR /data
EXPOSE 8000
ENTRYPOINT ["rsparkhub"]
CMD ["serve"]
