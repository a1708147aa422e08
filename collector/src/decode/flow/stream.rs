//! TCP stream reassembly per flow direction, and the framing of what the stream carries: SIP
//! (Content-Length framing, [`super::sip_frame`]), HEP3 (its length field), or WebSocket after
//! an HTTP Upgrade ([`crate::decode::websocket`]).
//!
//! Each direction (source → destination address and port) is its own stream:
//! * sequence numbers order the bytes: a retransmitted segment (or the already-seen part of
//!   one) is skipped as `tcp_retransmission`, a segment ahead of the expected sequence waits
//!   until the gap is filled;
//! * a gap that never fills (the capture missed a segment) is given up when the waiting bytes
//!   reach the per-flow limit: the partial message is counted as `tcp_gap` and the stream
//!   resynchronises on the next SIP start line;
//! * a stream picked up after its SYN (capture started mid-connection) also resynchronises on
//!   the first SIP start line;
//! * FIN and RST end a direction (RST both), a SYN on a known direction restarts it; an
//!   incomplete message left then, or at the idle timeout, is counted as `tcp_incomplete`;
//! * memory is bounded per flow, in total, and in the number of flows (the least recently seen
//!   flow is evicted to make room, found in O(log n) by [`super::seen::SeenOrder`]).
//!
//! What a stream carries is decided on its first bytes: `HEP3`/`EEP1` → HEP frames; an HTTP
//! request or response → the handshake, then WebSocket frames when it upgrades; a SIP start line
//! → SIP; anything else (TLS, HTTP, POP, ...) → the direction is ignored (`not_sip`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::decode::error::PacketError;
use crate::decode::ethernet::VlanTags;
use crate::decode::hep;
use crate::decode::tcp::{self, TcpSegment};
use crate::decode::websocket;

use super::message::{Dissected, PayloadKind, RawMessage, Transport};
use super::seen::SeenOrder;
use super::sip_frame::{self, SipFrame};

/// IANA protocol number of TCP.
const IPPROTO_TCP: u8 = 6;
/// Most out-of-order segments kept per direction before the gap is given up.
const MAX_OUT_OF_ORDER_SEGMENTS: usize = 256;
/// Largest HTTP handshake header block waited for.
const MAX_HTTP_HEADER: usize = 16 * 1024;
/// Largest HEP frame (its length field is 16 bits).
const MAX_HEP_FRAME: usize = 65_535;

/// Limits of [`Streams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Most flow directions tracked at once.
    pub max_flows: usize,
    /// Most bytes buffered per direction (unframed bytes, out-of-order segments, a WebSocket
    /// message being assembled).
    pub max_flow_bytes: usize,
    /// Most bytes buffered over all directions.
    pub max_total_bytes: usize,
    /// A direction without segments for this long is forgotten.
    pub idle_timeout: Duration,
    /// Largest SIP header block and largest body (Content-Length) accepted on a stream.
    pub max_message: usize,
}

/// Identifies one direction of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Sender.
    pub src: SocketAddr,
    /// Receiver.
    pub dst: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No payload seen yet.
    Detect,
    /// SIP messages.
    Sip,
    /// HEP3 frames.
    Hep,
    /// Waiting for the end of an HTTP header block.
    Http,
    /// WebSocket frames after an upgrade.
    WebSocket,
    /// Not something we capture: bytes are not buffered.
    Ignored,
}

#[derive(Debug)]
struct Flow {
    /// Sequence number of the next byte expected.
    next_seq: u32,
    /// True when the stream is known to start at a message boundary (SYN seen, no gap since).
    aligned: bool,
    /// Contiguous bytes not framed yet.
    buf: Vec<u8>,
    /// Segments ahead of `next_seq`: (sequence, bytes).
    ahead: Vec<(u32, Vec<u8>)>,
    ahead_bytes: usize,
    /// Sequence number just after the FIN, once seen.
    fin_at: Option<u32>,
    mode: Mode,
    /// WebSocket: the message being assembled from fragments, and its first opcode.
    ws_message: Vec<u8>,
    ws_fragmented: bool,
    /// Bytes skipped while resynchronising; past the flow limit the direction is ignored.
    resync_skipped: usize,
    vlan: VlanTags,
}

