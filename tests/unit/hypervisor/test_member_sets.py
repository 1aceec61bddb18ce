"""hypervisor/member_sets.py: the ipset commands a host gets for a group's member addresses
(the real kernel sets on real guests: tests/e2e/test_security_groups_e2e.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from hypervisor.errors import HostUnreachable, HypervisorError
from hypervisor.host_shell import HostShell
from hypervisor.member_sets import MemberSets, set_name


@dataclass(frozen=True)
class Shell(HostShell):
    """Records each command and its input; `refuse` names sets the kernel keeps."""

    uri: str = "qemu:///system"
    listed: str = ""
    refuse: frozenset[str] = frozenset()
    down: bool = False
    calls: list[tuple[list[str], str | None]] = field(default_factory=list)

    def run(
        self, argv: Sequence[str], stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        if self.down:
            raise HostUnreachable("ssh: connect to host node2: No route to host")
        self.calls.append((list(argv), stdin))
        if argv[:2] == ["ipset", "destroy"] and argv[2] in self.refuse:
            raise HypervisorError("ipset destroy: Set cannot be destroyed: it is in use")
        return subprocess.CompletedProcess(argv, 0, self.listed, "")


def test_each_set_is_filled_aside_and_swapped_in_by_one_restore() -> None:
    shell = Shell()
    MemberSets(shell).ensure({"vdc-sg-b": ["10.0.0.3", "10.0.0.2", "10.0.0.3"], "vdc-sg-a": []})
    ((argv, script),) = shell.calls
    assert argv == ["ipset", "restore"]
    assert script is not None and script.splitlines() == [
        "create vdc-sg-a hash:ip family inet -exist",
        "create vdc-sg-a-new hash:ip family inet -exist",
        "flush vdc-sg-a-new",
        "swap vdc-sg-a-new vdc-sg-a",  # a group with no member left: an empty set
        "destroy vdc-sg-a-new",
        "create vdc-sg-b hash:ip family inet -exist",
        "create vdc-sg-b-new hash:ip family inet -exist",
        "flush vdc-sg-b-new",
        "add vdc-sg-b-new 10.0.0.2",
        "add vdc-sg-b-new 10.0.0.3",
        "swap vdc-sg-b-new vdc-sg-b",
        "destroy vdc-sg-b-new",
    ]


def test_nothing_to_hold_runs_nothing() -> None:
    shell = Shell()
    MemberSets(shell).ensure({})
    assert shell.calls == []


def test_names_are_vdcs_sets_only_and_never_one_being_filled() -> None:
    listed = "vdc-sg-b\nother-set\nvdc-sg-a\nvdc-sg-c-new\n"
    assert MemberSets(Shell(listed=listed)).names() == ["vdc-sg-a", "vdc-sg-b"]


def test_a_set_still_matched_by_the_firewall_is_kept_for_a_later_pass() -> None:
    shell = Shell(refuse=frozenset({"vdc-sg-b"}))
    assert MemberSets(shell).remove({"vdc-sg-b", "vdc-sg-a"}) == ["vdc-sg-b"]
    assert [argv for argv, _ in shell.calls] == [
        ["ipset", "destroy", "vdc-sg-a"],
        ["ipset", "destroy", "vdc-sg-b"],
    ]


def test_a_host_out_of_reach_is_not_taken_for_a_set_in_use() -> None:
    with pytest.raises(HostUnreachable):
        MemberSets(Shell(down=True)).remove({"vdc-sg-a"})


def test_set_names_fit_the_kernels_limit_with_their_staging_suffix() -> None:
    assert set_name("sg-4kx9a0qz") == "vdc-sg-4kx9a0qz"
    with pytest.raises(ValueError, match="too long"):
        set_name("sg-" + "x" * 30)
