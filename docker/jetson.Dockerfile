# edgekd bench on an NVIDIA Jetson (Orin, JetPack 6): onnxruntime-gpu with the CUDA and TensorRT
# execution providers, LiteRT for the int8 TFLite model. Torch-free.
#
# JetPack 6 is Ubuntu 22.04 with Python 3.10 (edgekd's device install is tested on 3.10 on x86_64).
# This image installs requirements/device.txt unpinned, with NVIDIA's onnxruntime-gpu build in
# place of the CPU onnxruntime: NVIDIA's build for a JetPack release picks its own numpy. PyPI has no
# onnxruntime-gpu for aarch64; NVIDIA's Jetson AI Lab index has one per JetPack and CUDA release
# (set ORT_INDEX to the one of your JetPack). Not built or run in this project's CI (no Jetson).
#
# Build on the Jetson (or with buildx --platform linux/arm64), from the repository root:
#   docker build -f docker/jetson.Dockerfile -t edgekd-jetson .
# Run with the GPU:
#   docker run --rm --runtime nvidia --user "$(id -u):$(id -g)" -v "$HOME/bundle:/bundle" \
#       edgekd-jetson bench /bundle --providers tensorrt,cuda
ARG L4T_TAG=r36.4.0
FROM nvcr.io/nvidia/l4t-jetpack:${L4T_TAG}

ARG ORT_INDEX=https://pypi.jetson-ai-lab.io/jp6/cu126
ENV PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-pip \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/edgekd
COPY requirements/device.txt ./
# every device requirement but the CPU onnxruntime, which would shadow onnxruntime-gpu's module
RUN grep -v '^onnxruntime' device.txt > jetson.txt \
    && python3 -m pip install --extra-index-url "${ORT_INDEX}" -r jetson.txt onnxruntime-gpu

COPY pyproject.toml README.md ./
COPY edgekd ./edgekd
# edgekd's own dependencies only (numpy, click, rich): the device extra would bring the CPU onnxruntime
RUN python3 -m pip install . \
    && useradd --create-home --uid 1000 edgekd

USER 1000:1000
WORKDIR /work
ENTRYPOINT ["edgekd"]
CMD ["--help"]
