#!/usr/bin/env bash
# UDP receive path of `sipcapture up` (release build) on loopback with capture OFF: hep-loadgen
# sends 800-byte HEP3 INVITEs for SECONDS at RATE pps from 2 senders; prints what was sent, what
# the collector received (delta of hep_received) and the kernel drops (delta of RcvbufErrors in
# /proc/net/snmp). docs/BENCHMARKS.md ("UDP receive on loopback") records the figures.
#
#   cargo build --release -p sipcapture-cli --bin sipcapture -p sipcapture-collector --bin hep-loadgen
#   collector/benches/udp_receive.sh [RATE] [SECONDS]
set -euo pipefail
RATE="${1:-120000}"
SECONDS_="${2:-10}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK="$(mktemp -d)"
trap 'kill "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; rm -rf "$WORK"' EXIT

cd "$WORK"
RUST_LOG=warn "$BIN/sipcapture" up --hep-listen 127.0.0.1:29060 --grpc-listen 127.0.0.1:29061 \
    --set capture_on=0 >"$WORK/up.log" 2>&1 &
UP=$!
for _ in $(seq 1 100); do
    grpcurl -plaintext 127.0.0.1:29061 list >/dev/null 2>&1 && break
    sleep 0.1
done

received() {
    grpcurl -plaintext 127.0.0.1:29061 sipcapture.v1.StatusService/Check \
        | python3 -c 'import json,sys; c=json.load(sys.stdin).get("counters",{}); print(int(c.get("hep_received","0")))'
}
drops() { awk '/^Udp: [0-9]/{print $6}' /proc/net/snmp; }

r0=$(received); d0=$(drops)
"$BIN/hep-loadgen" --target 127.0.0.1:29060 --rate "$RATE" --seconds "$SECONDS_" --senders 2 \
    | tee "$WORK/loadgen.txt"
sleep 1
r1=$(received); d1=$(drops)
echo "rate=$RATE pps seconds=$SECONDS_ received=$((r1 - r0)) kernel_drops=$((d1 - d0))"
