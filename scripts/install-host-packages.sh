#!/usr/bin/env bash
# Installs the Debian packages vdc needs, only those missing; safe to run again.
#   scripts/install-host-packages.sh [run|test]
# "test" adds what the test suite needs (PostgreSQL server, Chromium).
set -euo pipefail

# libvirt-daemon-config-nwfilter brings clean-traffic and the other filters vdc's security
# group filters build on; iptables brings ebtables-nft, which libvirt's nwfilter runs;
# ipset keeps each security group's member addresses, which the filters match.
# libguestfs-tools: `vdc-manage image prepare` edits images offline with guestfish.
# syslinux, mtools, dosfstools, fdisk: the disk of the guest that probes whether KVM works;
# mtools, dosfstools, fdisk also build instances' metadata drives (no mounting).
# openssh-client: the bridge and VXLAN steps on other hosts run over ssh.
packages=(
  qemu-utils qemu-system-x86 libvirt-daemon-system libvirt-daemon-config-nwfilter
  libvirt-clients libvirt-dev pkg-config dnsmasq-base dnsmasq-utils iptables ipset gcc
  python3-dev python3-venv iproute2 util-linux libguestfs-tools
  syslinux syslinux-common mtools dosfstools fdisk openssh-client
)
# libguestfs boots its appliance with the host's kernel; a container has none in /boot.
if ! compgen -G "/boot/vmlinuz-*" >/dev/null; then
  packages+=("linux-image-cloud-$(dpkg --print-architecture)")
fi
if [[ "${1:-run}" == test ]]; then
  # PostgreSQL for the integration suite; Chromium for the web UI tests (Playwright drives
  # Debian's browser: it cannot download its own here).
  packages+=(postgresql chromium)
  # The guest tools vdc-init's tests run it with (busybox-static, curl, wget, ssh-keygen),
  # and e2fsprogs for test images made with mkfs.ext4 -d and read back with debugfs.
  packages+=(busybox-static curl wget openssh-client e2fsprogs)
  # The installer CD the e2e tests make (xorriso writes it, isolinux boots it), and the
  # small ISO files the integration tests register.
  packages+=(xorriso isolinux)
  # The multi-host e2e tests run an sshd of their own inside a network namespace (the
  # remote host's); the policy below keeps the package from starting one on this machine.
  packages+=(openssh-server)
  # What bench/metadata.py measures vdc's metadata service against (nginx) and with (wrk):
  # the suite runs its short version (tests/integration/test_bench_metadata.py).
  packages+=(nginx-light wrk)
fi

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$package")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
if ((EUID != 0)); then
  echo "vdc needs these Debian packages: ${missing[*]}; run as root (or install them)" >&2
  exit 1
fi

echo "installing Debian packages: ${missing[*]}"
# Package scripts must not start libvirtd here: it would create its default network (a
# bridge) in this machine's root network namespace. vdc starts what it needs itself.
policy=/usr/sbin/policy-rc.d
placed_policy=
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && placed_policy=1
fi
trap '[[ -n $placed_policy ]] && rm -f "$policy"' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
