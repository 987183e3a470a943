# Slipstream's image: one image for every `slipstream` command (serve, features run, shadow, loop, ...), run as a
# non-root user on Debian bookworm's Python 3.11, with the locked dependencies installed by uv.
#
#   slipstream infra images --stack     builds it as slipstream/slipstream:local FROM the locally built Debian base
#                                       (debootstrap + `docker import`: no image registry is needed), cached by a hash
#                                       of its inputs; deploy/compose/docker-compose.yml runs it (docs/deploy.md)
#   docker build --build-arg BASE=debian:bookworm-slim -t slipstream/slipstream:local .
#                                       the same where a registry answers (.dockerignore sends only the package)
#
# The classic builder is enough (Debian's docker.io has no buildx): no BuildKit syntax. The dependencies are one layer
# keyed by pyproject.toml and requirements.lock alone, so a change to the source rebuilds only the package (stage
# `build`) and the final stage's last two layers.
ARG BASE=slipstream/debian-base:bookworm

FROM ${BASE} AS deps
ARG UV_VERSION=0.13.9
# PEM certificates the build stage trusts beside Debian's (a TLS-inspecting proxy's CA between here and PyPI);
# `infra images --stack` passes the host's /usr/local/share/ca-certificates/*.crt. The final image has none of them.
ARG BUILD_CA_CERTS=""
ENV DEBIAN_FRONTEND=noninteractive UV_PYTHON_DOWNLOADS=never UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_NO_CACHE=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN if [ -n "$BUILD_CA_CERTS" ]; then \
      mkdir -p /usr/local/share/ca-certificates && printf '%s\n' "$BUILD_CA_CERTS" >/usr/local/share/ca-certificates/build.crt; \
    fi \
    && apt-get update -q \
    && apt-get install -y -q --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --quiet --no-cache-dir "uv==${UV_VERSION}" \
    && /opt/uv/bin/uv venv --quiet --python /usr/bin/python3 /opt/slipstream
WORKDIR /src
COPY pyproject.toml requirements.lock /src/
RUN /opt/uv/bin/uv pip install --quiet --python /opt/slipstream/bin/python -c requirements.lock -r pyproject.toml

# The package itself, set apart in /opt/project (same layout) so the final stage copies ~2 MB, not the whole venv.
FROM deps AS build
COPY . /src/
RUN /opt/uv/bin/uv pip install --quiet --python /opt/slipstream/bin/python --no-deps /src \
    && cd /opt/slipstream && mkdir /opt/project \
    && tar -cf - bin/slipstream lib/python3.11/site-packages/slipstream lib/python3.11/site-packages/slipstream-*.dist-info \
       | tar -xf - -C /opt/project

FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive
# python3: the interpreter the venv was made from; libgomp1: LightGBM's OpenMP; tini: signals reach slipstream as PID 2.
RUN apt-get update -q \
    && apt-get install -y -q --no-install-recommends python3 libgomp1 ca-certificates tini \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/slipstream slipstream \
    && install -d -o slipstream -g slipstream /var/lib/slipstream
COPY --from=deps /opt/slipstream /opt/slipstream
COPY --from=build /opt/project/ /opt/slipstream/
ENV PATH=/opt/slipstream/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MPLCONFIGDIR=/tmp/matplotlib \
    SLIPSTREAM_STATE_DIR=/var/lib/slipstream
LABEL org.opencontainers.image.title="slipstream" org.opencontainers.image.licenses="Apache-2.0"
USER 10001:10001
WORKDIR /home/slipstream
ENTRYPOINT ["/usr/bin/tini", "--", "slipstream"]
CMD ["--help"]
