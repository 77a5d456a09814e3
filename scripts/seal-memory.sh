#!/usr/bin/env bash
# The memory of a daemon with one container, for docs/BENCHMARKS.md ("Sealed
# binary for inits and helpers"). Run as root:
#   scripts/seal-memory.sh OLD_BIN NEW_BIN
# For each of old, new and new-memfd (twice), it copies the binary into a
# temporary dir, starts `shoal up` there, imports a busybox image, applies
# one sleeper app and prints /proc/PID/status (VmRSS, RssAnon, RssFile,
# RssShmem) idle and 10 s after the app runs, the change of Shmem in
# /proc/meminfo across that start, and the daemon's memfds. new-memfd
# replaces the binary's file by a copy of itself once the daemon runs, as an
# upgrade in place would: the daemon must then seal a memfd copy.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 OLD_BIN NEW_BIN" >&2; exit 2; }
old=$(realpath "$1") new=$(realpath "$2")
work=$(mktemp -d /var/tmp/seal-memory.XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; wait "$pid" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cd "$work"
umoci init --layout oci >/dev/null
umoci new --image oci:1
umoci config --image oci:1 --config.entrypoint /bin/busybox --config.cmd sh
umoci unpack --image oci:1 bundle >/dev/null
mkdir -p bundle/rootfs/bin && cp "$(command -v busybox)" bundle/rootfs/bin/busybox
umoci repack --image oci:1 bundle
skopeo copy --quiet oci:oci:1 "docker-archive:$work/busybox.tar:busybox:1"
cat >app.yaml <<'YAML'
name: sleeper
image: busybox:1
command: [/bin/busybox, sh, -c, "trap 'exit 0' TERM; /bin/busybox sleep 3600 & wait"]
replicas: 1
restart: always
YAML

mem() { grep -E 'VmRSS|RssAnon|RssFile|RssShmem' "/proc/$1/status" | tr -s ' \t' ' ' | tr '\n' ' '; }
shmem() { awk '/^Shmem:/{print $2}' /proc/meminfo; }
wait_for() { # wait_for DESCRIPTION COMMAND...: poll every 0.2 s for 20 s
  local what=$1; shift
  for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; kill -0 "$pid" || break; sleep 0.2; done
  echo "$what: not within 20 s; log:" >&2; tail -5 "$work/$variant.log" >&2; exit 1
}

for variant in old new new-memfd old new new-memfd; do
  case $variant in old) src=$old ;; *) src=$new ;; esac
  dir=$work/$variant; rm -rf "$dir"; mkdir -p "$dir/bin"
  bin=$dir/bin/shoal; cp "$src" "$bin"
  gossip=$(shuf -i 40000-48999 -n1)
  "$bin" --data-dir "$dir/data" up --name "mem-$variant" --bind 127.0.0.1 \
    --gossip-port "$gossip" --port $((gossip + 1)) >"$work/$variant.log" 2>&1 &
  pid=$!
  wait_for "shoal up leads" "$bin" --data-dir "$dir/data" status
  "$bin" --data-dir "$dir/data" image import "$work/busybox.tar" >/dev/null
  if [ "$variant" = new-memfd ]; then cp "$bin" "$bin.next" && mv "$bin.next" "$bin"; fi
  sleep 5
  echo "$variant idle:            $(mem "$pid")"
  before=$(shmem)
  "$bin" --data-dir "$dir/data" apply -f app.yaml >/dev/null
  wait_for "sleeper running" sh -c "'$bin' --data-dir '$dir/data' ps | grep -q running"
  after=$(shmem)
  sleep 10
  echo "$variant one container:   $(mem "$pid")Shmem change $((after - before)) kB"
  for fd in /proc/"$pid"/fd/*; do
    case $(readlink "$fd") in *memfd:*) echo "  $(readlink "$fd"): $(stat -L -c %s "$fd") bytes" ;; esac
  done
  "$bin" --data-dir "$dir/data" rm sleeper >/dev/null
  kill -TERM "$pid"; wait "$pid" || true; pid=
done
