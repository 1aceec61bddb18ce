"""Files in and out of a host's storage pools through libvirt's streams: images uploaded to
the hosts that run them, console logs read from any host. No shared filesystem and no scp:
what a libvirt URI reaches, these reach."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import libvirt

from hypervisor import designer
from hypervisor.errors import NotFoundOnHost, translated
from hypervisor.host import Host

CHUNK = 1024 * 1024
Progress = Callable[[int, int], None]  # (bytes sent, total)
Sink = Callable[[bytes], None]  # takes each piece of a file brought from a host


class StreamSteps(Host):
    @translated
    def upload_file(
        self, pool_name: str, name: str, source: Path, progress: Progress | None = None
    ) -> str:
        """Writes `source` into the pool as volume `name` (replacing a leftover of that name)
        and returns its path there. Raises unless the host has exactly the file's size."""
        connection = self._conn()
        pool = connection.storagePoolLookupByName(pool_name)
        leftover = self._volume(pool_name, name)
        if leftover is not None:
            leftover.delete(0)
        size = source.stat().st_size
        volume = pool.createXML(designer.file_volume(name, size).to_xml(), 0)
        stream = connection.newStream(0)
        sent = 0
        try:
            volume.upload(stream, 0, size, 0)
            with source.open("rb") as reader:
                while chunk := reader.read(CHUNK):
                    stream.send(chunk)  # sends it all or raises
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent, size)
            stream.finish()
        except BaseException:
            _abort(stream)
            with contextlib.suppress(libvirt.libvirtError):  # the host may be gone too
                volume.delete(0)
            raise
        landed = _file_size(volume)
        if landed != size:
            volume.delete(0)
            raise libvirt.libvirtError(f"upload of {name} left {landed} bytes, not {size}")
        return str(volume.path())

    @translated
    def download_file(
        self, pool_name: str, name: str, sink: Sink, progress: Progress | None = None
    ) -> int:
        """Brings the whole file of volume `name` from the host, piece by piece into `sink`,
        and returns its size. Raises unless exactly the file's size arrived."""
        volume = self._volume(pool_name, name)
        if volume is None:
            raise NotFoundOnHost(f"volume {name} not found in pool {pool_name}")
        size = _file_size(volume)
        stream = self._conn().newStream(0)
        received = 0
        try:
            volume.download(stream, 0, 0, 0)  # offset 0, length 0: the whole file
            while data := stream.recv(CHUNK):
                if isinstance(data, int):  # -2: would block; a blocking stream never does
                    break
                sink(data)
                received += len(data)
                if progress is not None:
                    progress(received, size)
            stream.finish()
        except BaseException:
            _abort(stream)
            raise
        if received != size:
            raise libvirt.libvirtError(f"download of {name} brought {received} bytes, not {size}")
        return received

    @translated
    def volume_path(self, pool_name: str, name: str) -> str:
        volume = self._volume(pool_name, name)
        if volume is None:
            raise NotFoundOnHost(f"volume {name} not found in pool {pool_name}")
        return str(volume.path())

    @translated
    def delete_file(self, pool_name: str, name: str) -> None:
        """Deletes a file libvirt did not make (virtlogd's log): the pool may not know it
        until it looks again."""
        pool = self._storage_pool(pool_name)
        if pool is None or not pool.isActive():
            return
        if self._volume(pool_name, name) is None:
            pool.refresh(0)
        volume = self._volume(pool_name, name)
        if volume is not None:
            volume.delete(0)

    @translated
    def read_tail(self, pool_name: str, name: str, most: int) -> tuple[bytes, bool]:
        """The last `most` bytes of a file in the pool (a console log), and whether there
        was more before them. Nothing when the file or the pool is not there (yet), or on
        libvirt's test driver, which keeps no files."""
        pool = self._storage_pool(pool_name)
        if pool is None or not pool.isActive():
            return b"", False
        volume = self._volume(pool_name, name)
        if volume is None:
            pool.refresh(0)  # a log virtlogd made since the pool last looked
            volume = self._volume(pool_name, name)
        if volume is None:
            return b"", False
        size = _file_size(volume)
        offset = max(0, size - most)
        stream = self._conn().newStream(0)
        received: list[bytes] = []
        try:
            volume.download(stream, offset, 0, 0)  # from offset to the end as it is now
            while data := stream.recv(CHUNK):
                if isinstance(data, int):  # -2: would block; a blocking stream never does
                    break
                received.append(data)
            stream.finish()
        except libvirt.libvirtError as error:
            _abort(stream)
            if error.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                return b"", False
            raise
        data = b"".join(received)
        return data[-most:], offset > 0 or len(data) > most


def _file_size(volume: libvirt.virStorageVol) -> int:
    """The file's own size. Not the capacity: libvirt looks into what it received, and a
    qcow2's capacity is its virtual size. With GET_PHYSICAL, the third field is the size."""
    return int(volume.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2])


def _abort(stream: libvirt.virStream) -> None:
    with contextlib.suppress(libvirt.libvirtError):  # already finished or broken
        stream.abort()