impl Flow {
    fn new(next_seq: u32, aligned: bool, vlan: VlanTags) -> Self {
        Flow {
            next_seq,
            aligned,
            buf: Vec::new(),
            ahead: Vec::new(),
            ahead_bytes: 0,
            fin_at: None,
            mode: Mode::Detect,
            ws_message: Vec::new(),
            ws_fragmented: false,
            resync_skipped: 0,
            vlan,
        }
    }

    fn memory(&self) -> usize {
        self.buf.len() + self.ahead_bytes + self.ws_message.len()
    }

    /// Bytes of an unfinished message (keep-alive line breaks do not count).
    fn pending(&self) -> usize {
        if self.mode == Mode::Ignored {
            return 0;
        }
        let unframed = self
            .buf
            .iter()
            .filter(|b| !matches!(b, b'\r' | b'\n'))
            .count();
        unframed + self.ahead_bytes + self.ws_message.len()
    }
}

/// Per-message addressing handed to the framer.
#[derive(Debug, Clone, Copy)]
struct Meta {
    ts: SystemTime,
    vlan: VlanTags,
    key: FlowKey,
}

/// The TCP streams of one dissector.
#[derive(Debug)]
pub struct Streams {
    flows: HashMap<FlowKey, Flow>,
    /// The flows by last-seen time (eviction, expiry).
    seen: SeenOrder<FlowKey>,
    total_bytes: usize,
    limits: StreamLimits,
}

impl Streams {
    /// No flows yet.
    pub fn new(limits: StreamLimits) -> Self {
        Streams {
            flows: HashMap::new(),
            seen: SeenOrder::default(),
            total_bytes: 0,
            limits,
        }
    }

