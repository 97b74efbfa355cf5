# syntax=docker/dockerfile:1
# kube-ovn-gc: one garbage-collection pass for leaked Kube-OVN IP CRs and OVN logical switch ports.
#
#   docker build -t ghcr.io/kube-ovn-gc/kube-ovn-gc:0.1.0 \
#     --build-arg VCS_REF="$(git rev-parse HEAD)" --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#
# The base image is pinned by tag. For builds that do not move when the tag is rebuilt, pin its digest too:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:<digest> .
# (the digest: docker buildx imagetools inspect python:3.11.11-slim-bookworm).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

# --- build: the project and every dependency as wheels, installed into a venv ------------------------
FROM ${PYTHON_IMAGE} AS build
ARG VERSION=0.1.0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gc/ ./gc/
# No compiler is needed: every dependency is pure Python or ships binary wheels (ovs comes as an sdist and
# builds as pure Python). Should one ever need a compiler, install it here, never in the final stage.
RUN python -m pip wheel --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install --no-index --find-links /wheels \
      "kube-ovn-gc==${VERSION}"

# --- final: the venv on a clean base, no installer, no build tools, not root ---------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
LABEL org.opencontainers.image.title="kube-ovn-gc" \
      org.opencontainers.image.description="Single-pass garbage collector for leaked Kube-OVN IP CRs and OVN logical switch ports" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="https://github.com/kube-ovn-gc/kube-ovn-gc" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.11-slim-bookworm"
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The base image's installer goes (nothing is installed at run time), and the job gets a user of its own
# (uid/gid 65532, the same numbers as runAsUser/runAsGroup in cronjob.yaml).
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
 && groupadd --system --gid 65532 kube-ovn-gc \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin kube-ovn-gc
COPY --from=build /opt/venv /opt/venv
USER 65532:65532
ENTRYPOINT ["kube-ovn-gc"]
CMD ["run"]
