#!/usr/bin/env bash
# make demo: one device running the hello app, end to end.
#   scripts/demo.sh        start a node in .demo/, import the hello image, apply examples/hello.yaml
#   scripts/demo.sh stop   remove the hello app and stop the node
# Ports, when the defaults are taken: DEMO_PORT (the hello app, 8080),
# DEMO_GOSSIP_PORT (17946) and DEMO_CLUSTER_PORT (17947), e.g.
#   DEMO_PORT=9080 make demo
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=.demo
DATA=$PWD/$DEMO/data
SHOAL="bin/shoal --data-dir $DATA"
PORT=${DEMO_PORT:-8080}
GOSSIP_PORT=${DEMO_GOSSIP_PORT:-17946}
CLUSTER_PORT=${DEMO_CLUSTER_PORT:-17947}
for p in "$PORT" "$GOSSIP_PORT" "$CLUSTER_PORT"; do
  [[ $p =~ ^[0-9]+$ ]] && [ "$p" -ge 1 ] && [ "$p" -le 65535 ] ||
    { echo "demo: port $p (DEMO_PORT, DEMO_GOSSIP_PORT, DEMO_CLUSTER_PORT): want a number from 1 to 65535" >&2; exit 1; }
done

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
# Something else answering on the app's port would pass the check below.
if (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then
  echo "demo: port $PORT is taken: choose another with DEMO_PORT=..." >&2
  exit 1
fi
mkdir -p $DEMO
echo "== building the hello app into an image"
CGO_ENABLED=0 go build -trimpath -o $DEMO/hello ./examples/hello
go run ./examples/mkimage -ref hello:1 -o $DEMO/hello.tar -entrypoint /hello $DEMO/hello:/hello

echo "== starting a one-node cluster in $DATA"
setsid bin/shoal --data-dir "$DATA" up --name demo --bind 127.0.0.1 --gossip-port "$GOSSIP_PORT" --port "$CLUSTER_PORT" >$DEMO/shoal.log 2>&1 < /dev/null &
echo $! > $DEMO/shoal.pid
wait_for 20 "the node to elect itself (if its ports $GOSSIP_PORT or $CLUSTER_PORT are taken: DEMO_GOSSIP_PORT=..., DEMO_CLUSTER_PORT=...)" has_leader
$SHOAL status

echo "== importing the image and applying examples/hello.yaml (on port $PORT)"
$SHOAL image import $DEMO/hello.tar
# The app listens on its PORT variable: the demo's port goes there.
sed "s/PORT: \"8080\"/PORT: \"$PORT\"/" examples/hello.yaml > $DEMO/hello.yaml
grep -q "PORT: \"$PORT\"" $DEMO/hello.yaml || { echo "demo: examples/hello.yaml no longer sets PORT: \"8080\"" >&2; exit 1; }
$SHOAL apply -f $DEMO/hello.yaml
wait_for 30 "hello to answer on port $PORT" http_get
echo "== http://127.0.0.1:$PORT says: $(http_get)"
$SHOAL ps
cat <<MSG

The demo node runs in the background (log: $DEMO/shoal.log). Try:
  $SHOAL ps -o json
  $SHOAL logs hello/0
Stop it with: make demo-stop
MSG
