# echoserver: one image for all six backends; pick one with ECHOSERVER_BACKEND.
#
#   docker build --network host -t echoserver .
#   docker run --rm -p 127.0.0.1:8080:8080 -e ECHOSERVER_BACKEND=gevent echoserver
#
# Layers, from the least to the most often changed: the base image, the pinned
# dependencies (deploy/requirements/image.txt), then the project's own code, so
# that a change to the source rebuilds and ships one small layer. The runtime
# image has neither pip nor setuptools nor a compiler. Target `bench` adds
# matplotlib on top, for the compose `bench` service's chart.
#
# BASE_IMAGE may be any Debian-like image with python3 (3.11 or newer, for the
# pinned wheels), venv and useradd: the packages go into their own virtual
# environment, so the official python image and a distribution's python3 both work.
ARG BASE_IMAGE=python:3.12-slim

# ---------------------------------------------------------------- dependencies
FROM ${BASE_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# binutils: `strip` takes the debug symbols out of the wheels' extension
# modules (uvloop's alone carries 12 MB of them); libraries that auditwheel
# bundled (*.libs/) are left alone, as stripping can break their loading.
# Only in this stage, not in the image.
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends binutils >/dev/null \
    && rm -rf /var/lib/apt/lists/*
COPY deploy/requirements/image.txt /tmp/requirements/image.txt
# The project's code goes into /opt/echoserver/app, a layer of its own (stage
# `app`), which a .pth file puts on the virtual environment's path.
RUN python3 -m venv /opt/echoserver \
    && /opt/echoserver/bin/pip install -q --no-compile --only-binary :all: \
        -r /tmp/requirements/image.txt \
    && /opt/echoserver/bin/pip check \
    && find /opt/echoserver -name '*.cpython-*.so' -exec strip --strip-unneeded {} + \
    && /opt/echoserver/bin/python -c "import site, sys; open(site.getsitepackages()[0] + '/echoserver-app.pth', 'w').write('/opt/echoserver/app\n')"

# ------------------------------------------------------- the project's own code
FROM deps AS app
COPY pyproject.toml README.md /src/
COPY echoserver /src/echoserver
COPY clients /src/clients
# No build isolation: the pinned setuptools builds the wheel, nothing is fetched.
RUN /opt/echoserver/bin/pip install -q --no-compile --no-deps --no-build-isolation \
        --target /opt/echoserver/app /src \
    && /opt/echoserver/bin/pip check \
    && /opt/echoserver/bin/python -m compileall -q /opt/echoserver/app

# ------------------------------------------- dependencies, without the installer
FROM deps AS runtime-deps
RUN /opt/echoserver/bin/pip uninstall -q -y setuptools wheel pip \
    && find /opt/echoserver/lib -depth -type d \
        \( -path '*/gevent/tests' -o -path '*/gevent/testing' -o -path '*/greenlet/tests' \
           -o -path '*/zope/interface/tests' -o -path '*/zope/interface/common/tests' \
           -o -path '*/psutil/tests' \) -exec rm -rf {} + \
    && find /opt/echoserver/lib -name '*.pyx' -delete -o -name '*.pxd' -delete \
    && /opt/echoserver/bin/python -m compileall -q /opt/echoserver/lib

# --------------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS server
LABEL org.opencontainers.image.title="echoserver" \
      org.opencontainers.image.description="Concurrent TCP echo servers on six Python concurrency models"
RUN useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin echoserver
COPY --from=runtime-deps /opt/echoserver /opt/echoserver
COPY --from=app /opt/echoserver/app /opt/echoserver/app
COPY deploy/healthcheck.sh /opt/echoserver/bin/echo-healthcheck
# The port is the CLI's default, 8080, or $PORT where a platform sets it
# (ECHOSERVER_PORT wins over both). The grace is short enough that a drain
# ends inside `docker stop`'s default 10 s; /metrics and /healthz listen on
# 9090 (the health check reads /healthz).
ENV PATH=/opt/echoserver/app/bin:/opt/echoserver/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ECHOSERVER_HOST=0.0.0.0 \
    ECHOSERVER_BACKEND=asyncio \
    ECHOSERVER_GRACE=5 \
    ECHOSERVER_METRICS_HOST=0.0.0.0 \
    ECHOSERVER_METRICS_PORT=9090
# Every module imports with what the image has (no pip, no setuptools); the Locust
# integration is an extra the image does not carry.
RUN python3 -c "import pkgutil, echoserver, echoclients, gevent, uvloop; \
[__import__(m.name) for p in (echoserver, echoclients) for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.') \
 if not m.name.endswith('__main__') and not m.name.startswith('echoclients.locust')]" \
    && echoserver --help >/dev/null && echo-probe --help >/dev/null
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080 9090
# SIGTERM starts a graceful drain: stop accepting and reading, echo what was
# already read, close each connection (within ECHOSERVER_GRACE seconds), exit 0.
STOPSIGNAL SIGTERM
# GET /healthz on the metrics port from bash (no Python started: ~2 ms), or a
# real echo round trip with echo-probe where the metrics port is switched off.
HEALTHCHECK --interval=5s --timeout=3s --start-period=15s --retries=3 \
    CMD ["echo-healthcheck"]
CMD ["echoserver"]

# ------------------------------------- bench: the runtime image plus matplotlib
FROM deps AS plot
COPY deploy/requirements/plot.txt /tmp/requirements/plot.txt
RUN /opt/echoserver/bin/pip install -q --no-compile --only-binary :all: \
        --target /opt/echoserver/plot -r /tmp/requirements/plot.txt -c /tmp/requirements/image.txt

FROM server AS bench
COPY --from=plot /opt/echoserver/plot /opt/echoserver/plot
# Matplotlib wants a writable cache folder; the root filesystem is read-only.
ENV PYTHONPATH=/opt/echoserver/plot \
    MPLCONFIGDIR=/tmp/matplotlib
RUN python3 -c "import matplotlib.pyplot"

# ---------------------------------------------- the default target: the server
FROM server AS runtime
