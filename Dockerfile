# syntax=docker/dockerfile:1
# algotrade: one image for the three services (the command picks collector, processor or
# trader). Multi-stage: wheels are built in the first stage, the second has no compiler.

FROM python:3.11.10-slim-bookworm AS build
WORKDIR /src
# A C compiler for the collector's compiled hot path (src/algotrade/adapters/_speedups.c);
# the image itself gets the built wheel, not the compiler.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir --upgrade pip==24.3.1
COPY pyproject.toml setup.py README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[profiling]"

FROM python:3.11.10-slim-bookworm
LABEL org.opencontainers.image.title="algotrade" \
      org.opencontainers.image.description="Collect Binance data, run a strategy, act on its signals."
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ALGOTRADE_HTTP_HOST=0.0.0.0
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels "algotrade[profiling]" \
    && rm -rf /wheels \
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
