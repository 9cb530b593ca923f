# syntax=docker/dockerfile:1
# Pact provider image. Build from the repository root (one build context for every service):
#   docker build -f docker/provider.Dockerfile -t pact-provider .
# Needs BuildKit (the default in Docker 23+ and `docker compose` v2) for the cache mounts.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---- builder: resolve nothing, install exactly uv.lock into /app/.venv ----------------------
FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /uvx /bin/
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app

# 1. Third-party dependencies only, from the lock file and the workspace manifests: this layer
#    is rebuilt when uv.lock or a pyproject.toml changes, not when the code does.
COPY uv.lock pyproject.toml ./
COPY shared/pact_schema/pyproject.toml shared/pact_schema/
COPY services/provider/pyproject.toml services/provider/
COPY services/settlement/pyproject.toml services/settlement/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace --package pact-provider

# 2. The code: our workspace packages, installed as wheels (not editable), so the runtime
#    stage needs the virtualenv only, never the source tree.
COPY shared/pact_schema shared/pact_schema
COPY services/provider services/provider
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable --package pact-provider

# ---- runtime: the virtualenv on a slim Python, run as an unprivileged user ------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="pact-provider" \
      org.opencontainers.image.description="Stateless Pact provider (pact/1.0 negotiation at the edge)" \
      org.opencontainers.image.version="${VERSION}"

RUN groupadd --system --gid 10001 pact \
 && useradd --system --uid 10001 --gid pact --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin pact

# Owned by root and not writable by the service user: the code cannot be changed at run time.
COPY --from=builder /app/.venv /app/.venv
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app

# Numeric uid so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(0 if u.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]

# Keys, tokens and the settlement URL come from the environment (PACT_PROVIDER_*) or mounted
# files at run time; nothing secret is baked into the image. One worker per container: scale
# with replicas (compose `--scale`, the Kubernetes HPA), not with --workers.
CMD ["pact-provider", "serve", "--host", "0.0.0.0", "--port", "8000"]
