#!/bin/sh
# /etc/init.d/rcS of the e2e Linux disk: what a distribution's boot does, in little. Busybox
# init runs it once, then the command agent (agent.sh). It prints the same markers as the
# initramfs guest (../README.md), and runs /etc/rc.local where `image prepare
# --install-init` hooks vdc-init in.

PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /run
echo 1 >/proc/sys/kernel/printk
hostname -F /etc/hostname

marker() {
	echo "VDC-E2E $*"
}

# ACPI power button (no acpid): its first key press powers off, as in ../init.sh.
for input in /sys/class/input/input*; do
	[ "$(cat "$input/name" 2>/dev/null)" = "Power Button" ] || continue
	for event in "$input"/event*; do
		[ -e "$event" ] || continue
		(dd if="/dev/input/${event##*/}" of=/dev/null bs=24 count=1 2>/dev/null &&
			sync && poweroff -f) &
	done
done

ip link set lo up
tries=0
while [ ! -e /sys/class/net/eth0 ] && [ "$tries" -lt 50 ]; do
	sleep 0.1
	tries=$((tries + 1))
done
until ip link set eth0 up && udhcpc -i eth0 -t 20 -T 1 -n -s /etc/udhcpc/default.script \
	>/run/udhcpc.log 2>&1 && [ -f /run/net.env ]; do
	marker net-failed
	sleep 2
done
. /run/net.env
# DHCP names the guest too; the image's own name stands until vdc-init changes it, so what
# the test reads afterwards is vdc-init's doing.
hostname -F /etc/hostname
marker "net ip=$net_ip mac=$(cat /sys/class/net/eth0/address) hostname=$(hostname)" \
	"gateway=${net_gateway:--}"

if [ -x /etc/rc.local ]; then
	/etc/rc.local
	echo "rcS: rc.local exited with status $?"
fi
marker ready
