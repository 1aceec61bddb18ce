#!/bin/sh
# /init of the e2e Linux disk's initramfs (see ../linux_disk.py): loads the virtio drivers
# the cloud kernel has as modules, mounts the root filesystem named by root= on the kernel
# command line, and hands over to its /sbin/init (busybox init). PID 1 must never exit.

PATH=/bin:/sbin
export PATH
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
exec </dev/console >/dev/console 2>&1
echo 1 >/proc/sys/kernel/printk

while read -r module; do
	[ -n "$module" ] || continue
	insmod "/lib/modules/$module.ko" || echo "stage1: insmod $module failed"
done </etc/modules
echo "VDC-E2E boot"

root=
for word in $(cat /proc/cmdline); do
	case $word in root=*) root=${word#root=} ;; esac
done
tries=0
while [ ! -b "$root" ] && [ "$tries" -lt 100 ]; do
	sleep 0.1
	tries=$((tries + 1))
done
mkdir -p /newroot
if ! mount -t ext4 -o rw "$root" /newroot; then
	echo "VDC-E2E stage1 cannot mount root=$root"
	while :; do sleep 60; done
fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /sbin/init
