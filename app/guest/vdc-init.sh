#!/bin/sh
# vdc-init: sets an instance up at boot from vdc's metadata service (EC2-compatible, at
# 169.254.169.254), for images without cloud-init. Shipped with vdc: `vdc-manage
# guest-script` prints it, `vdc-manage image prepare --install-init` installs it.
#
# POSIX sh; talks HTTP with curl or wget (busybox wget does). It asks for an IMDSv2 token
# first (curl or GNU wget PUT it; busybox wget cannot, so `nc` does where there is one)
# and falls back to plain GETs.
#
#   every boot:                hostname, /etc/hostname and /etc/hosts;
#                              SSH host keys, when the image has none
#   once per instance id:      the public key(s) for root (or VDC_INIT_USER);
#                              user-data, run when it starts with #!
#
# Each step is logged as a "vdc-init: ..." line on stdout (the console from rc.local; the
# unit shipped with vdc sends it to the console and the journal). Exit status 1 means the
# metadata service never answered; the one-time work then waits for the next boot.
#
# Settings, from the environment or /etc/default/vdc-init (a sh file):
#   VDC_INIT_USER          who gets the public keys (default: root)
#   VDC_INIT_METADATA_URL  where the service is (default: http://169.254.169.254)
#   VDC_INIT_TRIES         attempts, a second apart, while the network comes up (default: 30)
#   VDC_INIT_ROOT          act on this folder instead of / (tests; the hostname command
#                          still runs)

set -u

ROOT=${VDC_INIT_ROOT:-}
if [ -r "$ROOT/etc/default/vdc-init" ]; then
	# shellcheck disable=SC1091 # the image's own settings
	. "$ROOT/etc/default/vdc-init"
fi
BASE=${VDC_INIT_METADATA_URL:-http://169.254.169.254}
BASE=${BASE%/}
TRIES=${VDC_INIT_TRIES:-30}
KEY_USER=${VDC_INIT_USER:-root}
STATE=$ROOT/var/lib/vdc-init
TOKEN_TTL=21600
TOKEN=
HTTP=

log() {
	echo "vdc-init: $*"
}

case ${1:-} in
-h | --help)
	sed -n '2,/^$/s/^# \{0,1\}//p' "$0"
	exit 0
	;;
esac

# bounded CMD...: runs CMD, stopped after 10 s where `timeout` exists (busybox wget has no
# usable timeout option of its own). CMD goes by the path this shell finds: busybox's
# timeout would otherwise run its own applet of that name.
bounded() {
	if command -v timeout >/dev/null 2>&1; then
		program=$(command -v "$1")
		shift
		timeout 10 "$program" "$@"
	else
		"$@"
	fi
}

# --- talking to the metadata service ------------------------------------------------------

if command -v curl >/dev/null 2>&1; then
	HTTP=curl
elif command -v wget >/dev/null 2>&1; then
	HTTP=wget
else
	log "neither curl nor wget here: cannot reach the metadata service"
	exit 1
fi

# fetch PATH FILE: BASE/latest/PATH into FILE; fails (and leaves no FILE) unless it got it.
fetch() {
	rm -f "$2"
	header="X-aws-ec2-metadata-token: $TOKEN"
	if [ "$HTTP" = curl ]; then
		curl -sf --max-time 10 ${TOKEN:+-H} ${TOKEN:+"$header"} -o "$2" "$BASE/latest/$1"
	else
		bounded wget -q ${TOKEN:+--header} ${TOKEN:+"$header"} -O "$2" "$BASE/latest/$1"
	fi 2>/dev/null && [ -f "$2" ] && return 0
	rm -f "$2"
	return 1
}

