#!/usr/bin/env bash
# Mirror-capture throughput on a veth (docs/BENCHMARKS.md, "Mirror capture"): `sipcapture up`
# captures (raw_moni_capture_on) on the host end of a veth pair whose other end is in a network
# namespace; `hep-loadgen --sip-only` sends plain SIP INVITEs over UDP from the namespace at
# fixed rates. For each rate: packets sent (the loadgen), frames the collector read
# (`mirror_frames`) and records it made (`records_queued`, or `discarded.status` with capture
# off), and drops = sent - frames read (the BPF filter lets only the test traffic through).
#
#   cargo build --release
#   sudo collector/benches/mirror_veth.sh                 # defaults below
#   RATES="50000 100000" CHILDREN=2 BPF=1 CAPTURE=off sudo -E collector/benches/mirror_veth.sh
#
# Needs root, python3, grpcurl. Creates and removes namespace rawsock-bench-<pid> and its veth.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/target/release}
RATES=${RATES:-"20000 50000 100000 150000"}
STEP_SECONDS=${STEP_SECONDS:-10}
CHILDREN=${CHILDREN:-1}
BPF=${BPF:-1}
# off: the collector alone with capture off, so each SIP message is dissected and stops at the
# status gate (counted as discarded.status): the capture path without the database. on:
# `sipcapture up`, every record goes to SQLite.
CAPTURE=${CAPTURE:-off}
SIZE=${SIZE:-800}
SENDERS=${SENDERS:-1}

NS="rawsock-bench-$$"
HOST_IF="rskb$$a"
NS_IF="rskb$$b"
NET=10.251.$(($$ % 250))
GRPC_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORK=$(mktemp -d)
UP_PID=""
SINK_PID=""

cleanup() {
  [ -n "$UP_PID" ] && kill "$UP_PID" 2>/dev/null && wait "$UP_PID" 2>/dev/null || true
  [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$HOST_IF" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add "$NS"
ip link add "$HOST_IF" type veth peer name "$NS_IF"
ip link set "$NS_IF" netns "$NS"
ip addr add "$NET.2/24" dev "$HOST_IF"
ip link set "$HOST_IF" up
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" ip addr add "$NET.1/24" dev "$NS_IF"
ip netns exec "$NS" ip link set "$NS_IF" up
ip netns exec "$NS" ip neigh replace "$NET.2" lladdr "$(cat /sys/class/net/$HOST_IF/address)" dev "$NS_IF"

# A UDP socket on the target port that never reads: no ICMP port-unreachable per datagram.
python3 -c "import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.bind(('$NET.2', 5060))
time.sleep(10**6)" &
SINK_PID=$!

cd "$WORK"
RAW_SETTINGS=(--set raw_moni_capture_on=1 --set "raw_interface=$HOST_IF"
  --set raw_socket_listen=0.0.0.0:5060-5090 --set "raw_moni_bpf_on=$BPF"
  --set "raw_sock_children=$CHILDREN")
if [ "$CAPTURE" = off ]; then
  # The collector alone, started with capture off (Kamailio `capture_on=0`): no storer needed.
  RUST_LOG=error "$BIN/sipcapture-collector" --hep-listen 127.0.0.1:0 \
    --grpc-listen "127.0.0.1:$GRPC_PORT" --set capture_on=0 "${RAW_SETTINGS[@]}" >up.log 2>&1 &
else
  RUST_LOG=warn "$BIN/sipcapture" up --hep-listen 127.0.0.1:0 --grpc-listen "127.0.0.1:$GRPC_PORT" \
    "${RAW_SETTINGS[@]}" >up.log 2>&1 &
fi
UP_PID=$!

check() { grpcurl -plaintext "127.0.0.1:$GRPC_PORT" sipcapture.v1.StatusService/Check; }
for _ in $(seq 1 100); do check >/dev/null 2>&1 && break; sleep 0.1; done
check >/dev/null || { cat up.log; exit 1; }

# Sum of a counter over the Check answer's members (0 when absent).
counter() {
  check | python3 -c "import json, sys
answer = json.load(sys.stdin)
members = answer.get('members', [answer])
print(sum(int(m.get('counters', {}).get(sys.argv[1], 0)) for m in members))" "$1"
}

echo "children=$CHILDREN bpf=$BPF capture=$CAPTURE size=$SIZE step=${STEP_SECONDS}s cpus=$(nproc)"
printf '%10s %10s %10s %10s %10s %8s\n' rate sent read records drops drop%
for rate in $RATES; do
  frames0=$(counter mirror_frames)
  records0=$(( $(counter records_queued) + $(counter discarded.status) ))
  sent=$(ip netns exec "$NS" "$BIN/hep-loadgen" --sip-only --bind "$NET.1:0" \
      --target "$NET.2:5060" --rate "$rate" --seconds "$STEP_SECONDS" --size "$SIZE" \
      --senders "$SENDERS" | sed -n 's/^sent=\([0-9]*\).*/\1/p')
  sleep 2 # let the readers drain the socket buffers
  frames=$(( $(counter mirror_frames) - frames0 ))
  records=$(( $(counter records_queued) + $(counter discarded.status) - records0 ))
  drops=$(( sent - frames ))
  printf '%10s %10s %10s %10s %10s %8s\n' "$rate" "$sent" "$frames" "$records" "$drops" \
    "$(python3 -c "print(f'{100 * max($drops, 0) / max($sent, 1):.2f}')")"
done
