"""The text edits `image prepare` makes to a guest's files, and how it sets up libguestfs."""

from __future__ import annotations

import pytest

from app.services.images import guest_edits
from app.services.images.guestfish import guestfs_environment

IFCFG = 'DEVICE=eth0\nHWADDR=52:54:00:ab:cd:ef\n  HWADDR="52:54:00:00:00:01"\nBOOTPROTO=dhcp\n'


def test_hwaddr_lines_are_commented_out_and_the_rest_kept() -> None:
    text, changed = guest_edits.comment_out_hwaddr(IFCFG)
    assert changed == 2
    assert text == (
        'DEVICE=eth0\n#HWADDR=52:54:00:ab:cd:ef\n  #HWADDR="52:54:00:00:00:01"\nBOOTPROTO=dhcp\n'
    )
    assert guest_edits.comment_out_hwaddr(text) == (text, 0)  # a second run changes nothing


def test_module_lists_are_read_like_modprobe_does() -> None:
    etc_modules = "# /etc/modules\nloop\nacpiphp  # volumes\n"
    assert guest_edits.lists_module(etc_modules, "acpiphp")
    assert guest_edits.lists_module(etc_modules, "loop")
    assert not guest_edits.lists_module("# acpiphp\nloop\n", "acpiphp")
    assert not guest_edits.lists_module("acpiphp_extra\n", "acpiphp")


def test_with_line_appends_once_and_mends_a_missing_newline() -> None:
    assert guest_edits.with_line("nameserver 1.1.1.1", "nameserver 8.8.8.8") == (
        "nameserver 1.1.1.1\nnameserver 8.8.8.8\n"
    )
    assert guest_edits.with_line("nameserver 8.8.8.8  # google\n", "nameserver 8.8.8.8") is None
    assert guest_edits.with_line("", "acpiphp") == "acpiphp\n"


def test_builtin_modules_are_recognised_from_modules_builtin() -> None:
    builtin = "kernel/drivers/pci/hotplug/acpiphp.ko\nkernel/fs/ext4/ext4.ko\n"
    assert guest_edits.is_builtin(builtin, "acpiphp")
    assert not guest_edits.is_builtin("kernel/drivers/pci/hotplug/acpiphp_ibm.ko\n", "acpiphp")


DEBIAN_RC_LOCAL = "#!/bin/sh -e\n#\n# rc.local\n\nexit 0\n"


def test_rc_local_runs_the_command_before_its_final_exit() -> None:
    updated = guest_edits.rc_local_running(DEBIAN_RC_LOCAL, "/usr/local/sbin/vdc-init")
    assert updated is not None
    lines = updated.splitlines()
    assert lines[-1] == "exit 0"
    # `|| true`: under `sh -e` a failed set-up must not cut the rest of rc.local short.
    assert lines[-2].startswith("/usr/local/sbin/vdc-init || true")
    assert guest_edits.rc_local_running(updated, "/usr/local/sbin/vdc-init") is None


def test_rc_local_without_exit_gets_the_command_at_the_end() -> None:
    text = "#!/bin/sh\ntouch /var/lock/subsys/local\n"
    updated = guest_edits.rc_local_running(text, "/usr/local/sbin/vdc-init")
    assert updated is not None
    assert updated.startswith(text)
    assert updated.splitlines()[-1].startswith("/usr/local/sbin/vdc-init || true")


def test_a_new_rc_local_is_a_script_that_runs_the_command() -> None:
    created = guest_edits.new_rc_local("/usr/local/sbin/vdc-init")
    assert created.startswith("#!/bin/sh\n")
    assert "/usr/local/sbin/vdc-init || true" in created
    assert created.splitlines()[-1] == "exit 0"


@pytest.mark.parametrize(
    ("path", "disposal"),
    [
        ("/var/log/messages", "empty"),
        ("/var/log/wtmp", "empty"),
        ("/var/log/apt/history.log", "empty"),
        ("/var/log/syslog.1", "remove"),
        ("/var/log/syslog.2.gz", "remove"),
        ("/var/log/dmesg.old", "remove"),
        ("/var/log/journal/0123/system.journal", "remove"),
        ("/var/log/journal/0123/user-1000.journal~", "remove"),
    ],
)
def test_logs_are_emptied_and_old_ones_removed(path: str, disposal: str) -> None:
    assert guest_edits.log_disposal(path) == disposal


def test_user_names() -> None:
    assert guest_edits.passwd_users(
        "root:x:0:0::/root:/bin/sh\ndebian:x:1000:1000::/home/d:\n"
    ) == {
        "root",
        "debian",
    }
    assert guest_edits.valid_user_name("debian")
    assert not guest_edits.valid_user_name("root;reboot")
    assert not guest_edits.valid_user_name("Debian")


def test_libguestfs_uses_tcg_unless_kvm_is_known_to_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LIBGUESTFS_BACKEND", raising=False)
    monkeypatch.delenv("LIBGUESTFS_BACKEND_SETTINGS", raising=False)
    for virt_type in ("qemu", "auto"):
        env = guestfs_environment(virt_type)
        assert env["LIBGUESTFS_BACKEND"] == "direct"
        assert env["LIBGUESTFS_BACKEND_SETTINGS"] == "force_tcg"
    assert "LIBGUESTFS_BACKEND_SETTINGS" not in guestfs_environment("kvm")
    # What the operator set is theirs.
    monkeypatch.setenv("LIBGUESTFS_BACKEND_SETTINGS", "force_kvm")
    monkeypatch.setenv("LIBGUESTFS_BACKEND", "libvirt")
    env = guestfs_environment("qemu")
    assert (env["LIBGUESTFS_BACKEND"], env["LIBGUESTFS_BACKEND_SETTINGS"]) == (
        "libvirt",
        "force_kvm",
    )
