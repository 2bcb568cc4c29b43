# edgekd bench on a Raspberry Pi 3/4/5 with a 64-bit OS: torch-free (numpy, onnxruntime, LiteRT).
# The same packages and pins as tests/test_device_envs.py checks under qemu (aarch64, Cortex-A72).
#
# Build from the repository root, on the Pi or on any machine with buildx and arm64 emulation:
#   docker buildx build --platform linux/arm64 -f docker/raspberry-pi.Dockerfile -t edgekd-pi --load .
# Run on the Pi, the bundle mounted at /bundle (bench.json is written into it):
#   docker run --rm --user "$(id -u):$(id -g)" -v "$HOME/bundle:/bundle" edgekd-pi bench /bundle
FROM python:3.11-slim-bookworm

ENV PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/edgekd
# The device requirements on their own layer: it is rebuilt only when they or the pins change.
COPY constraints.txt requirements/device.txt ./
RUN pip install -c constraints.txt -r device.txt

COPY pyproject.toml README.md ./
COPY edgekd ./edgekd
RUN pip install -c constraints.txt ".[device]" \
    && useradd --create-home --uid 1000 edgekd

# uid 1000 is the first user of Raspberry Pi OS; pass --user "$(id -u):$(id -g)" for any other.
USER 1000:1000
WORKDIR /work
ENTRYPOINT ["edgekd"]
CMD ["--help"]
