"""hypervisor/host_shell.py on the host vdc runs on (over ssh: the multi-host e2e tests)."""

from __future__ import annotations

import pytest

from hypervisor.errors import HostUnreachable, HypervisorError
from hypervisor.host_shell import HostShell

LOCAL = HostShell("qemu:///system")


def test_a_program_the_host_lacks_is_named_not_a_traceback() -> None:
    with pytest.raises(HypervisorError, match="vdc-no-such-program: not installed on the host"):
        LOCAL.run(["vdc-no-such-program", "restore"])


def test_a_failing_program_is_told_in_its_own_words() -> None:
    with pytest.raises(HypervisorError, match="sh -c 'echo nope >&2; exit 3': nope"):
        LOCAL.run(["sh", "-c", "echo nope >&2; exit 3"])


def test_input_and_output_pass_through() -> None:
    assert LOCAL.run(["cat"], stdin="create vdc-sg-a\n").stdout == "create vdc-sg-a\n"


def test_a_program_that_hangs_is_an_unreachable_host() -> None:
    with pytest.raises(HostUnreachable, match=r"took over 0\.2s"):
        LOCAL.run(["sleep", "5"], timeout=0.2)
