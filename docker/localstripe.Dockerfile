# syntax=docker/dockerfile:1
# localstripe (a fake, stateful Stripe API) for the optional `stripe` compose profile.
# Development only: never part of a production deployment. Pinned to the version in uv.lock.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
ARG LOCALSTRIPE_VERSION=1.15.10
RUN pip install --no-cache-dir "localstripe==${LOCALSTRIPE_VERSION}" \
 && groupadd --system --gid 10001 localstripe \
 && useradd --system --uid 10001 --gid localstripe --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin localstripe
USER 10001:10001
EXPOSE 8420
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=20 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8420/js.stripe.com/v3/', timeout=2)"]
# --from-scratch: no state carried over from an earlier run (it keeps state in /tmp).
CMD ["localstripe", "--port", "8420", "--from-scratch"]
