# otelpipe container image: an ordinary Dockerfile (`docker build` or `podman build`).
#   docker build -t otelpipe:0.1.0 .
# (the tag deploy/ and the README use; the version is pipeline.__version__).
# scripts/container.sh build does the same with podman on machines without a registry,
# after making the base image locally with debootstrap (see that script).
#
# Base: debian:bookworm-slim with Debian's Python 3.11, not python:3.11-slim. Debian's
# image can be reproduced bit for bit from Debian's own packages (debootstrap), so the
# tests build this file unchanged where no registry is reachable; python:3.11-slim's
# interpreter is built from source by its maintainers and has no such recipe. Debian's
# python3 also gets Debian's security updates with the rest of the base.
#
# Three stages: `build` makes a virtualenv with pip (wheels only, no compiler is needed:
# every dependency ships manylinux wheels for CPython 3.11); `runtime` installs python3,
# tini and CA certificates on the base, adds the user and the virtualenv, then removes
# what nothing in the running image uses (package management, perl, iconv modules,
# unused parts of the standard library) and checks that every library resolves and every
# module otelpipe imports imports; the final stage is `runtime`'s file system copied
# onto scratch as one layer (136 MB, down from 184 MB with the whole base underneath).
# No pip, no caches, no compilers, no apt: extend the image by building FROM the
# `runtime` stage's recipe, not FROM this image. Runtime dependencies only (the
# OpenTelemetry SDK is a test dependency).
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv ca-certificates binutils \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/otelpipe
WORKDIR /src
# Dependencies first, in a layer of their own: a change to pipeline/ or the README reuses
# it. (A stub package stands in for pipeline/ to resolve pyproject's dependencies.) The build
# backend goes into the venv too, so the project itself builds without fetching it.
COPY pyproject.toml ./
RUN mkdir pipeline && touch pipeline/__init__.py README.md \
 && /opt/otelpipe/bin/pip install --no-cache-dir --disable-pip-version-check \
      --only-binary=:all: --no-compile 'setuptools>=68' wheel . \
 && /opt/otelpipe/bin/pip uninstall -y -q otelpipe \
 && rm -rf pipeline build *.egg-info README.md
