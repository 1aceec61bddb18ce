#!/bin/sh
# vdc-init: sets an instance up at boot from vdc's metadata service (EC2-compatible, at
# 169.254.169.254), for images without cloud-init. Shipped with vdc: `vdc-manage
# guest-script` prints it, `vdc-manage image prepare --install-init` installs it.
#
# An instance launched with a metadata drive (Wakame-vdc's: a disk whose FAT filesystem is
# labelled METADATA, holding meta-data/ and user-data as files) is read from that drive
# instead: found by /dev/disk/by-label, findfs or blkid, mounted read-only (or used where
# it is mounted already), unmounted at the end. No network is needed then.
#
# POSIX sh. Otherwise it talks HTTP with the first of these the image has: curl, wget (GNU's or
# busybox's), `busybox wget`, python3 (urllib), bash (its /dev/tcp: HTTP/1.0 by hand, for a
# minimal systemd distribution that has none of the others). It asks for an IMDSv2 token
# first (curl, GNU wget, python3 and bash PUT it; busybox wget cannot, so `nc` or `busybox
# nc` does where there is one) and falls back to plain GETs.
#
#   vdc-init --which-http      prints the one it would use (curl, wget, busybox-wget,
#                              python3 or bash) and exits 0; exit 1, and a vdc-init: line
#                              saying why, when there is none. Changes nothing.
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
#   VDC_INIT_SOURCE        auto: the metadata drive when there is one, else the service
#                          (default); drive: the drive only; network: the service only
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
SOURCE=${VDC_INIT_SOURCE:-auto}
STATE=$ROOT/var/lib/vdc-init
DRIVE_LABEL=METADATA
DRIVE=        # where the metadata drive's files are, when it is used
DRIVE_DEVICE=
DRIVE_MOUNTED= # set when vdc-init mounted it (and so unmounts it)
TOKEN_TTL=21600
TOKEN=
HTTP=
NC=

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

# busybox_has APPLET: there is a busybox with APPLET in it (Debian's busybox package, for
# one, links none of its applets into PATH).
busybox_has() {
	command -v busybox >/dev/null 2>&1 || return 1
	for applet in $(busybox --list 2>/dev/null); do
		[ "$applet" != "$1" ] || return 0
	done
	return 1
}

# choose_http: sets HTTP to the way this image talks HTTP, the first one here of curl, wget,
# busybox-wget, python3 and bash; fails when there is none. bash is what a minimal systemd
# distribution (Debian's minbase) has: no curl, no wget, no busybox, no python3.
choose_http() {
	if command -v curl >/dev/null 2>&1; then
		HTTP=curl
	elif command -v wget >/dev/null 2>&1; then
		HTTP=wget
	elif busybox_has wget; then
		HTTP=busybox-wget
	elif command -v python3 >/dev/null 2>&1 &&
		python3 -I -c 'import urllib.request' >/dev/null 2>&1; then
		HTTP=python3
	elif command -v bash >/dev/null 2>&1; then
		HTTP=bash
	else
		return 1
	fi
}

# The python3 way, run as python3 -I -c "$PYTHON_HTTP" METHOD URL FILE [HEADER]: one
# request with urllib (no proxy: the service is on the link), the body of a 200 answer
# written to FILE; exit status 1 for anything else.
PYTHON_HTTP='
import sys
import urllib.request

method, url, file = sys.argv[1:4]
if not url.startswith(("http://", "https://")):
    sys.exit(1)
request = urllib.request.Request(url, method=method, data=b"" if method == "PUT" else None)
for header in sys.argv[4:]:
    name, _, value = header.partition(":")
    request.add_header(name.strip(), value.strip())
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(request, timeout=10) as answer:
        if answer.status != 200:
            sys.exit(1)
        body = answer.read()
except Exception:
    sys.exit(1)
with open(file, "wb") as out:
    out.write(body)
'

