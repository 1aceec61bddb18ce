#!/bin/sh
# The command agent of the e2e Linux disk (busybox init respawns it): the protocol of
# ../README.md, "Command channel", as ../init.sh serves it.

PATH=/usr/local/sbin:/usr/local/bin:/sbin:/bin:/usr/sbin:/usr/bin
export PATH
. /run/net.env
CR=$(printf '\r')
last_id=
while :; do
	if timeout 3 wget -q -O /tmp/cmd "http://$net_gateway:8086/cmd?ip=$net_ip" 2>/dev/null; then
		first=
		IFS= read -r first </tmp/cmd
		first=${first%"$CR"}
		id=${first#ID }
		if [ "$first" != "$id" ] && [ -n "$id" ] && [ "$id" != "$last_id" ]; then
			last_id=$id
			tail -n +2 /tmp/cmd | tr -d '\r' >/tmp/cmd.sh
			echo "VDC-E2E cmd-begin $id"
			sh /tmp/cmd.sh </dev/null 2>&1
			echo "VDC-E2E cmd-end $id rc=$?"
		fi
	fi
	sleep 1
done