COPY README.md ./
COPY pipeline ./pipeline
# --only-binary: fail rather than compile anything. Then trim what the runtime never
# reads: pip and setuptools, test folders, C/Cython sources and stubs, zstandard's cffi
# backend (its C backend is the one imported); strip the debug symbols the manylinux
# wheels ship in their extension modules (88 MB -> 33 MB); byte-compile everything (the
# root filesystem is read-only at run time: Python could not write its caches there).
# otelpipe's own modules keep their source beside __pycache__ (tracebacks show its
# lines); the dependencies are shipped compiled only, each module's .pyc in place of
# its .py (`compileall -b`, which Python imports without a source: 11 MB less).
RUN /opt/otelpipe/bin/pip install --no-cache-dir --disable-pip-version-check \
      --no-build-isolation --no-deps --no-compile . \
 && /opt/otelpipe/bin/pip uninstall -y -q pip setuptools wheel \
 && cd /opt/otelpipe/lib/python3.11/site-packages \
 && find . -depth \( -name tests -o -name test -o -name '__pycache__' \) -type d -exec rm -rf {} + \
 && find . \( -name '*.pyi' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.c' -o -name '*.h' \) -delete \
 && rm -f zstandard/_cffi.*.so \
 && find . -name '*.so*' -type f -exec strip --strip-unneeded {} + \
 && python3 -m compileall -q -j 0 pipeline \
 && python3 -m compileall -q -j 0 -b -x '^\./pipeline/' . \
 && find . -path ./pipeline -prune -o -name '*.py' -type f -exec rm -f {} + \
 && /opt/otelpipe/bin/python -c "import grpc, pydantic, google.protobuf, aiokafka, asyncpg"

# `runtime`: Debian's python3, tini and CA certificates on the base, the user, the
# virtualenv; then everything the running image never uses is removed, and the last
# stage copies what is left as one layer (files deleted in a later layer of the same
# image would still be shipped in the layers below it).
FROM ${BASE_IMAGE} AS runtime
# Every module of otelpipe but __main__ (components import their libraries lazily, at start), each
# library they import, the time zone database and sqlite3 (disk queue).
ARG IMPORT_CHECK="import importlib, pkgutil, pipeline, sqlite3, zoneinfo; \
[importlib.import_module(m.name) for m in pkgutil.walk_packages(pipeline.__path__, 'pipeline.') \
 if not m.name.endswith('__main__')]; \
import aiokafka, asyncpg, grpc, grpc.aio, pydantic, orjson, zstandard, cramjam, uvloop, psutil, \
yaml, aiohttp, prometheus_client, google.protobuf, google_crc32c, ssl, ctypes, decimal, lzma, bz2, uuid; \
zoneinfo.ZoneInfo('Europe/Paris'); sqlite3.connect(':memory:').execute('select 1')"
# tini: a PID 1 that forwards SIGTERM to otelpipe (which drains and exits) and reaps
# zombies; `docker run --init` / `podman run --init` on top of it is harmless.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
      /usr/share/man /usr/share/info \
 && groupadd --system --gid 10001 otelpipe \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/otelpipe --no-create-home \
      --shell /usr/sbin/nologin otelpipe \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/otelpipe
COPY --from=build /opt/otelpipe /opt/otelpipe
# Removed, with dpkg so that its database (what image scanners read) lists only what is
# there: package management (apt, its GnuTLS/nettle/p11-kit stack, gpgv, the archive
# keyring, debconf, perl-base, adduser, passwd and its SELinux policy libraries: the
# user exists already), e2fsprogs (file system tools). Then files no package of the
# image loads: glibc's iconv modules (gconv; Python has its own codecs, and UTF-8 is
# built into glibc), dpkg's md5sums (the packages' copyright files, the only documentation
# a slim base keeps, stay: they are the licences of what the image ships), and from the standard library the documentation
# topics (pydoc_data), unittest, the regression-test support and C test modules
# (test/, _test*, _ctypes_test, xxlimited*, _xxtestfuzz), and the unused alternatives
# (idlelib, tkinter, turtledemo, lib2to3, ensurepip: most are separate Debian packages
# that are not installed). sqlite3 (disk queue) and tzdata/zoneinfo (log timestamps)
# are used and stay. Last, every ELF file left must find its libraries (ldd), and the
# interpreter must import every module otelpipe's components import.
RUN dpkg --purge --force-remove-essential --force-depends \
      apt libapt-pkg6.0 gpgv debian-archive-keyring adduser debconf perl-base \
      passwd libsemanage2 libsemanage-common libsepol2 e2fsprogs logsave libext2fs2 libss2 \
      libgnutls30 libp11-kit0 libtasn1-6 libidn2-0 libunistring2 libnettle8 libhogweed6 \
      >/dev/null \
 && rm -rf /usr/lib/x86_64-linux-gnu/gconv /var/lib/dpkg/info/*.md5sums \
      /var/cache/debconf /var/lib/apt /var/cache/apt /var/log/* \
      /usr/share/lintian /usr/share/bug /usr/share/perl5 /usr/share/pam-configs \
 && cd /usr/lib/python3.11 \
 && rm -rf pydoc_data unittest test idlelib tkinter turtledemo lib2to3 ensurepip \
      turtle.py __pycache__/turtle.* \
      lib-dynload/_test*.so lib-dynload/_ctypes_test.*.so lib-dynload/xxlimited*.so \
      lib-dynload/_xxtestfuzz.*.so \
 && missing="$(find /usr /opt/otelpipe -xdev -type f \( -name '*.so*' -o -perm -u+x \) \
      -exec sh -c 'head -c 4 "$1" | grep -q ELF && ldd "$1" | sed "s|^|$1: |" | grep "not found"' _ {} \; \
      || true)" \
 && { [ -z "$missing" ] || { echo "$missing"; exit 1; }; } \
 && PYTHONDONTWRITEBYTECODE=1 /opt/otelpipe/bin/python -c "$IMPORT_CHECK"

FROM scratch
COPY --from=runtime / /

# otelpipe listens on localhost by default (as the Collector does since v0.104); in a
# container the published ports need every interface. These set the embedded default
# config's endpoints (and those of configs/*.yaml); a config of your own that names no
# endpoint still gets localhost: write 0.0.0.0:<port> in it.
# State (the default config's OTLP JSON files, a disk queue's directory) goes under
# /var/lib/otelpipe, a declared volume: everything else can be mounted read-only
# (`--read-only`, Kubernetes' readOnlyRootFilesystem).
ENV PATH=/opt/otelpipe/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OTELPIPE_DATA_DIR=/var/lib/otelpipe \
    OTELPIPE_OTLP_GRPC_ENDPOINT=0.0.0.0:4317 \
    OTELPIPE_OTLP_HTTP_ENDPOINT=0.0.0.0:4318 \
    OTELPIPE_JSONLOGS_ENDPOINT=0.0.0.0:8081 \
    OTELPIPE_HEALTH_ENDPOINT=0.0.0.0:13133 \
    OTELPIPE_PROMETHEUS_ENDPOINT=0.0.0.0:8889
VOLUME ["/var/lib/otelpipe"]
WORKDIR /var/lib/otelpipe
USER 10001:10001
# OTLP gRPC, OTLP HTTP, JSON logs, health/metrics/status, Prometheus exporter
EXPOSE 4317 4318 8081 13133 8889
# Kept in the image with `podman build --format docker` (OCI images have no HEALTHCHECK).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:13133/health/liveness', timeout=2).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "otelpipe", "run"]
# With no -c, otelpipe runs its embedded default config; mount yours and pass -c.
CMD []

# Labels, last: a new commit (REVISION) changes no layer above. base.name names the
# image whose packages the single layer is made of (the stage FROM is scratch). VERSION is pyproject's
# version; SOURCE (the repository's URL) and REVISION
# (its commit) are passed by scripts/container.sh from git when it knows them.
ARG VERSION=0.1.0
ARG SOURCE=""
ARG REVISION=""
LABEL org.opencontainers.image.title="otelpipe" \
      org.opencontainers.image.description="A telemetry pipeline in pure Python, shaped like the OpenTelemetry Collector" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
