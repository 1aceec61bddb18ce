#!/bin/sh
# /init of the e2e test installer CD (installer_iso.py): installs the e2e test guest onto the
# first virtio disk the way an OS installer does, then powers off. It partitions the blank
# disk (one bootable FAT partition at 1 MiB), writes the boot code into the MBR and the
# guest's boot partition (syslinux, kernel, initramfs: /boot.img.gz, made from the test
# guest's own disk) into the partition, and says each step on the serial console as a
# "VDC-INSTALL ..." line. Nothing here reads the CD after boot: all it needs is in this
# initramfs. PID 1 must not exit (the kernel would panic): every failure ends in a loop.

PATH=/sbin:/bin:/usr/sbin:/usr/bin
export PATH

/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox --install -s
exec </dev/console >/dev/console 2>&1
echo 1 >/proc/sys/kernel/printk

marker() {
	echo "VDC-INSTALL $*"
}

failed() {
	marker "failed: $*"
	while :; do sleep 3600; done
}

# On the screen too (the VGA text console), for whoever watches it through a display.
echo "vdc e2e installer: installing the test guest onto /dev/vda" >/dev/tty0 2>/dev/null
marker start

while read -r module; do
	[ -n "$module" ] || continue
	insmod "/lib/modules/$module.ko" || echo "installer: insmod $module failed"
done </etc/modules

tries=0
while [ ! -b /dev/vda ] && [ "$tries" -lt 100 ]; do
	sleep 0.1
	tries=$((tries + 1))
done
[ -b /dev/vda ] || failed "no disk /dev/vda"
marker "disk vda $(cat /sys/block/vda/size) sectors"

# One primary partition from sector 2048 as long as the boot partition image, bootable,
# type 6 (FAT16): what the guest's own disk has. busybox fdisk reads its answers from stdin.
last=$((2048 + $(cat /boot.sectors) - 1))
printf 'o\nn\np\n1\n2048\n%s\nt\n6\na\n1\nw\n' "$last" | fdisk -u /dev/vda >/tmp/fdisk.log 2>&1
tries=0
while [ ! -b /dev/vda1 ] && [ "$tries" -lt 50 ]; do
	sleep 0.1
	tries=$((tries + 1))
done
[ -b /dev/vda1 ] || failed "no /dev/vda1 after fdisk: $(tail -n 3 /tmp/fdisk.log)"
marker "partitioned vda1 $(cat /sys/block/vda/vda1/start) $(cat /sys/block/vda/vda1/size)"

# The MBR's boot code (440 bytes: the partition table after it stays fdisk's), then the
# partition: syslinux finds its kernel and initramfs there.
dd if=/mbr.bin of=/dev/vda bs=440 count=1 conv=notrunc 2>/dev/null || failed "MBR not written"
zcat /boot.img.gz | dd of=/dev/vda1 bs=1M 2>/dev/null || failed "boot partition not written"
sync
marker "installed"

echo "vdc e2e installer: done, powering off" >/dev/tty0 2>/dev/null
marker "powering off"
poweroff -f
failed "poweroff returned"