# The bash way, run as bash -c "$BASH_HTTP" vdc-init METHOD URL FILE [HEADER]: one HTTP/1.0
# request through bash's /dev/tcp (sh has none). The answer must start with a 200 status
# line; its header lines (CRLF or LF) are read up to the blank line, and the bytes after it,
# as they are, go to FILE (checked against Content-Length where there is one). bash reads a
# socket a byte at a time, so cat gets exactly the body.
# shellcheck disable=SC2016 # bash expands it, not this shell
BASH_HTTP='
method=$1 url=$2 file=$3 header=${4:-}
case $url in http://*) url=${url#http://} ;; *) exit 1 ;; esac
address=${url%%/*}
path=${url#"$address"}
host=${address%:*} port=${address##*:}
[ "$port" != "$address" ] || port=80
exec 3<>"/dev/tcp/$host/$port" || exit 1
{
	printf "%s %s HTTP/1.0\r\nHost: %s\r\n" "$method" "${path:-/}" "$address"
	[ -z "$header" ] || printf "%s\r\n" "$header"
	[ "$method" != PUT ] || printf "Content-Length: 0\r\n"
	printf "\r\n"
} >&3 || exit 1
printf -v cr "\r"
shopt -s nocasematch
IFS= read -r -t 10 status <&3 || exit 1
case ${status%"$cr"} in
"HTTP/1."[01]" 200" | "HTTP/1."[01]" 200 "*) ;;
*) exit 1 ;;
esac
length=""
ended=""
while IFS= read -r -t 10 line <&3; do
	line=${line%"$cr"}
	if [ -z "$line" ]; then
		ended=1
		break
	fi
	case $line in content-length:*) length=${line#*:} length=${length//[!0-9]/} ;; esac
done
[ -n "$ended" ] || exit 1
cat <&3 >"$file" || exit 1
[ -z "$length" ] || [ "$(wc -c <"$file")" -eq "$length" ]
'

# request METHOD PATH FILE [HEADER]: METHOD of BASE/latest/PATH, the body into FILE, by the
# python3 or bash way; fails unless the service answered 200.
request() {
	if [ "$HTTP" = python3 ]; then
		bounded python3 -I -c "$PYTHON_HTTP" "$1" "$BASE/latest/$2" "$3" ${4:+"$4"}
	else
		bounded bash -c "$BASH_HTTP" vdc-init "$1" "$BASE/latest/$2" "$3" ${4:+"$4"}
	fi
}

# --- the metadata drive ---------------------------------------------------------------------

# find_drive: sets DRIVE_DEVICE to the device labelled METADATA, or fails. udev's link
# first, then findfs (util-linux's, or busybox's applet), then util-linux's blkid.
find_drive() {
	DRIVE_DEVICE=
	if [ -e "$ROOT/dev/disk/by-label/$DRIVE_LABEL" ]; then
		DRIVE_DEVICE=$ROOT/dev/disk/by-label/$DRIVE_LABEL
		if command -v readlink >/dev/null 2>&1; then
			DRIVE_DEVICE=$(readlink -f "$DRIVE_DEVICE" 2>/dev/null) ||
				DRIVE_DEVICE=$ROOT/dev/disk/by-label/$DRIVE_LABEL
		fi
	elif command -v findfs >/dev/null 2>&1; then
		DRIVE_DEVICE=$(findfs "LABEL=$DRIVE_LABEL" 2>/dev/null) || DRIVE_DEVICE=
	fi
	if [ -z "$DRIVE_DEVICE" ] && command -v blkid >/dev/null 2>&1; then
		DRIVE_DEVICE=$(blkid -L "$DRIVE_LABEL" 2>/dev/null) || DRIVE_DEVICE=
	fi
	[ -n "$DRIVE_DEVICE" ]
}

# use_drive: sets DRIVE to the drive's files: where it is mounted already (an fstab line, as
# wakame-init's /metadata), else mounted read-only here. Fails when there is no drive or
# it cannot be mounted.
use_drive() {
	find_drive || return 1
	if [ -r "$ROOT/proc/mounts" ]; then
		while read -r device folder _; do
			if [ "$device" = "$DRIVE_DEVICE" ]; then
				DRIVE=$folder
				return 0
			fi
		done <"$ROOT/proc/mounts"
	fi
	folder=$STATE/drive
	mkdir -p "$folder"
	if ! mount -t vfat -o ro "$DRIVE_DEVICE" "$folder" 2>"$WORK/mount.err"; then
		log "could not mount the metadata drive $DRIVE_DEVICE: $(head -n 1 "$WORK/mount.err")"
		return 1
	fi
	DRIVE=$folder
	DRIVE_MOUNTED=1
}

release_drive() {
	if [ -n "$DRIVE_MOUNTED" ]; then
		umount "$DRIVE" 2>/dev/null || log "could not unmount the metadata drive from $DRIVE"
		DRIVE_MOUNTED=
	fi
}

# read_drive PATH FILE: the drive's file PATH into FILE; a PATH ending in / is a folder,
# listed one name per line as the service lists it.
read_drive() {
	case $1 in
	*/)
		[ -d "$DRIVE/$1" ] || return 1
		for entry in "$DRIVE/$1"*; do
			[ ! -e "$entry" ] || echo "${entry##*/}"
		done >"$2"
		;;
	*)
		[ -f "$DRIVE/$1" ] && cat "$DRIVE/$1" >"$2"
		;;
	esac
}

