# echoserver: one image for all six backends; pick one with ECHOSERVER_BACKEND.
#
#   docker build -t echoserver .
#   docker run --rm -p 127.0.0.1:8080:8080 -e ECHOSERVER_BACKEND=asyncio echoserver
#
# EXTRAS adds optional dependencies beyond the six backends' own (gevent,
# uvloop): the compose `bench` service builds with EXTRAS=plot for its chart.
#
# BASE_IMAGE may be any Debian-like image with python3 (>= 3.10), venv and
# useradd: the package is installed into its own virtual environment, so the
# official python image and a distribution's python3 both work.
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY echoserver ./echoserver
COPY clients ./clients
RUN python3 -m venv /opt/echoserver \
    && /opt/echoserver/bin/pip install --no-compile ".[gevent,uvloop]"
# Declared after the main install so that images with extras share its layer.
ARG EXTRAS=""
RUN if [ -n "${EXTRAS}" ]; then /opt/echoserver/bin/pip install --no-compile ".[${EXTRAS}]"; fi \
    && /opt/echoserver/bin/python -m compileall -q /opt/echoserver

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="echoserver" \
      org.opencontainers.image.description="Concurrent TCP echo servers on six Python concurrency models"
COPY --from=build /opt/echoserver /opt/echoserver
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin echoserver
ENV PATH=/opt/echoserver/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ECHOSERVER_HOST=0.0.0.0 \
    ECHOSERVER_PORT=8080 \
    ECHOSERVER_BACKEND=asyncio
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
# SIGTERM starts a graceful drain: stop accepting and reading, echo what was
# already read, close each connection (within ECHOSERVER_GRACE seconds), exit 0.
# Keep `docker stop -t` / compose's stop_grace_period above that grace.
STOPSIGNAL SIGTERM
# A real round trip through the server, not just an open port.
HEALTHCHECK --interval=5s --timeout=3s --start-period=15s --retries=3 \
    CMD ["echo-probe", "--timeout", "2"]
CMD ["echoserver"]
