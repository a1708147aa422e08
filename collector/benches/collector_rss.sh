#!/usr/bin/env bash
# Memory of the collector alone (the SBC sidecar): starts `sipcapture up` as the storer (SQLite in
# a temporary directory) and a separate `sipcapture-collector` that delivers to it, prints the
# collector's RSS when idle, then offers RATE pps of 800-byte HEP3 INVITEs (distinct Call-IDs)
# for SECONDS to the collector with hep-loadgen and prints its peak RSS (VmHWM), the anonymous
# and file-backed parts, its CPU time and the rows stored. docs/BENCHMARKS.md ("Collector
# memory") records the figures.
#
#   cargo build --release -p sipcapture-cli --bin sipcapture -p sipcapture-collector
#   collector/benches/collector_rss.sh 30000 30
set -euo pipefail
RATE="${1:-30000}"
SECONDS_="${2:-30}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK="$(mktemp -d)"
mkdir -p "$WORK/up" "$WORK/collector"
UP="" COL=""
cleanup() {
    for pid in $COL $UP; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
(cd "$WORK/up" && RUST_LOG=warn exec "$BIN/sipcapture" up --hep-listen 127.0.0.1:29160 \
    --grpc-listen 127.0.0.1:29161 --db-url sqlite://rss.db >up.log 2>&1) &
UP=$!
sleep 2
(cd "$WORK/collector" && RUST_LOG=warn exec "$BIN/sipcapture-collector" --hep-listen 127.0.0.1:29170 \
    --storer http://127.0.0.1:29161 --grpc-listen 127.0.0.1:29171 >collector.log 2>&1) &
COL=$!
sleep 3
status() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$COL/status"; }
echo "collector idle: rss=$(($(status VmRSS) / 1024))MiB anon=$(($(status RssAnon) / 1024))MiB file=$(($(status RssFile) / 1024))MiB"
"$BIN/hep-loadgen" --target 127.0.0.1:29170 --rate "$RATE" --seconds "$SECONDS_" --senders 2 \
    --distinct $((RATE * SECONDS_ + 1)) | tail -1
sleep 3
table="sip_capture_call_$(date -u +%Y%m%d)"
rows=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from $table').fetchone()[0])" "$WORK/up/rss.db")
echo "collector at ${RATE}pps x ${SECONDS_}s: peak_rss=$(($(status VmHWM) / 1024))MiB anon_now=$(($(status RssAnon) / 1024))MiB file_now=$(($(status RssFile) / 1024))MiB cpu=$(ps -o cputimes= -p "$COL" | tr -d ' ')s rows_stored=$rows"
