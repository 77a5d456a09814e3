#!/usr/bin/env bash
# make demo: one device running the hello app, end to end.
#   scripts/demo.sh        start a node in .demo/, import the hello image, apply examples/hello.yaml
#   scripts/demo.sh stop   remove the hello app and stop the node
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=.demo
DATA=$PWD/$DEMO/data
SHOAL="bin/shoal --data-dir $DATA"
PORT=${DEMO_PORT:-8080}

stop() {
  if [ -f $DEMO/shoal.pid ] && kill -0 "$(cat $DEMO/shoal.pid)" 2>/dev/null; then
    # Containers outlive the node (so that upgrades do not stop them):
    # remove the app first, then stop the node.
    $SHOAL rm hello >/dev/null 2>&1 || true
    for _ in $(seq 100); do $SHOAL ps -o json 2>/dev/null | grep -q '"app"' || break; sleep 0.1; done
    for _ in $(seq 100); do pgrep -f "__shoal_monitor $DATA" >/dev/null || break; sleep 0.1; done
    kill -TERM "$(cat $DEMO/shoal.pid)"
    for _ in $(seq 100); do kill -0 "$(cat $DEMO/shoal.pid)" 2>/dev/null || break; sleep 0.1; done
    echo "demo node stopped"
  fi
  rm -f $DEMO/shoal.pid
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "demo: timed out waiting for $what; see $DEMO/shoal.log" >&2
  exit 1
}

has_leader() { $SHOAL status -o json | grep -q '"stale": false'; }

http_get() { # a GET without curl: bash's /dev/tcp
  exec 3<>/dev/tcp/127.0.0.1/"$PORT" && printf 'GET / HTTP/1.0\r\n\r\n' >&3 && cat <&3 | tail -n 1
}

if [ "${1:-}" = stop ]; then stop; exit 0; fi
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (containers need namespaces and cgroups)" >&2; exit 1; }
stop
mkdir -p $DEMO
echo "== building the hello app into an image"
CGO_ENABLED=0 go build -trimpath -o $DEMO/hello ./examples/hello
go run ./examples/mkimage -ref hello:1 -o $DEMO/hello.tar -entrypoint /hello $DEMO/hello:/hello

echo "== starting a one-node cluster in $DATA"
setsid bin/shoal --data-dir "$DATA" up --name demo --bind 127.0.0.1 --gossip-port 17946 --port 17947 >$DEMO/shoal.log 2>&1 < /dev/null &
echo $! > $DEMO/shoal.pid
wait_for 20 "the node to elect itself" has_leader
$SHOAL status

echo "== importing the image and applying examples/hello.yaml"
$SHOAL image import $DEMO/hello.tar
$SHOAL apply -f examples/hello.yaml
wait_for 30 "hello to answer on port $PORT" http_get
echo "== http://127.0.0.1:$PORT says: $(http_get)"
$SHOAL ps
cat <<MSG

The demo node runs in the background (log: $DEMO/shoal.log). Try:
  $SHOAL ps -o json
  $SHOAL logs hello/0
Stop it with: make demo-stop
MSG
