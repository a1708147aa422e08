//! HEP v3 decoder: never panics, views stay inside the declared length, the chunk walk covers
//! `chunk_area` exactly, and re-encoding a decoded packet is a fixed point:
//! `decode(encode_v3(p))` has p's typed fields and `encode_v3` of that is byte-identical.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipcapture_collector_fuzz::decode::hep::{self, HepError, HepPacket};
use sipcapture_collector_fuzz::{payload_bytes, within};

fuzz_target!(|data: &[u8]| {
    check(data);
    // Also wrap the input in a correct control header so the chunk walk is reached often.
    if let Ok(total) = u16::try_from(data.len() + 6) {
        let mut framed = Vec::with_capacity(data.len() + 6);
        framed.extend_from_slice(b"HEP3");
        framed.extend_from_slice(&total.to_be_bytes());
        framed.extend_from_slice(data);
        check(&framed);
    }
});

fn check(data: &[u8]) {
    let packet = match hep::decode(data) {
        Ok(packet) => packet,
        Err(HepError::Truncated {
            required, actual, ..
        }) => {
            assert!(required > actual);
            assert_eq!(actual, data.len());
            return;
        }
        Err(_) => return,
    };
    if packet.version != 3 {
        return;
    }
    let declared = usize::from(u16::from_be_bytes([data[4], data[5]]));
    let body = &data[..declared];
    assert_eq!(packet.chunk_area, &body[6..]);
    for bytes in [packet.auth_key, packet.correlation_id, packet.node_name]
        .into_iter()
        .flatten()
        .chain(packet.payload.as_ref().map(payload_bytes))
    {
        assert!(within(body, bytes));
    }
    let walked: usize = packet.chunks().map(|c| c.wire_len()).sum();
    assert_eq!(walked, packet.chunk_area.len());
    assert!(usize::from(packet.core_chunks) <= packet.chunks().count());

    // Re-encoding writes each typed field once, so it is never longer than the input.
    let mut out = Vec::new();
    if let Err(e) = hep::try_encode_v3(&packet, &mut out) {
        panic!("a decoded packet must re-encode: {e}");
    }
    assert!(out.len() <= declared);
    let again = hep::decode(&out).unwrap_or_else(|e| panic!("re-decode failed: {e}"));
    let expected = HepPacket {
        chunk_area: again.chunk_area,
        core_chunks: again.core_chunks,
        ..packet.clone()
    };
    assert_eq!(again, expected);
    assert!(again.extra_chunks().eq(packet.extra_chunks()));
    let mut out2 = Vec::new();
    hep::encode_v3(&again, &mut out2);
    assert_eq!(out2, out);
}
