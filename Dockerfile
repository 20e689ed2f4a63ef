# syntax=docker/dockerfile:1.7
# One image for every citybrain service: `docker run IMAGE <subcommand> [options]`, for example
# `docker run citybrain detect --source kafka://kafka:19092 --bus kafka://kafka:19092`.
#
# build: uv installs exactly uv.lock (hashes checked; --locked fails if pyproject.toml and the
#        lock disagree). Dependencies go in a layer of their own, so a source change reuses it.
# final: the same slim Python with the virtualenv and the sources, no pip/uv/compilers, run as
#        an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
# uv itself comes pinned by hash, from the same file `make venv` bootstraps it with.
COPY scripts/uv-bootstrap.txt /tmp/uv-bootstrap.txt
RUN python -m pip install --no-deps --require-hashes -r /tmp/uv-bootstrap.txt
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project
COPY services ./services
COPY simulators ./simulators
# The project itself is not built into the venv: that would fetch setuptools, which the lock
# does not pin. The sources (default configs included) stay at /app on PYTHONPATH, and
# `citybrain` is the same three lines the console script would be.
RUN printf '#!/app/.venv/bin/python\nfrom services.cli import main\nmain()\n' > /app/.venv/bin/citybrain \
    && chmod 0755 /app/.venv/bin/citybrain

FROM ${PYTHON_IMAGE} AS final
# pip and setuptools are not needed at run time; everything is already in /app/.venv.
RUN python -m pip uninstall -y -q pip setuptools wheel 2>/dev/null || true \
    && groupadd --system --gid 10001 citybrain \
    && useradd --system --uid 10001 --gid citybrain --home-dir /app --shell /usr/sbin/nologin citybrain \
    && mkdir -p /app/evidence && chown citybrain:citybrain /app/evidence
COPY --from=build --chown=root:root /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER citybrain
# Evidence snapshots: a volume shared by the detectors (writers) and the control center.
VOLUME ["/app/evidence"]
ENTRYPOINT ["citybrain"]
CMD ["--help"]