# token_by_nc: an IMDSv2 token through a bare HTTP/1.0 PUT, for images whose only HTTP
# client is busybox wget (which cannot PUT).
token_by_nc() {
	address=${BASE#http://}
	address=${address%%/*}
	host=${address%:*}
	port=${address##*:}
	[ "$port" != "$address" ] || port=80
	# nc hangs up when its input ends: the sleep leaves the answer time to arrive.
	answer=$(
		{
			printf 'PUT /latest/api/token HTTP/1.0\r\nHost: %s\r\n' "$address"
			printf 'X-aws-ec2-metadata-token-ttl-seconds: %s\r\n\r\n' "$TOKEN_TTL"
			sleep 1
		} | bounded nc "$host" "$port" 2>/dev/null | tr -d '\r'
	)
	case $answer in
	"HTTP/"*" 200"*) printf '%s\n' "$answer" | sed '1,/^$/d' ;;
	*) return 1 ;;
	esac
}

# get_token: sets TOKEN, or leaves it empty when the service (or this image) cannot do
# IMDSv2; every fetch then is a plain GET.
get_token() {
	TOKEN=
	ttl_header="X-aws-ec2-metadata-token-ttl-seconds: $TOKEN_TTL"
	if [ "$HTTP" = curl ]; then
		TOKEN=$(curl -sf --max-time 10 -X PUT -H "$ttl_header" "$BASE/latest/api/token" \
			2>/dev/null) || TOKEN=
	else
		# GNU wget can PUT; busybox wget refuses --method at once, and nc steps in.
		TOKEN=$(bounded wget -q -O - --method=PUT --header="$ttl_header" \
			"$BASE/latest/api/token" 2>/dev/null) || TOKEN=
		if [ -z "$TOKEN" ] && command -v nc >/dev/null 2>&1; then
			TOKEN=$(token_by_nc) || TOKEN=
		fi
	fi
	case $TOKEN in
	*[!A-Za-z0-9._=-]*) TOKEN= ;; # not a token: an error page, a proxy's answer
	esac
}

# --- what to do with the answers ----------------------------------------------------------

valid_hostname() {
	case $1 in
	"" | *[!A-Za-z0-9.-]* | .* | -*) return 1 ;;
	esac
	[ "${#1}" -le 253 ]
}

set_hostname() {
	if ! fetch meta-data/local-hostname "$WORK/hostname" &&
		! fetch meta-data/hostname "$WORK/hostname"; then
		log "no hostname in the metadata: hostname left as it is"
		return
	fi
	fqdn=$(head -n 1 "$WORK/hostname")
	if ! valid_hostname "$fqdn"; then
		log "ignored an invalid hostname from the metadata: $fqdn"
		return
	fi
	short=${fqdn%%.*}
	hostname "$short" || log "could not set the running hostname to $short"
	echo "$short" >"$ROOT/etc/hostname"
	address=127.0.1.1
	if fetch meta-data/local-ipv4 "$WORK/ipv4"; then
		address=$(head -n 1 "$WORK/ipv4")
	fi
	names=$fqdn
	[ "$short" = "$fqdn" ] || names="$fqdn $short"
	# Lines vdc-init wrote end in "# vdc-init": replaced on every boot, the rest kept.
	hosts=$ROOT/etc/hosts
	{
		if [ -f "$hosts" ]; then
			grep -v ' # vdc-init$' "$hosts"
		fi
		if ! grep -q '^127\.0\.0\.1[[:space:]].*localhost' "$hosts" 2>/dev/null; then
			echo "127.0.0.1 localhost"
		fi
		echo "$address $names # vdc-init"
	} >"$hosts.vdc-init"
	mv "$hosts.vdc-init" "$hosts"
	log "hostname $short; /etc/hosts: $address $names"
}

# ensure_host_keys: sshd refuses to start without host keys, and a prepared image has none
# (each instance must have its own).
ensure_host_keys() {
	if [ -d "$ROOT/etc/ssh" ]; then
		for key in "$ROOT"/etc/ssh/ssh_host_*_key; do
			if [ -f "$key" ]; then
				log "SSH host keys present"
				return
			fi
		done
		if ! command -v ssh-keygen >/dev/null 2>&1; then
			log "no ssh-keygen: no SSH host keys made"
			return
		fi
		for type in rsa ecdsa ed25519; do
			file=$ROOT/etc/ssh/ssh_host_${type}_key
			if ssh-keygen -q -t "$type" -N '' -f "$file" </dev/null >/dev/null 2>&1; then
				log "created SSH host key $(ssh-keygen -l -f "$file.pub" 2>/dev/null)"
			else
				log "ssh-keygen could not make a $type host key"
			fi
		done
	elif [ -d "$ROOT/etc/dropbear" ]; then
		for type in rsa ecdsa ed25519; do
			file=$ROOT/etc/dropbear/dropbear_${type}_host_key
			[ ! -f "$file" ] || continue
			if dropbearkey -t "$type" -f "$file" >/dev/null 2>&1; then
				log "created dropbear host key $type"
			fi
		done
	else
		log "no SSH server configuration (/etc/ssh, /etc/dropbear): no host keys made"
	fi
}

# find_user NAME: sets uid, gid and home from NAME's line in /etc/passwd.
find_user() {
	[ -r "$ROOT/etc/passwd" ] || return 1
	while IFS=: read -r name _ uid gid _ home _; do
		[ "$name" != "$1" ] || return 0
	done <"$ROOT/etc/passwd"
	return 1
}

install_public_keys() {
	if ! fetch meta-data/public-keys/ "$WORK/keys"; then
		log "no public key in the metadata"
		return
	fi
	if ! find_user "$KEY_USER"; then
		log "user $KEY_USER does not exist: public keys not installed"
		return
	fi
	home=$ROOT$home
	mkdir -p "$home/.ssh"
	chmod 700 "$home/.ssh"
	file=$home/.ssh/authorized_keys
	touch "$file"
	chmod 600 "$file"
	added=0
	# The listing says "0=name" per key; each key is at public-keys/<index>/openssh-key.
	while IFS= read -r listed || [ -n "$listed" ]; do
		index=${listed%%=*}
		case $index in "" | *[!0-9]*) continue ;; esac
		fetch "meta-data/public-keys/$index/openssh-key" "$WORK/key" || continue
		key=$(head -n 1 "$WORK/key" | tr -d '\r')
		case $key in
		ssh-* | ecdsa-* | sk-*) ;;
		*)
			log "ignored public key $index: not an OpenSSH public key line"
			continue
			;;
		esac
		if ! grep -qxF "$key" "$file"; then
			echo "$key" >>"$file"
			added=$((added + 1))
		fi
	done <"$WORK/keys"
	chown "$uid:$gid" "$home/.ssh" "$file" 2>/dev/null ||
		log "could not give $file to user $KEY_USER"
	log "public keys for $KEY_USER: $added added to ${file#"$ROOT"}"
}

run_user_data() {
	if ! fetch user-data "$WORK/user-data"; then
		log "no user-data"
		return
	fi
	first=
	IFS= read -r first <"$WORK/user-data" || true
	case $first in
	"#!"*) ;;
	*)
		log "user-data does not start with #!: not run"
		return
		;;
	esac
	script=$INSTANCE_STATE/user-data
	cp "$WORK/user-data" "$script"
	chmod 700 "$script"
	log "running user-data (${first#??})"
	(cd / && "$script")
	log "user-data exited with status $?"
}

# --- main ---------------------------------------------------------------------------------

mkdir -p "$STATE"
chmod 700 "$STATE"
WORK=$STATE/work
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'rm -rf "$WORK"' EXIT

attempt=1
until get_token && fetch meta-data/instance-id "$WORK/instance-id"; do
	if [ "$attempt" -ge "$TRIES" ]; then
		log "no answer from the metadata service at $BASE after $TRIES tries: nothing done"
		exit 1
	fi
	attempt=$((attempt + 1))
	sleep 1
done
INSTANCE_ID=$(head -n 1 "$WORK/instance-id")
case $INSTANCE_ID in
"" | *[!A-Za-z0-9_.-]*)
	log "the metadata service gave an invalid instance id: nothing done"
	exit 1
	;;
esac
if [ -n "$TOKEN" ]; then
	log "instance $INSTANCE_ID (metadata at $BASE, IMDSv2 token, $HTTP)"
else
	log "instance $INSTANCE_ID (metadata at $BASE, plain GETs, $HTTP)"
fi

set_hostname
ensure_host_keys

INSTANCE_STATE=$STATE/instances/$INSTANCE_ID
if [ -f "$INSTANCE_STATE/done" ]; then
	log "one-time set-up of $INSTANCE_ID already done"
else
	mkdir -p "$INSTANCE_STATE"
	log "first boot of $INSTANCE_ID: one-time set-up"
	install_public_keys
	run_user_data
	date >"$INSTANCE_STATE/done" 2>/dev/null || : >"$INSTANCE_STATE/done"
fi
echo "$INSTANCE_ID" >"$STATE/instance-id"
log "done"
