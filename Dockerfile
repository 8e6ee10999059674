# register-intake: one image for the gateway and the consumers (see deploy/compose.yaml).
#   docker build -t register-intake:0.1.0 .
#   docker run register-intake:0.1.0 gateway --host 0.0.0.0 --port 8000
#   docker run register-intake:0.1.0 consume projector --metrics-host 0.0.0.0 --metrics-port 9100

FROM python:3.11.10-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/intake
# The same pinned versions as development and CI, with their hashes (requirements-runtime.lock:
# the runtime part of requirements.lock, both made by `make lock`).
COPY pyproject.toml requirements-runtime.lock README.md ./
COPY intake ./intake
COPY wiring ./wiring
COPY review ./review
COPY receiver ./receiver
COPY validators ./validators
COPY schemas ./schemas
COPY consumers ./consumers
COPY eventlog ./eventlog
COPY statestore ./statestore
COPY identity ./identity
RUN /opt/intake/bin/pip install --require-hashes -r requirements-runtime.lock \
 && /opt/intake/bin/pip install --no-deps . \
 && /opt/intake/bin/intake --help >/dev/null

FROM python:3.11.10-slim-bookworm
ENV PATH=/opt/intake/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INTAKE_DATA_DIR=/var/lib/intake
RUN groupadd --system --gid 10001 intake \
 && useradd --system --uid 10001 --gid intake --home-dir /var/lib/intake --shell /usr/sbin/nologin intake \
 && mkdir -p /var/lib/intake \
 && chown intake:intake /var/lib/intake
COPY --from=build /opt/intake /opt/intake
USER 10001:10001
WORKDIR /var/lib/intake
EXPOSE 8000
# Liveness of the gateway. Consumers answer on their --metrics-port instead; the compose file
# sets their check.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["intake"]
CMD ["gateway", "--host", "0.0.0.0", "--port", "8000"]
