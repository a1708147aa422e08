#!/usr/bin/env bash
# End to end, packets in → rows committed: starts `sipcapture up` (release build) on DB_URL,
# offers RATE pps of 800-byte HEP3 INVITEs (distinct Call-IDs) for SECONDS with hep-loadgen, and
# waits until every received packet is acknowledged as committed. Prints the sustained rate
# (rows / (time of the last ack − time of the first packet)), the packets the socket lost, the
# process's peak RSS and CPU time. docs/BENCHMARKS.md ("End to end") records the figures.
#
#   cargo build --release -p sipcapture-cli --bin sipcapture -p sipcapture-collector --bin hep-loadgen
#   storer/benches/e2e_up.sh sqlite://bench.db 40000 5
#   storer/benches/e2e_up.sh postgres://postgres@127.0.0.1:5432/bench 40000 5
#   storer/benches/e2e_up.sh mysql://root@127.0.0.1:3306/bench 40000 5
# Extra `sipcapture up` arguments go in UP_ARGS (e.g. UP_ARGS="--set collector.storer_lanes=4").
set -euo pipefail
DB="${1:?database URL}"
RATE="${2:-40000}"
SECONDS_="${3:-5}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK="$(mktemp -d)"
cd "$WORK"
# shellcheck disable=SC2086 # UP_ARGS is a list of arguments
RUST_LOG=warn "$BIN/sipcapture" up --hep-listen 127.0.0.1:29060 --grpc-listen 127.0.0.1:29061 \
    --db-url "$DB" ${UP_ARGS:-} >"$WORK/up.log" 2>&1 &
UP=$!
trap 'kill "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
    grpcurl -plaintext 127.0.0.1:29061 list >/dev/null 2>&1 && break
    sleep 0.1
done
counter() {
    grpcurl -plaintext 127.0.0.1:29061 sipcapture.v1.StatusService/Check \
        | python3 -c "import json,sys; c=json.load(sys.stdin).get('counters',{}); print(int(c.get('$1','0')))"
}
peak_rss=0
sample_rss() {
    local rss
    rss=$(awk '/VmHWM/{print $2}' "/proc/$UP/status" 2>/dev/null || echo 0)
    if [ "${rss:-0}" -gt "$peak_rss" ]; then peak_rss=$rss; fi
}
start=$(date +%s.%N)
"$BIN/hep-loadgen" --target 127.0.0.1:29060 --rate "$RATE" --seconds "$SECONDS_" --senders 2 \
    --distinct $((RATE * SECONDS_ + 1)) >"$WORK/loadgen.txt"
sent=$(grep -o 'sent=[0-9]*' "$WORK/loadgen.txt" | cut -d= -f2)
acked=-1
last_change=$start
while :; do
    now=$(date +%s.%N)
    current=$(counter records_acked)
    received=$(counter hep_received)
    sample_rss
    if [ "$current" != "$acked" ]; then acked=$current; last_change=$now; fi
    if [ "$received" -gt 0 ] && [ "$acked" -ge "$received" ]; then break; fi
    if python3 -c "import sys; sys.exit(0 if $now - $last_change > 10 else 1)"; then break; fi
    sleep 0.2
done
cpu=$(ps -o cputimes= -p "$UP" | tr -d ' ')
python3 - "$DB" "$RATE" "$SECONDS_" "$sent" "$received" "$acked" "$start" "$last_change" "$peak_rss" "$cpu" <<'EOF'
import sys
db, rate, secs, sent, received, acked, start, last, rss_kb, cpu = sys.argv[1:]
elapsed = float(last) - float(start)
print(f"{db} offered={rate}pps x {secs}s sent={sent} received={received} "
      f"lost_at_socket={int(sent) - int(received)} rows={acked} "
      f"sustained={int(acked) / elapsed:.0f} rows/s over {elapsed:.1f}s "
      f"peak_rss={int(rss_kb) / 1024:.0f}MiB cpu={cpu}s")
EOF
