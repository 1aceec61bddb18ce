"""Running a fixed argument list on a host: directly on the host vdc runs on, over ssh on any
other, as the same user its libvirt URI names (root by default, as qemu+ssh's).

For the few host steps libvirt has no call for (a bridge with a VXLAN port, its flood
entries). No agent runs on hosts: each step is one program with its arguments. ssh passes a
command as one string to the remote shell, so every argument is quoted for it; arguments
are vdc's own (interface names, addresses, numbers) and checked by the callers anyway.
Connections are shared (ssh ControlMaster) so that a burst of steps pays for one login.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from hypervisor.errors import HostUnreachable, HypervisorError

SSH_TIMEOUT = 10  # seconds to connect
_SSH_UNREACHABLE = 255  # ssh's own exit status: the connection, not the command, failed


@dataclass(frozen=True)
class HostShell:
    uri: str
    ssh_options: Sequence[str] = ()  # VDC_SSH_OPTIONS: e.g. -i KEY -o UserKnownHostsFile=F
    control_dir: Path | None = None  # where shared ssh connections keep their sockets

    @property
    def is_local(self) -> bool:
        return not urlsplit(self.uri).netloc

    def target(self) -> list[str]:
        """ssh's arguments that reach the host (before the command)."""
        parts = urlsplit(self.uri)
        keyfile = dict(parse_qsl(parts.query)).get("keyfile")
        user, hostname = parts.username or "root", parts.hostname
        args = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={SSH_TIMEOUT}"]
        if self.control_dir is not None:
            args += [
                "-o", "ControlMaster=auto",
                "-o", f"ControlPath={self.control_dir}/%C",
                "-o", "ControlPersist=60",
            ]  # fmt: skip
        if keyfile:
            args += ["-i", keyfile]
        # The URI's port is libvirt's (qemu+tcp: 16509), not ssh's: ssh uses its own.
        return [*args, *self.ssh_options, "-l", user, str(hostname)]

    def run(
        self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Runs argv on the host; HostUnreachable if ssh could not get there, and
        HypervisorError (with the program's own words) if the program failed."""
        if self.is_local:
            command = list(argv)
        else:
            if self.control_dir is not None:
                self.control_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            command = [*self.target(), "--", shlex.join(argv)]
        try:
            result = subprocess.run(  # noqa: S603 - an argument list; remote: quoted above
                command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as error:
            raise HostUnreachable(f"{argv[0]} on the host took over {timeout:g}s") from error
        except FileNotFoundError as error:  # this host's own program (ssh: exit status 127)
            raise HypervisorError(f"{argv[0]}: not installed on the host") from error
        if result.returncode == _SSH_UNREACHABLE and not self.is_local:
            raise HostUnreachable(f"ssh: {_last_line(result.stderr)}")
        if result.returncode != 0:
            raise HypervisorError(f"{shlex.join(argv[:3])}: {_last_line(result.stderr)}")
        return result


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "failed"
