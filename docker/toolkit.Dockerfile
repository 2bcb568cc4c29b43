# The host side of edgekd: distill and export (torch CPU build, litert-torch, onnx), and bench too.
# x86_64 or arm64 workstations and CI runners; the bundle it writes is what goes to the device.
#
# Build from the repository root:
#   docker build -f docker/toolkit.Dockerfile -t edgekd-toolkit .
# Distill and export into ./runs on the host:
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/runs:/work/runs" edgekd-toolkit distill --out runs/demo
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/runs:/work/runs" edgekd-toolkit export runs/demo --int8
FROM python:3.11-slim-bookworm

# PyPI's torch for Linux x86_64 is the multi-GB CUDA build; PyTorch's CPU index has the same
# release (2.13.0+cpu satisfies the torch==2.13.0 pin).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /opt/edgekd
COPY constraints.txt requirements/device.txt ./
RUN pip install --extra-index-url "${TORCH_INDEX}" -c constraints.txt torch -r device.txt

COPY pyproject.toml README.md ./
COPY edgekd ./edgekd
RUN pip install --extra-index-url "${TORCH_INDEX}" -c constraints.txt ".[all]" \
    && useradd --create-home --uid 1000 edgekd

USER 1000:1000
WORKDIR /work
ENTRYPOINT ["edgekd"]
CMD ["--help"]
