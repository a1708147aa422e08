//! HEP v1/v2 decoder: never panics, views stay inside the input, and
//! `decode(encode_v1v2(decode(x))) == decode(x)`; the re-encoding equals the input except for
//! `hp_l` (ignored on receive) and the v2 pad bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipcapture_collector_fuzz::decode::hep::{self, HepError, HepPayload, v1v2};
use sipcapture_collector_fuzz::within;

fuzz_target!(|data: &[u8]| {
    // Force the v1/v2 path half of the time; the dispatcher must agree with it.
    let packet = match v1v2::decode(data) {
        Ok(packet) => packet,
        Err(err) => {
            if matches!(data.first(), Some(1 | 2)) {
                assert_eq!(hep::decode(data), Err(err));
            }
            return;
        }
    };
    assert_eq!(hep::decode(data).as_ref(), Ok(&packet));
    let Some(HepPayload::Raw(payload)) = packet.payload else {
        panic!("v1/v2 always has a raw payload");
    };
    assert!(within(data, payload));
    assert!(data.ends_with(payload));

    let mut out = Vec::new();
    encode_or_panic(&packet, &mut out);
    assert_eq!(out.len(), data.len());
    let again = hep::decode(&out).unwrap_or_else(|e| panic!("re-decode failed: {e}"));
    assert_eq!(again, packet);
    let header_len = data.len() - payload.len();
    let pad = if packet.version == 2 {
        header_len - 2..header_len
    } else {
        0..0
    };
    for (i, (a, b)) in data.iter().zip(&out).enumerate() {
        if i != 1 && !pad.contains(&i) {
            assert_eq!(a, b, "byte {i} differs");
        }
    }
});

fn encode_or_panic(packet: &hep::HepPacket<'_>, out: &mut Vec<u8>) {
    let result: Result<(), HepError> = hep::encode_v1v2(packet, out);
    if let Err(e) = result {
        panic!("a decoded v1/v2 packet must re-encode: {e}");
    }
}
