# syntax=docker/dockerfile:1
# Cachet image: the edge proxy by default, or the coordinator. Build: docker build -t cachet .
# Proxy:       docker run -p 8080:8080 -e CACHET_PROXY_ORIGIN=http://origin.internal:8000 cachet
# Coordinator: docker run -p 7070:7070 -v cachet-coord:/var/lib/cachet cachet \
#                  coordinator --listen 0.0.0.0:7070 --data /var/lib/cachet/coordinator
# The proxy's admin listener (/healthz, /metrics) is on 9091; publish it only on a private network.
# The health check probes the coordinator's /healthz when PID 1 runs `cachet coordinator`, the
# proxy's admin /healthz otherwise; CACHET_HEALTHCHECK_URL overrides both. See docs/operations.md.

# -- builder: build the wheel and install it with its dependencies into a self-contained venv --
# gcc and OpenSSL's headers compile provenance/_fastrecords.c, the records check, leaf hashes and
# Merkle roots (setup.py; without them the build falls back to the slower pure-Python code).
# The runtime stage needs neither: the slim image's libssl3 is what the module links.
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY cachet ./cachet
COPY proxy ./proxy
COPY provenance ./provenance
COPY billing ./billing
COPY admin ./admin
RUN python -m venv /opt/cachet \
    && /opt/cachet/bin/pip wheel --wheel-dir /wheels . \
    && /opt/cachet/bin/pip install --no-index --find-links /wheels cachet

# -- runtime: the venv only, a non-root user, state under /var/lib/cachet ---------------------
FROM python:3.11-slim
ENV PATH=/opt/cachet/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CACHET_PROXY_LISTEN=0.0.0.0:8080 \
    CACHET_PROXY_ADMIN_LISTEN=0.0.0.0:9091 \
    CACHET_PROXY_CACHE_DIR=/var/lib/cachet/cache \
    CACHET_COORDINATOR_LISTEN=0.0.0.0:7070 \
    CACHET_COORDINATOR_DATA=/var/lib/cachet/coordinator
RUN groupadd --system --gid 10001 cachet \
    && useradd --system --uid 10001 --gid cachet --home-dir /var/lib/cachet --shell /usr/sbin/nologin cachet \
    && mkdir -p /var/lib/cachet /etc/cachet \
    && chown cachet:cachet /var/lib/cachet
COPY --from=builder /opt/cachet /opt/cachet
COPY config.example.toml /etc/cachet/config.toml
USER cachet
WORKDIR /var/lib/cachet
VOLUME ["/var/lib/cachet"]
EXPOSE 8080 9091 7070
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; c = open('/proc/1/cmdline', 'rb').read().split(b'\\0'); d = 'http://127.0.0.1:7070/healthz' if b'coordinator' in c else 'http://127.0.0.1:9091/healthz'; u.urlopen(os.environ.get('CACHET_HEALTHCHECK_URL') or d, timeout=4)"]
ENTRYPOINT ["cachet"]
CMD ["proxy", "--config", "/etc/cachet/config.toml"]