# fetch PATH FILE: PATH (below latest/) from the drive or the service into FILE; fails
# (and leaves no FILE) unless it got it.
fetch() {
	rm -f "$2"
	if [ -n "$DRIVE" ]; then
		read_drive "$1" "$2" && return 0
		rm -f "$2"
		return 1
	fi
	header="X-aws-ec2-metadata-token: $TOKEN"
	case $HTTP in
	curl)
		curl -sf --max-time 10 ${TOKEN:+-H} ${TOKEN:+"$header"} -o "$2" "$BASE/latest/$1"
		;;
	wget)
		bounded wget -q ${TOKEN:+--header} ${TOKEN:+"$header"} -O "$2" "$BASE/latest/$1"
		;;
	busybox-wget)
		bounded busybox wget -q ${TOKEN:+--header} ${TOKEN:+"$header"} -O "$2" \
			"$BASE/latest/$1"
		;;
	*)
		request GET "$1" "$2" ${TOKEN:+"$header"}
		;;
	esac 2>/dev/null && [ -f "$2" ] && return 0
	rm -f "$2"
	return 1
}

# find_nc: sets NC to the command of an nc (an nc, or busybox's), or fails.
find_nc() {
	if command -v nc >/dev/null 2>&1; then
		NC=nc
	elif busybox_has nc; then
		NC="busybox nc"
	else
		return 1
	fi
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
	# shellcheck disable=SC2086 # NC is a command and its first argument
	answer=$(
		{
			printf 'PUT /latest/api/token HTTP/1.0\r\nHost: %s\r\n' "$address"
			printf 'X-aws-ec2-metadata-token-ttl-seconds: %s\r\n\r\n' "$TOKEN_TTL"
			sleep 1
		} | bounded $NC "$host" "$port" 2>/dev/null | tr -d '\r'
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
	case $HTTP in
	curl)
		TOKEN=$(curl -sf --max-time 10 -X PUT -H "$ttl_header" "$BASE/latest/api/token" \
			2>/dev/null) || TOKEN=
		;;
	wget | busybox-wget)
		# GNU wget can PUT; busybox wget refuses --method at once, and nc steps in.
		if [ "$HTTP" = wget ]; then
			TOKEN=$(bounded wget -q -O - --method=PUT --header="$ttl_header" \
				"$BASE/latest/api/token" 2>/dev/null) || TOKEN=
		fi
		if [ -z "$TOKEN" ] && find_nc; then
			TOKEN=$(token_by_nc) || TOKEN=
		fi
		;;
	*)
		if request PUT api/token "$WORK/token" "$ttl_header" 2>/dev/null; then
			IFS= read -r TOKEN <"$WORK/token" || true
		fi
		rm -f "$WORK/token"
		;;
	esac
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

NO_HTTP="no curl, wget, busybox, python3 or bash here: cannot reach the metadata service"
if [ "${1:-}" = --which-http ]; then
	if ! choose_http; then
		log "$NO_HTTP"
		exit 1
	fi
	echo "$HTTP"
	exit 0
fi
case $SOURCE in
auto | drive | network) ;;
*)
	log "VDC_INIT_SOURCE=$SOURCE: expected auto, drive or network"
	exit 1
	;;
esac

mkdir -p "$STATE"
chmod 700 "$STATE"
WORK=$STATE/work
rm -rf "$WORK"
mkdir -p "$WORK"
trap 'release_drive; rm -rf "$WORK"' EXIT

if [ "$SOURCE" != network ] && use_drive; then
	log "reading the metadata drive $DRIVE_DEVICE (LABEL=$DRIVE_LABEL) at ${DRIVE#"$ROOT"}"
elif [ "$SOURCE" = drive ]; then
	log "no metadata drive (LABEL=$DRIVE_LABEL) to read: nothing done"
	exit 1
elif ! choose_http; then
	log "$NO_HTTP"
	exit 1
else
	case $HTTP in
	busybox-wget) log "using busybox wget" ;;
	python3) log "using python3 (urllib)" ;;
	bash) log "using bash (/dev/tcp, HTTP/1.0)" ;;
	*) log "using $HTTP" ;;
	esac
fi

if [ -n "$DRIVE" ]; then
	if ! fetch meta-data/instance-id "$WORK/instance-id"; then
		log "the metadata drive has no meta-data/instance-id: nothing done"
		exit 1
	fi
else
	attempt=1
	until get_token && fetch meta-data/instance-id "$WORK/instance-id"; do
		if [ "$attempt" -ge "$TRIES" ]; then
			log "no answer from the metadata service at $BASE after $TRIES tries: nothing done"
			exit 1
		fi
		attempt=$((attempt + 1))
		sleep 1
	done
fi
INSTANCE_ID=$(head -n 1 "$WORK/instance-id")
case $INSTANCE_ID in
"" | *[!A-Za-z0-9_.-]*)
	log "the metadata gave an invalid instance id: nothing done"
	exit 1
	;;
esac
if [ -n "$DRIVE" ]; then
	log "instance $INSTANCE_ID (metadata drive $DRIVE_DEVICE)"
elif [ -n "$TOKEN" ]; then
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
