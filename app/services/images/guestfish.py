"""One libguestfs appliance, driven command by command through guestfish's remote control.

The appliance is a small VM that mounts the image's filesystems; starting it is the slow
part (about 25 s under software emulation), so one session does every read and write.
`guestfish --listen` starts a server; each `guestfish --remote=PID -- CMD ARGS...` runs one
command there and prints its result. Arguments travel as an argument list (never through a
shell or guestfish's own parser), file contents through `upload`/`download` of local
files. The server stops at the first failed command, which then surfaces as GuestfsError.

Under a VM without working nested KVM, libguestfs must use TCG: vdc sets
LIBGUESTFS_BACKEND=direct and LIBGUESTFS_BACKEND_SETTINGS=force_tcg unless the caller set
them or VDC_VIRT_TYPE=kvm says KVM works here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from app.errors import AppError, Conflict

GUESTFISH = "guestfish"  # found on PATH, as qemu-img is
LAUNCH_TIMEOUT = 600.0  # seconds for `run`: about 25 s under TCG, far more on a busy host
COMMAND_TIMEOUT = 300.0
_PID = re.compile(r"GUESTFISH_PID=(\d+)")


class GuestfsError(AppError):
    """libguestfs failed (its own message attached) or is not installed."""

    status_code = 500
    type = "guestfs_error"


def guestfs_environment(virt_type: str) -> dict[str, str]:
    env = {**os.environ, "LC_ALL": "C"}
    env.setdefault("LIBGUESTFS_BACKEND", "direct")  # no libvirtd needed
    if virt_type != "kvm":
        # Where /dev/kvm exists but nested KVM hangs (these machines), only TCG works.
        env.setdefault("LIBGUESTFS_BACKEND_SETTINGS", "force_tcg")
    return env


@dataclass(frozen=True)
class Stat:
    mode: int
    size: int

    @property
    def is_regular(self) -> bool:
        return self.mode & 0o170000 == 0o100000


class GuestFish:
    """A running guestfish server with one disk added (see `session`)."""

    def __init__(self, pid: int, env: dict[str, str], scratch: Path) -> None:
        self.pid = pid
        self._env = env
        self._scratch = scratch
        self._server_errors: list[str] = []
        self._reader: threading.Thread | None = None  # collects the server's stderr
        self._alive = True

    # --- the one primitive ----------------------------------------------------------------

    def call(self, command: str, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        if not self._alive:
            raise GuestfsError("the libguestfs session has already failed")
        argv = [GUESTFISH, f"--remote={self.pid}", "--", command, *args]
        try:
            result = subprocess.run(  # noqa: S603 - argument list, no shell
                argv,
                env=self._env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            self._kill()
            raise GuestfsError(f"libguestfs: {command} took over {timeout:g}s") from exc
        if result.returncode != 0:
            self._alive = False  # guestfish's server exits on a failed command...
            if self._reader is not None:
                self._reader.join(timeout=10)  # ...after writing why to its stderr
            server = "\n".join(self._server_errors)
            if 'Failed to get "write" lock' in server:
                raise Conflict(
                    "the image is in use by another process (qemu holds a lock on it: a "
                    "running VM?); stop what uses it, or work on a copy"
                )
            raise GuestfsError(f"libguestfs: {command}: {self._why(result)}")
        return result.stdout

    def _why(self, result: subprocess.CompletedProcess[str]) -> str:
        lines = [*self._server_errors, *result.stdout.splitlines(), *result.stderr.splitlines()]
        errors = [line for line in lines if line.startswith("libguestfs: error: ")]
        chosen = errors or [line for line in lines if "error" in line.lower()] or ["failed"]
        return chosen[-1].removeprefix("libguestfs: error: ").strip()

    # --- reading ----------------------------------------------------------------------------

    def true(self, command: str, *args: str) -> bool:
        return self.call(command, *args).strip() == "true"

    def exists(self, path: str) -> bool:
        return self.true("exists", path)

    def is_file(self, path: str) -> bool:
        """A regular file (a symlink to one counts: it is what programs will read)."""
        return self.true("is-file", path, "followsymlinks:true")

    def is_dir(self, path: str) -> bool:
        return self.true("is-dir", path, "followsymlinks:true")

    def is_symlink(self, path: str) -> bool:
        return self.true("is-symlink", path)

    def lines(self, command: str, *args: str) -> list[str]:
        return [line for line in self.call(command, *args).splitlines() if line]

    def read_text(self, path: str) -> str:
        local = self._scratch / "download"
        self.call("download", path, str(local))
        text = local.read_bytes().decode("utf-8", errors="surrogateescape")
        local.unlink()
        return text

    def lstat(self, path: str) -> Stat:
        fields = dict(
            line.split(": ", 1) for line in self.call("lstatns", path).splitlines() if ": " in line
        )
        return Stat(mode=int(fields["st_mode"]), size=int(fields["st_size"]))

    def find(self, directory: str) -> list[str]:
        """Every path below directory (absolute, sorted); NUL-separated on the wire, so any
        file name comes through."""
        local = self._scratch / "find0"
        self.call("find0", directory, str(local))
        names = local.read_bytes().decode("utf-8", errors="surrogateescape").split("\0")
        local.unlink()
        return sorted(f"{directory.rstrip('/')}/{name.lstrip('/')}" for name in names if name)

    # --- writing ----------------------------------------------------------------------------

    def write_text(self, path: str, text: str, mode: int | None = None) -> None:
        """Writes path (an existing file keeps its owner and mode unless mode is given)."""
        local = self._scratch / "upload"
        local.write_bytes(text.encode("utf-8", errors="surrogateescape"))
        self.call("upload", str(local), path)
        local.unlink()
        if mode is not None:
            self.call("chmod", f"0{mode:o}", path)

    # --- life cycle -------------------------------------------------------------------------

    def _close(self) -> None:
        if self._alive:
            try:  # `exit` syncs and unmounts the image before the appliance stops
                self.call("exit", timeout=120)
            except GuestfsError:
                self._kill()
            self._alive = False

    def _kill(self) -> None:
        """Stops the server this session started (by its pid), when it no longer answers."""
        self._alive = False
        with suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)


@contextmanager
def session(disk: Path, fmt: str, virt_type: str) -> Iterator[GuestFish]:
    """A launched appliance with `disk` added read-write (format given, never probed)."""
    if shutil.which(GUESTFISH) is None:
        raise GuestfsError(
            "guestfish is not installed: install libguestfs-tools "
            "(scripts/install-host-packages.sh does)"
        )
    env = guestfs_environment(virt_type)
    with tempfile.TemporaryDirectory(prefix="vdc-guestfs-") as scratch:
        listen = subprocess.Popen(  # noqa: S603 - argument list, no shell
            [GUESTFISH, "--listen", f"--format={fmt}", "-a", str(disk)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert listen.stdout is not None and listen.stderr is not None
        # The parent prints the server's pid and exits; the server closes stdout once its
        # socket listens (so reading to the end avoids a race with the first command), and
        # keeps our stderr pipe, whose end (EOF) says the server is gone.
        match = _PID.search(listen.stdout.read())
        listen.wait(timeout=60)
        if match is None:
            raise GuestfsError(f"guestfish --listen failed: {listen.stderr.read().strip()}")
        fish = GuestFish(int(match.group(1)), env, Path(scratch))
        reader = threading.Thread(
            target=_collect, args=(listen.stderr, fish._server_errors), daemon=True
        )
        fish._reader = reader
        reader.start()
        try:
            fish.call("run", timeout=LAUNCH_TIMEOUT)
            yield fish
        finally:
            fish._close()
            reader.join(timeout=60)  # the server has exited (or was told to)
            listen.stderr.close()
            listen.stdout.close()


def _collect(stream: IO[str], into: list[str]) -> None:
    for line in stream:
        into.append(line.rstrip("\n"))
