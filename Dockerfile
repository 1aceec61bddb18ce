# The vdc server for docker-compose.yml. It talks to the host's libvirtd through its socket,
# so only the client side of libvirt (and qemu-img for images) is installed here; fdisk,
# dosfstools and mtools build instances' metadata drives without mounting.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc pkg-config \
      libvirt-dev libvirt-clients qemu-utils util-linux fdisk dosfstools mtools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/vdc
COPY pyproject.toml README.md alembic.ini ./
COPY app app
COPY hypervisor hypervisor
COPY metadata metadata
COPY alembic alembic
RUN python3 -m venv /opt/vdc/.venv && /opt/vdc/.venv/bin/pip install --no-cache-dir -e .
ENV PATH=/opt/vdc/.venv/bin:$PATH
CMD ["vdc", "serve", "--migrate"]
