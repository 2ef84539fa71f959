# Store clustering on Dagster: one image for the user-code gRPC server, the webserver and the
# daemon of docker-compose.yml.
#
#   docker build -t store-clustering .
#
# Stages: `build` installs the package with its pinned dependencies into /opt/venv; `runtime`
# (the default target) copies only that environment onto a clean Python image and runs as a
# non-root user, so no compiler, pip or setuptools reaches it. `dev` is the VS Code dev container
# (.devcontainer/devcontainer.json) with the tools `make setup` and `make test` need.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# A venv without pip or setuptools of its own: the base image's pip installs into it.
RUN python -m venv --without-pip /opt/venv
WORKDIR /build
COPY requirements.lock pyproject.toml README.md ./
COPY src ./src
# The lock (uv pip compile, every package pinned) is used as constraints: the runtime
# dependencies of pyproject.toml are installed at exactly the locked versions, and the test
# tools and PySpark of the `dev` extra are left out.
RUN pip --python /opt/venv/bin/python install --constraint requirements.lock . \
 && /opt/venv/bin/python -c "import clustering.dagster.definitions"


FROM ${PYTHON_IMAGE} AS dev
# make and git for the Makefile; PostgreSQL, Java and Chromium for the PostgreSQL, Spark and
# browser tests, installed here because the dev container user is not root.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make git postgresql openjdk-17-jre-headless chromium \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --shell /bin/bash clustering
USER clustering


FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 clustering \
 && useradd --system --uid 10001 --gid clustering --home-dir /app --shell /usr/sbin/nologin clustering
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CLUSTERING_ENV=prod \
    DAGSTER_HOME=/opt/dagster/home
WORKDIR /app
# Owned by the service user so named volumes mounted here are writable: Dagster's compute logs
# (storage/), the warehouse and exports (outputs/), the raw input files (data/raw/).
RUN mkdir -p /opt/dagster/home/storage /app/outputs /app/data/raw /app/deploy \
 && chown -R clustering:clustering /opt/dagster /app
COPY --chown=clustering:clustering deploy/workspace.yaml /app/deploy/workspace.yaml
USER clustering
EXPOSE 3000 4000
CMD ["dagster", "code-server", "start", "-m", "clustering.dagster.definitions", "--location-name", "clustering"]