    /// Directions tracked.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Bytes buffered over all directions.
    pub fn buffered_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Handles one TCP segment of the direction `key` (already past the port filter).
    pub fn segment(
        &mut self,
        key: FlowKey,
        seg: &TcpSegment<'_>,
        vlan: VlanTags,
        ts: SystemTime,
        out: &mut dyn FnMut(Dissected<'_>),
    ) {
        if seg.has(tcp::RST) {
            let reverse = FlowKey {
                src: key.dst,
                dst: key.src,
            };
            self.close(&key, "rst", out);
            self.close(&reverse, "rst", out);
            return;
        }
        if seg.has(tcp::SYN) {
            self.close(&key, "syn", out);
            self.make_room(out);
            self.flows
                .insert(key, Flow::new(seg.seq.wrapping_add(1), true, vlan));
            self.seen.touch(key, ts);
            return;
        }
        if seg.payload.is_empty() && !seg.has(tcp::FIN) {
            if self.flows.contains_key(&key) {
                self.seen.touch(key, ts);
            }
            return;
        }
        if !self.flows.contains_key(&key) {
            if seg.payload.is_empty() {
                // A FIN of a connection we never saw data of.
                return;
            }
            self.make_room(out);
            self.flows.insert(key, Flow::new(seg.seq, false, vlan));
        }
        let limits = self.limits;
        let total_others = self.total_bytes;
        let Some(flow) = self.flows.get_mut(&key) else {
            return;
        };
        let before = flow.memory();
        let total_others = total_others.saturating_sub(before);
        self.seen.touch(key, ts);
        flow.vlan = vlan;
        let meta = Meta { ts, vlan, key };
        if seg.has(tcp::FIN) {
            flow.fin_at = Some(
                seg.seq
                    .wrapping_add(u32::try_from(seg.payload.len()).unwrap_or(u32::MAX)),
            );
        }
        accept(flow, seg.seq, seg.payload, limits, total_others, &meta, out);
        let after = flow.memory();
        let finished = flow.fin_at == Some(flow.next_seq);
        self.total_bytes = total_others + after;
        if finished {
            self.close(&key, "fin", out);
        }
    }

    /// Forgets directions idle for longer than the timeout, reporting unfinished messages.
    pub fn expire(&mut self, now: SystemTime, out: &mut dyn FnMut(Dissected<'_>)) {
        // Walked from the oldest, no scan.
        for key in self.seen.idle(now, self.limits.idle_timeout) {
            self.close(&key, "timeout", out);
        }
    }

    fn close(&mut self, key: &FlowKey, how: &'static str, out: &mut dyn FnMut(Dissected<'_>)) {
        if let Some(flow) = self.flows.remove(key) {
            self.seen.remove(key);
            self.total_bytes = self.total_bytes.saturating_sub(flow.memory());
            let bytes = flow.pending();
            if bytes > 0 {
                out(Dissected::Dropped(PacketError::TcpIncomplete {
                    how,
                    bytes,
                }));
            }
        }
    }

    /// Evicts the least recently seen direction when the flow table is full.
    fn make_room(&mut self, out: &mut dyn FnMut(Dissected<'_>)) {
        if self.flows.len() < self.limits.max_flows {
            return;
        }
        if let Some(key) = self.seen.oldest() {
            self.close(&key, "evicted", out);
        }
    }
}

/// Places a segment's bytes in the stream and frames what became contiguous.
fn accept(
    flow: &mut Flow,
    seq: u32,
    payload: &[u8],
    limits: StreamLimits,
    total_others: usize,
    meta: &Meta,
    out: &mut dyn FnMut(Dissected<'_>),
) {
    if payload.is_empty() {
        return;
    }
    if payload.len() > limits.max_flow_bytes {
        out(Dissected::Dropped(PacketError::ReassemblyOverflow {
            layer: "tcp",
            limit: limits.max_flow_bytes,
        }));
        return;
    }
    // Signed distance in sequence space (RFC 9293 §3.4 comparisons are modulo 2^32).
    let distance = seq.wrapping_sub(flow.next_seq) as i32;
    if flow.mode == Mode::Ignored {
        if distance >= 0 {
            flow.next_seq = seq.wrapping_add(len32(payload));
        }
        out(Dissected::Skipped("not_sip"));
        return;
    }
    if distance < 0 {
        let seen = distance.unsigned_abs() as usize;
        let Some(fresh) = payload.get(seen..).filter(|f| !f.is_empty()) else {
            out(Dissected::Skipped("tcp_retransmission"));
            return;
        };
        return accept(flow, flow.next_seq, fresh, limits, total_others, meta, out);
    }
    let over_flow_limit = flow.memory() + payload.len() > limits.max_flow_bytes;
    let over_total = total_others + flow.memory() + payload.len() > limits.max_total_bytes;
    if distance > 0 {
        if let Some(i) = flow.ahead.iter().position(|(s, _)| *s == seq) {
            // The same start again: keep the longer copy (a retransmission may carry more).
            let known = flow.ahead.get(i).map_or(0, |(_, b)| b.len());
            if payload.len() <= known {
                out(Dissected::Skipped("tcp_retransmission"));
                return;
            }
            let (_, old) = flow.ahead.swap_remove(i);
            flow.ahead_bytes -= old.len();
        }
        if over_flow_limit || over_total || flow.ahead.len() >= MAX_OUT_OF_ORDER_SEGMENTS {
            skip_gap(flow, seq, out);
            frame(flow, limits, meta, out);
            return accept(flow, seq, payload, limits, total_others, meta, out);
        }
        flow.ahead_bytes += payload.len();
        flow.ahead.push((seq, payload.to_vec()));
        return;
    }
    if over_flow_limit || over_total {
        let limit = if over_flow_limit {
            limits.max_flow_bytes
        } else {
            limits.max_total_bytes
        };
        out(Dissected::Dropped(PacketError::ReassemblyOverflow {
            layer: "tcp",
            limit,
        }));
        restart_unaligned(flow);
        flow.next_seq = seq.wrapping_add(len32(payload));
        return;
    }
    flow.buf.extend_from_slice(payload);
    flow.next_seq = seq.wrapping_add(len32(payload));
    pull_ahead(flow);
    frame(flow, limits, meta, out);
}

fn len32(b: &[u8]) -> u32 {
    u32::try_from(b.len()).unwrap_or(u32::MAX)
}

/// Moves waiting segments that became contiguous into the buffer.
fn pull_ahead(flow: &mut Flow) {
    loop {
        let next = flow.next_seq;
        let Some(i) = flow
            .ahead
            .iter()
            .position(|(s, _)| (s.wrapping_sub(next) as i32) <= 0)
        else {
            return;
        };
        let (s, bytes) = flow.ahead.swap_remove(i);
        flow.ahead_bytes -= bytes.len();
        let seen = next.wrapping_sub(s) as usize;
        if let Some(fresh) = bytes.get(seen..).filter(|f| !f.is_empty()) {
            flow.buf.extend_from_slice(fresh);
            flow.next_seq = next.wrapping_add(len32(fresh));
        }
    }
}

/// Gives up the missing bytes before the earliest waiting segment (or before `seq`, the
/// segment that did not fit, when it is earlier).
fn skip_gap(flow: &mut Flow, seq: u32, out: &mut dyn FnMut(Dissected<'_>)) {
    let next = flow.next_seq;
    let earliest = flow
        .ahead
        .iter()
        .map(|(s, _)| *s)
        .chain(std::iter::once(seq))
        .min_by_key(|s| s.wrapping_sub(next))
        .unwrap_or(seq);
    out(Dissected::Dropped(PacketError::TcpGap {
        missing: earliest.wrapping_sub(next),
        discarded: flow.buf.len() + flow.ws_message.len(),
    }));
    restart_unaligned(flow);
    flow.next_seq = earliest;
    pull_ahead(flow);
}

/// Drops the unframed bytes; the next message is found by resynchronising.
fn restart_unaligned(flow: &mut Flow) {
    flow.buf.clear();
    flow.ws_message.clear();
    flow.ws_fragmented = false;
    flow.aligned = false;
    if flow.mode == Mode::Sip {
        // Keep the mode: resync on the next start line.
    } else if flow.mode != Mode::WebSocket && flow.mode != Mode::Hep {
        flow.mode = Mode::Detect;
    }
}

fn emit(meta: &Meta, transport: Transport, payload: &[u8], out: &mut dyn FnMut(Dissected<'_>)) {
    let kind = if payload.starts_with(b"HEP3") || payload.starts_with(b"EEP1") {
        PayloadKind::Hep
    } else {
        PayloadKind::Sip
    };
    out(Dissected::Message(RawMessage {
        ts: meta.ts,
        vlan: meta.vlan,
        src: meta.key.src,
        dst: meta.key.dst,
        transport,
        ip_protocol: IPPROTO_TCP,
        kind,
        payload,
    }));
}

/// Length of the run of CR and LF bytes `buf` starts with.
fn crlf_run(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count()
}

/// Frames the messages at the start of the buffer, by mode.
fn frame(flow: &mut Flow, limits: StreamLimits, meta: &Meta, out: &mut dyn FnMut(Dissected<'_>)) {
    let mut at = 0;
    loop {
        let rest = flow.buf.get(at..).unwrap_or_default();
        match flow.mode {
            Mode::Ignored => {
                at = flow.buf.len();
                break;
            }
            Mode::Detect => {
                // CRLF keep-alives (RFC 5626 §4.4.1) between messages.
                at += crlf_run(rest);
                let rest = flow.buf.get(at..).unwrap_or_default();
                if rest.is_empty() {
                    break;
                }
                let magic_len = rest.len().min(4);
                let prefix = rest.get(..magic_len).unwrap_or_default();
                flow.mode = if b"HEP3".starts_with(prefix) || b"EEP1".starts_with(prefix) {
                    if magic_len < 4 {
                        break;
                    }
                    Mode::Hep
                } else if websocket::looks_like_http(rest) {
                    if rest.len() < 7 {
                        break;
                    }
                    Mode::Http
                } else {
                    Mode::Sip
                };
            }
            Mode::Sip => {
                // CRLF keep-alives (RFC 5626 §4.4.1) between messages.
                at += crlf_run(rest);
                let rest = flow.buf.get(at..).unwrap_or_default();
                if rest.is_empty() {
                    break;
                }
                match sip_frame::sip_message_len(rest, limits.max_message, limits.max_message) {
                    Ok(SipFrame::Complete(n)) => {
                        emit(meta, Transport::Tcp, rest.get(..n).unwrap_or_default(), out);
                        at += n;
                        flow.aligned = true;
                        flow.resync_skipped = 0;
                    }
                    Ok(SipFrame::Incomplete) => break,
                    Ok(SipFrame::NotSip) if flow.aligned => {
                        // A stream that starts (at its SYN) with something else is not SIP.
                        flow.mode = Mode::Ignored;
                        out(Dissected::Skipped("not_sip"));
                        at = flow.buf.len();
                        break;
                    }
                    Ok(SipFrame::NotSip) => {
                        // Picked up mid-way or after a gap: find the next start line.
                        let skipped = match sip_frame::find_start_line(rest, 0) {
                            Some(n) => n,
                            // Keep the last partial line: it may become a start line.
                            None => rest.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1),
                        };
                        flow.resync_skipped += skipped;
                        at += skipped;
                        if flow.resync_skipped > limits.max_flow_bytes {
                            flow.mode = Mode::Ignored;
                            out(Dissected::Skipped("not_sip"));
                            at = flow.buf.len();
                            break;
                        }
                        if skipped == 0 {
                            if rest.len() > limits.max_message {
                                at = flow.buf.len();
                            }
                            break;
                        }
                    }
                    Err(e) => {
                        out(Dissected::Dropped(e));
                        flow.aligned = false;
                        // Skip this start line; resync on the next one.
                        at += rest
                            .iter()
                            .position(|b| *b == b'\n')
                            .map_or(rest.len(), |i| i + 1);
                    }
                }
            }
            Mode::Hep => {
                if rest.is_empty() {
                    break;
                }
                match hep::framing::tcp_frame_len(rest, MAX_HEP_FRAME) {
                    Ok(Some(n)) => {
                        emit(meta, Transport::Tcp, rest.get(..n).unwrap_or_default(), out);
                        at += n;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        out(Dissected::Dropped(PacketError::StreamFraming {
                            what: "hep frame with a bad magic or length",
                        }));
                        flow.mode = Mode::Ignored;
                        at = flow.buf.len();
                        break;
                    }
                }
            }
            Mode::Http => {
                let Some(end) = memchr::memmem::find(rest, b"\r\n\r\n") else {
                    if rest.len() > MAX_HTTP_HEADER {
                        flow.mode = Mode::Ignored;
                        out(Dissected::Skipped("not_sip"));
                        at = flow.buf.len();
                    }
                    break;
                };
                let headers = rest.get(..end).unwrap_or_default();
                if websocket::is_websocket_upgrade(headers) {
                    flow.mode = Mode::WebSocket;
                    at += end + 4;
                } else {
                    flow.mode = Mode::Ignored;
                    out(Dissected::Skipped("not_sip"));
                    at = flow.buf.len();
                    break;
                }
            }
            Mode::WebSocket => {
                let header = match websocket::frame_header(rest, limits.max_message) {
                    Ok(Some(h)) => h,
                    Ok(None) => break,
                    Err(e) => {
                        out(Dissected::Dropped(e));
                        flow.mode = Mode::Ignored;
                        at = flow.buf.len();
                        break;
                    }
                };
                let end = header.header_len + header.payload_len;
                let Some(payload) = rest.get(header.header_len..end) else {
                    break;
                };
                at += end;
                match header.opcode {
                    websocket::OP_TEXT | websocket::OP_BINARY => {
                        if flow.ws_fragmented {
                            out(Dissected::Dropped(PacketError::BadWebSocketFrame {
                                what: "new message inside a fragmented one",
                            }));
                        }
                        flow.ws_message.clear();
                        websocket::unmask_into(payload, header.mask, &mut flow.ws_message);
                        flow.ws_fragmented = !header.fin;
                    }
                    websocket::OP_CONTINUATION if flow.ws_fragmented => {
                        if flow.ws_message.len() + payload.len() > limits.max_message {
                            out(Dissected::Dropped(PacketError::ReassemblyOverflow {
                                layer: "websocket",
                                limit: limits.max_message,
                            }));
                            flow.ws_message.clear();
                            flow.ws_fragmented = false;
                            continue;
                        }
                        websocket::unmask_into(payload, header.mask, &mut flow.ws_message);
                        flow.ws_fragmented = !header.fin;
                    }
                    websocket::OP_CONTINUATION => {
                        out(Dissected::Dropped(PacketError::BadWebSocketFrame {
                            what: "continuation without a first frame",
                        }));
                        continue;
                    }
                    _ => {
                        // Close, ping, pong.
                        out(Dissected::Skipped("websocket_control"));
                        continue;
                    }
                }
                if !flow.ws_fragmented {
                    let message = std::mem::take(&mut flow.ws_message);
                    emit(meta, Transport::Ws, &message, out);
                    flow.ws_message = message;
                    flow.ws_message.clear();
                }
            }
        }
    }
    flow.buf.drain(..at.min(flow.buf.len()));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    pub(crate) const LIMITS: StreamLimits = StreamLimits {
        max_flows: 8,
        max_flow_bytes: 64 * 1024,
        max_total_bytes: 256 * 1024,
        idle_timeout: Duration::from_secs(60),
        max_message: 16 * 1024,
    };

    fn key() -> FlowKey {
        FlowKey {
            src: "10.0.0.1:5060".parse().unwrap(),
            dst: "10.0.0.2:40000".parse().unwrap(),
        }
    }

    fn msg(n: usize, body: &str) -> Vec<u8> {
        format!(
            "OPTIONS sip:bob@example.com SIP/2.0\r\nCall-ID: call-{n}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    /// Collected output: messages as (transport, payload) and reasons of skips and drops.
    #[derive(Default, Debug)]
    struct Seen {
        messages: Vec<(Transport, Vec<u8>)>,
        skipped: Vec<&'static str>,
        dropped: Vec<PacketError>,
    }

    fn feed(streams: &mut Streams, seen: &mut Seen, seq: u32, flags: u8, payload: &[u8]) {
        let seg = TcpSegment {
            src_port: 5060,
            dst_port: 40000,
            seq,
            flags,
            payload,
        };
        streams.segment(
            key(),
            &seg,
            VlanTags::default(),
            SystemTime::UNIX_EPOCH,
            &mut |d| match d {
                Dissected::Message(m) => seen.messages.push((m.transport, m.payload.to_vec())),
                Dissected::Skipped(r) => seen.skipped.push(r),
                Dissected::Dropped(e) => seen.dropped.push(e),
            },
        );
    }

    #[test]
    fn several_per_segment_split_retransmitted_and_reordered() {
        let mut s = Streams::new(LIMITS);
        let mut seen = Seen::default();
        let mut stream = Vec::new();
        for i in 0..6 {
            stream.extend(msg(i, "v=0\r\n"));
        }
        feed(&mut s, &mut seen, 999, tcp::SYN, b"");
        // Cut into 7 uneven segments; deliver 0, 2, 1 (reordered), 1 again (retransmission),
        // 3, 4, 5, 6 with a FIN.
        let cuts = [0, 50, 130, 131, 260, 400, 420, stream.len()];
        let seg = |i: usize| (1000 + cuts[i] as u32, &stream[cuts[i]..cuts[i + 1]]);
        for i in [0usize, 2, 1, 1, 3, 4, 5] {
            let (seq, data) = seg(i);
            feed(&mut s, &mut seen, seq, 0x18, data);
        }
        let (seq, data) = seg(6);
        feed(&mut s, &mut seen, seq, 0x19 | tcp::FIN, data);
        let got: Vec<Vec<u8>> = seen.messages.iter().map(|(_, m)| m.clone()).collect();
        let want: Vec<Vec<u8>> = (0..6).map(|i| msg(i, "v=0\r\n")).collect();
        assert_eq!(got, want);
        assert_eq!(seen.skipped, vec!["tcp_retransmission"]);
        assert!(seen.dropped.is_empty(), "{:?}", seen.dropped);
        assert_eq!((s.flow_count(), s.buffered_bytes()), (0, 0));
    }

    #[test]
    fn mid_stream_pickup_resyncs_and_gap_is_counted() {
        let mut s = Streams::new(LIMITS);
        let mut seen = Seen::default();
        // The tail of a body, then two messages.
        let mut data = b"a=rtpmap:0 PCMU/8000\r\n".to_vec();
        data.extend(msg(1, ""));
        data.extend(msg(2, "xyz"));
        feed(&mut s, &mut seen, 5000, 0x18, &data);
        assert_eq!(seen.messages.len(), 2);
        // A segment after a hole that never fills: waits, then the FIN arrives and the flow
        // closes with the data still waiting.
        let next = 5000 + data.len() as u32;
        feed(&mut s, &mut seen, next + 100, 0x18, &msg(3, ""));
        assert_eq!(seen.messages.len(), 2);
        assert_eq!(s.buffered_bytes(), msg(3, "").len());
        // RST ends it: the waiting bytes are an incomplete message.
        feed(&mut s, &mut seen, next + 500, tcp::RST, b"");
        assert!(matches!(
            seen.dropped.as_slice(),
            [PacketError::TcpIncomplete { how: "rst", .. }]
        ));
        assert_eq!((s.flow_count(), s.buffered_bytes()), (0, 0));
    }

    #[test]
    fn gap_given_up_at_the_flow_limit() {
        let limits = StreamLimits {
            max_flow_bytes: 400,
            ..LIMITS
        };
        let mut s = Streams::new(limits);
        let mut seen = Seen::default();
        feed(&mut s, &mut seen, 0, tcp::SYN, b"");
        let half = msg(0, "");
        feed(&mut s, &mut seen, 1, 0x18, &half[..20]);
        // Missing 20..half.len(); then whole messages keep coming ahead of the hole.
        let mut seq = 1 + half.len() as u32;
        for i in 1..8 {
            let m = msg(i, "");
            feed(&mut s, &mut seen, seq, 0x18, &m);
            seq += m.len() as u32;
        }
        assert!(
            matches!(
                seen.dropped.first(),
                Some(PacketError::TcpGap { discarded: 20, .. })
            ),
            "{seen:?}"
        );
        // Every message after the hole is recovered.
        assert_eq!(seen.messages.len(), 7);
        assert!(s.buffered_bytes() <= 400);
    }

    #[test]
    fn non_sip_streams_are_ignored_and_not_buffered() {
        let mut s = Streams::new(LIMITS);
        let mut seen = Seen::default();
        feed(&mut s, &mut seen, 0, tcp::SYN, b"");
        feed(
            &mut s,
            &mut seen,
            1,
            0x18,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        );
        feed(&mut s, &mut seen, 12, 0x18, &[0x17; 500]);
        assert!(seen.messages.is_empty());
        assert_eq!(seen.skipped, vec!["not_sip", "not_sip"]);
        assert_eq!(s.buffered_bytes(), 0);
    }

    #[test]
    fn websocket_after_upgrade_with_masking_and_fragments() {
        let mut s = Streams::new(LIMITS);
        let mut seen = Seen::default();
        feed(&mut s, &mut seen, 0, tcp::SYN, b"");
        let mut data = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: sip\r\n\r\n".to_vec();
        let m1 = msg(1, "");
        let m2 = msg(2, "body");
        data.extend(websocket::encode_frame(
            true,
            websocket::OP_TEXT,
            Some([1, 2, 3, 4]),
            &m1,
        ));
        data.extend(websocket::encode_frame(
            true,
            0x9,
            Some([9, 9, 9, 9]),
            b"ping",
        ));
        data.extend(websocket::encode_frame(
            false,
            websocket::OP_TEXT,
            Some([5, 6, 7, 8]),
            &m2[..10],
        ));
        data.extend(websocket::encode_frame(
            true,
            websocket::OP_CONTINUATION,
            Some([7, 7, 7, 7]),
            &m2[10..],
        ));
        // Deliver byte-split in two segments.
        feed(&mut s, &mut seen, 1, 0x18, &data[..150]);
        feed(&mut s, &mut seen, 151, 0x18, &data[150..]);
        assert_eq!(
            seen.messages,
            vec![(Transport::Ws, m1), (Transport::Ws, m2)]
        );
        assert_eq!(seen.skipped, vec!["websocket_control"]);
    }

    #[test]
    fn hep3_frames_on_a_stream() {
        let mut s = Streams::new(LIMITS);
        let mut seen = Seen::default();
        let frame = |n: u8| {
            let mut f = b"HEP3\x00\x0a".to_vec();
            f.extend_from_slice(&[n; 4]);
            f
        };
        let mut data = frame(1);
        data.extend(frame(2));
        data.extend(&frame(3)[..5]);
        feed(&mut s, &mut seen, 77, 0x18, &data);
        feed(
            &mut s,
            &mut seen,
            77 + data.len() as u32,
            0x18,
            &frame(3)[5..],
        );
        assert_eq!(seen.messages.len(), 3);
        assert_eq!(seen.messages[2].1, frame(3));
    }

    #[test]
    fn flow_table_is_bounded_and_idle_flows_expire() {
        let limits = StreamLimits {
            max_flows: 2,
            ..LIMITS
        };
        let mut s = Streams::new(limits);
        let mut dropped = Vec::new();
        let t0 = SystemTime::UNIX_EPOCH;
        for port in 1..=3u16 {
            let k = FlowKey {
                src: SocketAddr::new("10.0.0.1".parse().unwrap(), port),
                dst: "10.0.0.2:5060".parse().unwrap(),
            };
            let seg = TcpSegment {
                src_port: port,
                dst_port: 5060,
                seq: 1,
                flags: 0x18,
                payload: b"OPTIONS sip:x SIP/2.0\r\n",
            };
            let ts = t0 + Duration::from_secs(u64::from(port));
            s.segment(k, &seg, VlanTags::default(), ts, &mut |d| {
                if let Dissected::Dropped(e) = d {
                    dropped.push(e);
                }
            });
        }
        assert_eq!(s.flow_count(), 2);
        assert!(matches!(
            dropped.as_slice(),
            [PacketError::TcpIncomplete { how: "evicted", .. }]
        ));
        s.expire(t0 + Duration::from_secs(62), &mut |d| {
            if let Dissected::Dropped(e) = d {
                dropped.push(e);
            }
        });
        assert_eq!(s.flow_count(), 1);
        s.expire(t0 + Duration::from_secs(63), &mut |_| {});
        assert_eq!((s.flow_count(), s.buffered_bytes()), (0, 0));
    }
}
