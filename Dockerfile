# syntax=docker/dockerfile:1
# algotrade: one image for the three services (the command picks collector, processor or
# trader). Multi-stage: wheels are built in the first stage, the second has no compiler.
# Reproducible: the base image pinned by digest (its tag beside it), every Python package
# at its requirements.lock version (tests/unit/test_stack_files.py checks the lock covers
# what is installed here), the compiler pinned. `hadolint Dockerfile` is clean.

FROM python:3.11.10-slim-bookworm@sha256:840e180ebcc6e5c8efab209c43f5e40fd2af98cb49db5c7103c90539c56bb30e AS build
WORKDIR /src
# A C compiler for the collector's compiled hot path (src/algotrade/adapters/_speedups.c);
# the image itself gets the built wheel, not the compiler. libc6-dev must be the version of
# the libc6 it installs with, so it is pinned to bookworm's glibc 2.36-9, any of its
# security updates (Debian's mirror serves only the newest).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends gcc=4:12.2.0-3 "libc6-dev=2.36-9+deb12u*" \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir --upgrade pip==24.3.1
# Every dependency at its locked version, then algotrade itself without resolving any.
COPY requirements.lock ./
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels --requirement requirements.lock
COPY pyproject.toml setup.py README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11.10-slim-bookworm@sha256:840e180ebcc6e5c8efab209c43f5e40fd2af98cb49db5c7103c90539c56bb30e
LABEL org.opencontainers.image.title="algotrade" \
      org.opencontainers.image.description="Collect Binance data, run a strategy, act on its signals."
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ALGOTRADE_HTTP_HOST=0.0.0.0
ARG ALGOTRADE_VERSION=0.1.0
# Offline, from the wheels only: a dependency missing from the lock fails the build instead
# of being fetched at whatever version is newest. The extras: profiling (Pyroscope) and
# trading (Ed25519 keys for --gateway binance).
COPY --from=build /wheels /wheels
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --no-index --find-links=/wheels \
        --constraint /tmp/requirements.lock "algotrade[profiling,trading]==${ALGOTRADE_VERSION}" \
    && pip check \
    && rm -rf /wheels /tmp/requirements.lock \
    && groupadd --system --gid 10001 algotrade \
    && useradd --system --uid 10001 --gid algotrade --home-dir /app --create-home algotrade
WORKDIR /app
USER 10001:10001
EXPOSE 8080 8082 8083
# The service's own /healthcheck: its port comes from ALGOTRADE_HTTP_PORT (set per service
# in docker-compose.yml), else the first of 8080, 8082, 8083 that answers.
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 \
    CMD ["algotrade", "health"]
# SIGTERM (docker stop) drains in-flight work and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["algotrade"]
CMD ["--help"]
