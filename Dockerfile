# Resident Gateway: a two-stage image, run as an unprivileged user.
#   docker build -t resident-gateway .
#   docker run --rm -p 8000:8000 -v ./gateway.toml:/etc/gateway/gateway.toml:ro resident-gateway
# BASE may name a local image with Python 3.11+ and venv (a registry-less build).
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
# An intranet build may point pip at a local mirror: --build-arg PIP_INDEX_URL=... (or
# PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS with a mounted wheel directory).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first (cached while only the code changes), then the package itself.
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY schema ./schema
COPY resolvers ./resolvers
COPY adapters ./adapters
RUN python3 -m venv /opt/gateway \
 && /opt/gateway/bin/pip install --upgrade "pip>=24" \
 && /opt/gateway/bin/pip wheel --wheel-dir /wheels . \
 && /opt/gateway/bin/pip install --no-index --find-links /wheels resident-gateway \
 && /opt/gateway/bin/gateway --version

FROM ${BASE} AS runtime
# The virtual environment only: no compiler, no sources, no wheel cache.
COPY --from=build /opt/gateway /opt/gateway
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --home-dir /var/lib/gateway --create-home \
      --shell /usr/sbin/nologin gateway \
 && mkdir -p /etc/gateway && chown root:gateway /etc/gateway && chmod 0750 /etc/gateway
ENV PATH=/opt/gateway/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWAY_CONFIG=/etc/gateway/gateway.toml \
    GATEWAY__SERVER__HOST=0.0.0.0 \
    GATEWAY__SERVER__PORT=8000 \
    XDG_CACHE_HOME=/var/lib/gateway/cache
USER 10001:10001
WORKDIR /var/lib/gateway
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["gateway"]
CMD ["serve"]
