#!/bin/sh
# /init of the vdc e2e test guest: a busybox initramfs that loads the virtio drivers, gets
# an address by DHCP, reports what it sees on the serial console as "VDC-E2E ..." marker
# lines and then polls the gateway for shell commands to run. See README.md beside this
# file for the protocol. PID 1 must never exit (the kernel would panic), so nothing here
# uses `set -e` and every loop is endless.

PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH

/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
exec </dev/console >/dev/console 2>&1
# Only emergencies from the kernel on the console, so marker lines stay whole.
echo 1 >/proc/sys/kernel/printk

marker() {
	echo "VDC-E2E $*"
}

# busybox `poweroff`, `reboot` and `halt` (without -f) signal PID 1: honour them.
trap 'poweroff -f' USR2
trap 'reboot -f' TERM
trap 'halt -f' USR1
# Ctrl-Alt-Del (the screen tests send it) comes to PID 1 as SIGINT, as on any system with an
# init, rather than rebooting at once (the kernel's default): reported, nothing else.
echo 0 >/proc/sys/kernel/ctrl-alt-del
trap 'marker ctrl-alt-del' INT

# --- drivers ------------------------------------------------------------------------------
# /etc/modules lists, in load order, the modules build.py found in the kernel package
# (built-in and absent ones are left out there).
while read -r module; do
	[ -n "$module" ] || continue
	insmod "/lib/modules/$module.ko" || echo "init: insmod $module failed"
done </etc/modules

# --- ACPI power button ------------------------------------------------------------------------
# The kernel only reports the button (button.ko) as a key press on an input device; there is
# no acpid here, so a reader per "Power Button" device powers off on its first event.
for input in /sys/class/input/input*; do
	[ "$(cat "$input/name" 2>/dev/null)" = "Power Button" ] || continue
	for event in "$input"/event*; do
		[ -e "$event" ] || continue
		(dd if="/dev/input/${event##*/}" of=/dev/null bs=24 count=1 2>/dev/null && poweroff -f) &
	done
done

marker boot

# --- the screen ---------------------------------------------------------------------------
# For the screen tests (README.md, "Screen"): a known picture on the VGA text console (tty1)
# and every line typed there echoed to the serial console, which stays the kernel's and the
# markers'.
if [ -e /dev/tty1 ]; then
	(
		exec </dev/tty1 >/dev/tty1 2>&1
		printf '\033[2J\033[H%s\n' 'VDC-E2E SCREEN'
		# Four bars of eight cells, red, green, blue and white (light grey), then plain again.
		printf '\033[41m%8s\033[42m%8s\033[44m%8s\033[47m%8s\033[0m\n' '' '' '' ''
		printf '%s\n' 'Type a line:'
		while :; do
			if IFS= read -r line; then
				echo "VDC-E2E typed $line" >/dev/console
			else
				sleep 1 # no keyboard yet (or the line ended): try again
			fi
		done
	) &
fi

# --- network ------------------------------------------------------------------------------
ip link set lo up
tries=0
while [ ! -e /sys/class/net/eth0 ] && [ "$tries" -lt 50 ]; do
	sleep 0.1
	tries=$((tries + 1))
done

# dhcp: one attempt (about 20 s without an answer); says why on the console when it fails.
dhcp() {
	rm -f /run/net.env
	if ! ip link set eth0 up 2>/dev/null; then
		echo "init: no eth0"
		return 1
	fi
	udhcpc -i eth0 -t 20 -T 1 -n -s /etc/udhcpc/default.script >/run/udhcpc.log 2>&1 &&
		[ -f /run/net.env ] && return 0
	tail -n 1 /run/udhcpc.log | sed 's/^/init: /'
	return 1
}

net_ip=
net_gateway=
until dhcp; do
	marker net-failed
	sleep 2
done
. /run/net.env
mac=$(cat /sys/class/net/eth0/address)
marker "net ip=$net_ip mac=$mac hostname=$(hostname) gateway=${net_gateway:--}"

# --- disks --------------------------------------------------------------------------------
disks_line() {
	line="VDC-E2E disks"
	for dev in /sys/block/vd*; do
		[ -e "$dev" ] || continue
		serial=$(cat "$dev/serial" 2>/dev/null)
		line="$line ${dev##*/}:$(cat "$dev/size"):${serial:--}"
	done
	echo "$line"
}

disks=$(disks_line)
echo "$disks"
marker ready

# --- command agent ------------------------------------------------------------------------
CR=$(printf '\r')
last_id=

# run_command FILE: FILE is an answer of the command channel; runs it unless empty or seen.
run_command() {
	first=
	IFS= read -r first <"$1"
	first=${first%"$CR"}
	case $first in
	"ID "*) ;;
	*) return 0 ;;
	esac
	id=${first#ID }
	[ -n "$id" ] && [ "$id" != "$last_id" ] || return 0
	last_id=$id
	tail -n +2 "$1" | tr -d '\r' >/tmp/cmd.sh
	marker "cmd-begin $id"
	{
		sh /tmp/cmd.sh </dev/null 2>&1
		echo $? >/tmp/cmd.rc
	} | while IFS= read -r line || [ -n "$line" ]; do
		printf '%s\n' "$line"
	done
	marker "cmd-end $id rc=$(cat /tmp/cmd.rc)"
}

while :; do
	now=$(disks_line)
	if [ "$now" != "$disks" ]; then
		disks=$now
		echo "$disks"
	fi
	# Debian's busybox wget has no -T (it segfaults on it): `timeout` bounds a hung fetch.
	if [ -n "$net_gateway" ] &&
		timeout 3 wget -q -O /tmp/cmd "http://$net_gateway:8086/cmd?ip=$net_ip" 2>/dev/null; then
		run_command /tmp/cmd
	fi
	sleep 1
done
