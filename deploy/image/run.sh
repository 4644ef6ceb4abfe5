#!/usr/bin/env bash
# Runs the built image as a container runtime would, where `podman run` cannot (in some sandboxes
# crun may not set rlimits): as root, in its own mount and PID namespaces, the image's file system
# (`podman image mount`) becomes a read-only root with /proc and a minimal read-only /dev; each -v
# is bound read-only; then `chroot --userspec` starts the image's ENTRYPOINT (and CMD, or your
# arguments) as the image's USER, in its WORKDIR, with exactly its ENV (plus each -e). The proxy is
# PID 1 of its namespace, as in a container, and nothing anywhere is writable to it. The host's
# network is shared (like `--network host`), so loopback ports are reachable both ways.
#
#   deploy/image/run.sh -v "$PWD/my-config-dir:/etc/mythiq-proxy" -e MYTHIQ_API_KEY
#   deploy/image/run.sh -v "$PWD/my-config-dir:/etc/mythiq-proxy" check
#
# Options: -v SRC:DST (DST must exist in the image; /etc/mythiq-proxy does), -e NAME[=VALUE],
# --user UID[:GID], --entrypoint PATH, --pidfile FILE (the proxy's PID as this machine sees it),
# --image NAME (default $MYTHIQ_IMAGE or localhost/mythiq-proxy:latest); `--` ends the options.
# SIGTERM, SIGINT and SIGHUP sent to this script go to the proxy; the exit code is the proxy's.
set -euo pipefail

if [ "${1:-}" = "--inside" ]; then
  # PID 1 of the new namespaces. Arguments: ROOT PIDFILE UID GID WORKDIR N_VOLUMES SRC DST ... --
  # COMMAND...; the environment comes on fd 3.
  shift
  root=$1 pidfile=$2 uid=$3 gid=$4 workdir=$5
  shift 5
  # The host's /proc is still mounted here: it names this shell by its host PID, which exec keeps.
  read -r host_pid _ </proc/self/stat
  [ -z "$pidfile" ] || echo "$host_pid" >"$pidfile"
  mount --bind "$root" "$root"
  mount -o remount,bind,ro "$root"
  mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
  mount -t tmpfs -o nosuid,noexec,mode=0755,size=64k tmpfs "$root/dev"
  for dev in null zero full random urandom; do
    touch "$root/dev/$dev"
    mount --bind "/dev/$dev" "$root/dev/$dev"
  done
  ln -s /proc/self/fd "$root/dev/fd"
  ln -s /proc/self/fd/0 "$root/dev/stdin"
  ln -s /proc/self/fd/1 "$root/dev/stdout"
  ln -s /proc/self/fd/2 "$root/dev/stderr"
  mount -o remount,ro "$root/dev"
  count=$1
  shift
  for ((i = 0; i < count; i++)); do
    [ -d "$root$2" ] || [ -f "$root$2" ] || { echo "run.sh: $2 does not exist in the image" >&2; exit 125; }
    mount --bind "$1" "$root$2"
    mount -o remount,bind,ro "$root$2"
    shift 2
  done
  [ "$1" = "--" ] && shift
  # The environment arrives NUL-separated on fd 3, never in argv: /proc/PID/cmdline is readable by
  # every user of this machine, and -e MYTHIQ_API_KEY carries a secret. Nothing else is kept.
  mapfile -d '' -u 3 env
  exec 3<&-
  for name in $(compgen -e); do unset "$name" 2>/dev/null || true; done
  for assignment in "${env[@]}"; do [ -z "$assignment" ] || export "${assignment?}"; done
  # bash hands what it starts `_=<that command>` and SHLVL; a container has neither.
  exec /usr/bin/env -u _ -u SHLVL /usr/sbin/chroot --userspec="$uid:$gid" --groups="$gid" "$root" /usr/bin/env -C "$workdir" "$@"
fi

IMAGE=${MYTHIQ_IMAGE:-localhost/mythiq-proxy:latest}
PODMAN=(podman --storage-driver vfs)
volumes=() extra_env=() user="" entrypoint="" pidfile=""
while [ $# -gt 0 ]; do
  case "$1" in
    -v) volumes+=("${2%%:*}" "${2#*:}"); shift 2 ;;
    # -e NAME takes NAME from this environment, and is left out when it is not set (as docker does).
    -e) if [[ "$2" == *=* ]]; then extra_env+=("$2"); elif [ -n "${!2+set}" ]; then extra_env+=("$2=${!2}"); fi; shift 2 ;;
    --user) user=$2; shift 2 ;;
    --entrypoint) entrypoint=$2; shift 2 ;;
    --pidfile) pidfile=$2; shift 2 ;;
    --image) IMAGE=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (mount and PID namespaces, chroot)" >&2; exit 125; }
for ((i = 0; i < ${#volumes[@]}; i += 2)); do
  volumes[i]=$(realpath -e "${volumes[i]}")
  volumes[i + 1]=${volumes[i + 1]%:ro}
done

root=$("${PODMAN[@]}" image mount "$IMAGE")
cleanup() {
  "${PODMAN[@]}" image unmount "$IMAGE" >/dev/null 2>&1 || true
  if [ -n "${own_pidfile:-}" ]; then rm -f "$own_pidfile"; fi
}
trap cleanup EXIT

inspect() { "${PODMAN[@]}" image inspect --format "$1" "$IMAGE"; }
user=${user:-$(inspect '{{.Config.User}}')}
user=${user:-0}
uid=${user%%:*}
if [[ "$user" == *:* ]]; then gid=${user#*:}; else gid=$(awk -F: -v u="$uid" '$3 == u { print $4; exit }' "$root/etc/passwd"); fi
gid=${gid:-0}
[[ "$uid$gid" =~ ^[0-9]+$ ]] || { echo "run.sh: USER must be numeric (UID[:GID]), got '$user'" >&2; exit 125; }
workdir=$(inspect '{{.Config.WorkingDir}}')
mapfile -t image_env < <(inspect '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
if [ -n "$entrypoint" ]; then command=("$entrypoint"); else mapfile -t command < <(inspect '{{range .Config.Entrypoint}}{{println .}}{{end}}' | sed '/^$/d'); fi
if [ $# -gt 0 ] || [ -n "$entrypoint" ]; then command+=("$@"); else mapfile -t -O "${#command[@]}" command < <(inspect '{{range .Config.Cmd}}{{println .}}{{end}}' | sed '/^$/d'); fi
[ ${#command[@]} -gt 0 ] || { echo "run.sh: the image has no ENTRYPOINT or CMD" >&2; exit 125; }
if [ -z "$pidfile" ]; then own_pidfile=$(mktemp); pidfile=$own_pidfile; else : >"$pidfile"; fi

env_all=("${image_env[@]}" "${extra_env[@]}")
# setsid: a terminal's Ctrl-C reaches only this script, which forwards it once.
setsid --wait unshare --mount --pid --fork --propagation private -- \
  bash "$0" --inside "$root" "$pidfile" "$uid" "$gid" "${workdir:-/}" \
  $((${#volumes[@]} / 2)) "${volumes[@]}" -- "${command[@]}" 3< <(printf '%s\0' "${env_all[@]}") &
child=$!
forward() { local pid; pid=$(cat "$pidfile" 2>/dev/null || true); [ -z "$pid" ] || kill -"$1" "$pid" 2>/dev/null || true; }
trap 'forward TERM' TERM
trap 'forward INT' INT
trap 'forward HUP' HUP
# `wait` returns early when a trapped signal arrives; the child's own status is kept for the last one.
while kill -0 "$child" 2>/dev/null; do wait "$child" || true; done
wait "$child"
