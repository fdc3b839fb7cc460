# cxpulse: one image for every role (worker, writer, api, migrate, simulate); the command picks it.
# Built by docker-compose.yml; dependencies installed at the exact versions of
# deploy/constraints.txt, the same set the tests run with.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CXPULSE_DATA_DIR=/var/lib/cxpulse

WORKDIR /src
COPY pyproject.toml README.md ./
COPY api api
COPY dashboards dashboards
COPY deploy deploy
COPY schemas schemas
COPY sinks sinks
COPY streams streams
# The runtime dependencies only (no dev extra), pinned by the constraints.
RUN pip install -c deploy/constraints.txt . \
    && useradd --system --home-dir /var/lib/cxpulse --create-home cxpulse

USER cxpulse
WORKDIR /var/lib/cxpulse
ENTRYPOINT ["cxpulse"]
CMD ["--help"]
