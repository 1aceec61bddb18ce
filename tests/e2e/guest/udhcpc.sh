#!/bin/sh
# udhcpc event script of the vdc e2e test guest (/etc/udhcpc/default.script in the image,
# where Debian's busybox looks by default; /init also names it with -s).
#
# udhcpc calls it with the event as $1 and the lease in the environment: $interface, $ip,
# $subnet, $broadcast, $router, $dns, $domain and $hostname (DHCP option 12).
# Besides configuring the interface it leaves the lease in /run/net.env for /init.

case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	rm -f /run/net.env
	;;
bound | renew)
	if [ "$1" = bound ]; then
		ip -4 addr flush dev "$interface"
	fi
	ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" ${broadcast:+broadcast "$broadcast"} up

	gateway=
	for r in $router; do
		gateway=$r
		break
	done
	if [ -n "$gateway" ]; then
		ip route replace default via "$gateway" dev "$interface"
	fi

	: >/etc/resolv.conf
	if [ -n "$domain" ]; then
		echo "search $domain" >>/etc/resolv.conf
	fi
	for ns in $dns; do
		echo "nameserver $ns" >>/etc/resolv.conf
	done

	if [ -n "$hostname" ]; then
		hostname "$hostname"
	fi

	# Written last, in one rename: /init reads it as soon as udhcpc returns.
	printf "net_ip='%s'\nnet_gateway='%s'\n" "$ip" "$gateway" >/run/net.env.new
	mv /run/net.env.new /run/net.env
	;;
esac
exit 0
