//! Codec-level tests of the HEP module: the Kamailio golden captures, broken packets,
//! decode ∘ encode round trips (proptest) and truncation at every length.

use std::borrow::Cow;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;

const HEP1_INVITE: &[u8] = include_bytes!("../../../testdata/hep/hep1_kamailio_invite.bin");
const HEP2_INVITE: &[u8] = include_bytes!("../../../testdata/hep/hep2_kamailio_invite.bin");
const HEP3_INVITE: &[u8] = include_bytes!("../../../testdata/hep/hep3_kamailio_invite.bin");
const BROKEN_HEP2: &[u8] =
    include_bytes!("../../../testdata/hep/broken_hep2_truncated_time_header.bin");
const BROKEN_HEP3: &[u8] = include_bytes!("../../../testdata/hep/broken_hep3_chunk_length_3.bin");

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn raw_payload<'a>(p: &HepPacket<'a>) -> &'a [u8] {
    match p.payload {
        Some(HepPayload::Raw(bytes)) => bytes,
        other => panic!("expected a raw payload, got {other:?}"),
    }
}

fn assert_kamailio_addressing(p: &HepPacket<'_>) {
    assert_eq!(p.ip_family, Some(2));
    assert_eq!(p.ip_protocol, Some(17));
    assert_eq!(p.src_ip, Some(LOCALHOST));
    assert_eq!(p.dst_ip, Some(LOCALHOST));
    assert_eq!(p.src_port, Some(5070));
    assert_eq!(p.dst_port, Some(5060));
    assert!(raw_payload(p).starts_with(b"INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n"));
}

#[test]
fn golden_kamailio_hep1() {
    let p = decode(HEP1_INVITE).unwrap();
    assert_eq!(p.version, 1);
    assert_kamailio_addressing(&p);
    assert_eq!((p.ts_sec, p.ts_usec, p.capture_id), (None, None, None));
    assert_eq!(raw_payload(&p).len(), HEP1_INVITE.len() - 16);
    assert_eq!(p.core_chunks, 7);
    let mut out = Vec::new();
    encode_v1v2(&p, &mut out).unwrap();
    assert_eq!(out, HEP1_INVITE);
}

#[test]
fn golden_kamailio_hep2() {
    let p = decode(HEP2_INVITE).unwrap();
    assert_eq!(p.version, 2);
    assert_kamailio_addressing(&p);
    assert_eq!(p.ts_sec, Some(1_795_669_665));
    assert_eq!(p.ts_usec, Some(106_488));
    assert_eq!(p.capture_id, Some(2001));
    assert_eq!(raw_payload(&p).len(), HEP2_INVITE.len() - 28);
    assert_eq!(p.core_chunks, 10);
    let mut out = Vec::new();
    encode_v1v2(&p, &mut out).unwrap();
    assert_eq!(out, HEP2_INVITE);
}

#[test]
fn golden_kamailio_hep3() {
    let p = decode(HEP3_INVITE).unwrap();
    assert_eq!(p.version, 3);
    assert_kamailio_addressing(&p);
    assert_eq!(p.ts_sec, Some(1_795_669_610));
    assert_eq!(p.ts_usec, Some(987_066));
    assert_eq!(p.capture_id, Some(2001));
    assert_eq!(p.proto_type, Some(1));
    assert_eq!(p.core_chunks, 11);
    assert_eq!(raw_payload(&p).len(), 509);
    assert_eq!(p.chunk_area.len(), HEP3_INVITE.len() - 6);
    assert_eq!(p.extra_chunks().count(), 0);
    let types: Vec<u16> = p.chunks().map(|c| c.type_id).collect();
    assert_eq!(types, [1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 15]);
    // Our encoder's chunk order extends siptrace's, so Kamailio's bytes re-encode exactly.
    let mut out = Vec::new();
    encode_v3(&p, &mut out);
    assert_eq!(out, HEP3_INVITE);
}

#[test]
fn golden_broken_packets() {
    assert_eq!(
        decode(BROKEN_HEP2),
        Err(HepError::Truncated {
            layer: "hep_v2_time_header",
            offset: 16,
            required: 28,
            actual: 20
        })
    );
    assert_eq!(
        decode(BROKEN_HEP3),
        Err(HepError::BadChunkLength {
            offset: 6,
            length: 3
        })
    );
    assert_eq!(BROKEN_HEP3.get(..6), HEP3_INVITE.get(..6));
}

/// UDP payloads of an Ethernet/IPv4 pcap (the generated Kamailio captures).
fn pcap_udp_payloads(bytes: &[u8]) -> Vec<&[u8]> {
    assert_eq!(
        bytes[..4],
        [0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian usec pcap"
    );
    assert_eq!(
        u32::from_le_bytes(bytes[20..24].try_into().unwrap()),
        1,
        "Ethernet"
    );
    let mut payloads = Vec::new();
    let mut offset = 24;
    while offset + 16 <= bytes.len() {
        let incl = u32::from_le_bytes(bytes[offset + 8..offset + 12].try_into().unwrap());
        let frame = &bytes[offset + 16..offset + 16 + usize::try_from(incl).unwrap()];
        offset += 16 + frame.len();
        assert_eq!(frame[12..14], [0x08, 0x00], "IPv4 ethertype");
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        assert_eq!(ip[9], 17, "UDP");
        payloads.push(&ip[ihl + 8..total]);
    }
    payloads
}

#[test]
fn every_packet_of_the_kamailio_captures() {
    for version in [1u8, 2, 3] {
        let path = format!("/work/shared/corpus/gen_hep{version}_kamailio_siptrace.pcap");
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("skipping: {path} not present");
            return;
        };
        let payloads = pcap_udp_payloads(&bytes);
        assert_eq!(payloads.len(), 120);
        for udp in payloads {
            let p = decode(udp).unwrap();
            assert_eq!(p.version, version);
            assert_eq!((p.src_ip, p.dst_ip), (Some(LOCALHOST), Some(LOCALHOST)));
            assert_eq!(p.ip_protocol, Some(17));
            let expected_capture_id = if version == 1 { None } else { Some(2001) };
            assert_eq!(p.capture_id, expected_capture_id);
            let sip = raw_payload(&p);
            assert!(sip.ends_with(b"\r\n"), "whole SIP message");
            assert!(sip.starts_with(b"SIP/2.0 ") || sip.windows(8).any(|w| w == b"SIP/2.0\r"));
            if version == 3 {
                assert_eq!(p.core_chunks, 11);
                let mut out = Vec::new();
                encode_v3(&p, &mut out);
                assert_eq!(out, udp);
            } else {
                let mut out = Vec::new();
                encode_v1v2(&p, &mut out).unwrap();
                assert_eq!(out, udp);
            }
        }
    }
}

#[test]
fn dispatch() {
    let truncated = |layer, required, actual| {
        Err(HepError::Truncated {
            layer,
            offset: 0,
            required,
            actual,
        })
    };
    assert_eq!(decode(b""), truncated("hep", 1, 0));
    assert_eq!(decode(b"HE"), truncated("hep_v3_header", 6, 2));
    assert_eq!(decode(b"EEP"), truncated("hep_v3_header", 6, 3));
    assert_eq!(decode(b"HEP3\x00"), truncated("hep_v3_header", 6, 5));
    assert_eq!(decode(b"\x02"), truncated("hep_v1v2_header", 8, 1));
    assert_eq!(decode(b"HEX"), Err(HepError::BadMagic));
    assert_eq!(decode(b"INVITE sip:a@b SIP/2.0"), Err(HepError::BadMagic));
    assert_eq!(decode(b"\x03\x10\x02\x11"), Err(HepError::BadMagic));
    let eep1 = decode(b"EEP1\x00\x06").unwrap();
    assert_eq!((eep1.version, eep1.core_chunks), (3, 0));
}

#[test]
fn reasons_are_labels() {
    assert_eq!(HepError::BadMagic.reason(), "bad_magic");
    assert_eq!(decode(BROKEN_HEP2).unwrap_err().reason(), "truncated");
    assert_eq!(
        decode(BROKEN_HEP3).unwrap_err().reason(),
        "bad_chunk_length"
    );
}

#[test]
fn inflate_gzip_zlib_deflate() {
    let sip = b"INVITE sip:bob@example.com SIP/2.0\r\n\r\n".repeat(10);
    let level = flate2::Compression::default();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), level);
    gz.write_all(&sip).unwrap();
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), level);
    zlib.write_all(&sip).unwrap();
    let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), level);
    raw.write_all(&sip).unwrap();
    for compressed in [
        gz.finish().unwrap(),
        zlib.finish().unwrap(),
        raw.finish().unwrap(),
    ] {
        let payload = HepPayload::Compressed(&compressed);
        assert_eq!(payload.inflate(sip.len()).unwrap().as_ref(), sip.as_slice());
        assert_eq!(
            payload.inflate(sip.len() - 1),
            Err(HepError::PayloadTooLarge {
                limit: sip.len() - 1
            })
        );
    }
    assert_eq!(
        HepPayload::Compressed(b"\x1f\x8b not gzip").inflate(1000),
        Err(HepError::BadCompressedPayload)
    );
    let raw_payload = HepPayload::Raw(b"abc");
    assert!(matches!(raw_payload.inflate(1), Ok(Cow::Borrowed(b"abc"))));
}

#[test]
fn encoder_rejects_what_v1v2_cannot_carry() {
    let mut p = decode(HEP2_INVITE).unwrap();
    let mut out = Vec::new();
    p.dst_ip = Some(IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert_eq!(
        encode_v1v2(&p, &mut out),
        Err(HepError::Unencodable(
            "HEP v1/v2 addresses of different families"
        ))
    );
    p.dst_ip = None;
    assert!(encode_v1v2(&p, &mut out).is_err());
    p.dst_ip = Some(LOCALHOST);
    p.ip_family = Some(7);
    assert_eq!(
        encode_v1v2(&p, &mut out),
        Err(HepError::UnsupportedFamily(7))
    );
    p.ip_family = None;
    p.version = 3;
    assert!(encode_v1v2(&p, &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn encoder_refuses_oversize_hep3() {
    let big = vec![0u8; 70_000];
    let mut p = decode(HEP3_INVITE).unwrap();
    p.payload = Some(HepPayload::Raw(&big));
    let mut out = vec![9];
    assert!(try_encode_v3(&p, &mut out).is_err());
    encode_v3(&p, &mut out);
    assert_eq!(out, [9]);
}

// ---- proptest: round trips and truncation ------------------------------------------

/// An owned HEP packet that proptest can generate; `view()` borrows it as a [`HepPacket`].
#[derive(Debug, Clone)]
struct Owned {
    version: u8,
    ip_family: Option<u8>,
    ip_protocol: Option<u8>,
    src_ip: Option<IpAddr>,
    dst_ip: Option<IpAddr>,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    ts_sec: Option<u32>,
    ts_usec: Option<u32>,
    proto_type: Option<u8>,
    capture_id: Option<u32>,
    keep_alive: Option<u16>,
    auth_key: Option<Vec<u8>>,
    payload: Option<(bool, Vec<u8>)>,
    correlation_id: Option<Vec<u8>>,
    vlan_id: Option<u16>,
    node_name: Option<Vec<u8>>,
    core_chunks: u8,
    /// Encoded extra chunks (vendor chunks and generic types >= 0x0014).
    extra_area: Vec<u8>,
}

impl Owned {
    fn view(&self) -> HepPacket<'_> {
        HepPacket {
            version: self.version,
            ip_family: self.ip_family,
            ip_protocol: self.ip_protocol,
            src_ip: self.src_ip,
            dst_ip: self.dst_ip,
            src_port: self.src_port,
            dst_port: self.dst_port,
            ts_sec: self.ts_sec,
            ts_usec: self.ts_usec,
            proto_type: self.proto_type,
            capture_id: self.capture_id,
            keep_alive: self.keep_alive,
            auth_key: self.auth_key.as_deref(),
            payload: self.payload.as_ref().map(|(compressed, bytes)| {
                if *compressed {
                    HepPayload::Compressed(bytes)
                } else {
                    HepPayload::Raw(bytes)
                }
            }),
            correlation_id: self.correlation_id.as_deref(),
            vlan_id: self.vlan_id,
            node_name: self.node_name.as_deref(),
            core_chunks: self.core_chunks,
            chunk_area: &self.extra_area,
        }
    }
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

fn extra_chunk() -> impl Strategy<Value = (u16, u16, Vec<u8>)> {
    prop_oneof![
        (1..=u16::MAX, any::<u16>(), bytes(20)),
        (Just(0u16), 0x0014..=u16::MAX, bytes(20)),
    ]
}

prop_compose! {
    fn v3_packet()(
        ip_family in any::<Option<u8>>(),
        ip_protocol in any::<Option<u8>>(),
        src_ip in prop::option::of(ip()),
        dst_ip in prop::option::of(ip()),
        src_port in any::<Option<u16>>(),
        dst_port in any::<Option<u16>>(),
        ts_sec in any::<Option<u32>>(),
        ts_usec in any::<Option<u32>>(),
        proto_type in any::<Option<u8>>(),
        capture_id in any::<Option<u32>>(),
        keep_alive in any::<Option<u16>>(),
        auth_key in prop::option::of(bytes(40)),
        payload in prop::option::of((any::<bool>(), bytes(300))),
        correlation_id in prop::option::of(bytes(40)),
        vlan_id in any::<Option<u16>>(),
        node_name in prop::option::of(bytes(20)),
        extras in prop::collection::vec(extra_chunk(), 0..4),
    ) -> Owned {
        let mut extra_area = Vec::new();
        for (vendor, type_id, value) in &extras {
            encode::tests_support::put(&mut extra_area, *vendor, *type_id, value);
        }
        let core_chunks = [
            ip_family.is_some(), ip_protocol.is_some(), src_ip.is_some(), dst_ip.is_some(),
            src_port.is_some(), dst_port.is_some(), ts_sec.is_some(), ts_usec.is_some(),
            proto_type.is_some(), capture_id.is_some(),
            matches!(payload, Some((false, _))),
        ]
        .into_iter()
        .filter(|present| *present)
        .count();
        Owned {
            version: 3, ip_family, ip_protocol, src_ip, dst_ip, src_port, dst_port, ts_sec,
            ts_usec, proto_type, capture_id, keep_alive, auth_key, payload, correlation_id,
            vlan_id, node_name, core_chunks: u8::try_from(core_chunks).unwrap(), extra_area,
        }
    }
}

prop_compose! {
    fn v1v2_packet()(
        version in 1u8..=2,
        v6 in any::<bool>(),
        src in any::<[u8; 16]>(),
        dst in any::<[u8; 16]>(),
        ip_protocol in any::<u8>(),
        src_port in any::<u16>(),
        dst_port in any::<u16>(),
        ts_sec in any::<u32>(),
        ts_usec in any::<u32>(),
        capture_id in any::<u16>(),
        payload in bytes(300),
    ) -> Owned {
        let addr = |o: [u8; 16]| if v6 {
            IpAddr::V6(Ipv6Addr::from(o))
        } else {
            IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
        };
        let v2 = version == 2;
        Owned {
            version,
            ip_family: Some(if v6 { 10 } else { 2 }),
            ip_protocol: Some(ip_protocol),
            src_ip: Some(addr(src)),
            dst_ip: Some(addr(dst)),
            src_port: Some(src_port),
            dst_port: Some(dst_port),
            ts_sec: v2.then_some(ts_sec),
            ts_usec: v2.then_some(ts_usec),
            proto_type: None,
            capture_id: v2.then_some(u32::from(capture_id)),
            keep_alive: None,
            auth_key: None,
            payload: Some((false, payload)),
            correlation_id: None,
            vlan_id: None,
            node_name: None,
            core_chunks: if v2 { 10 } else { 7 },
            extra_area: Vec::new(),
        }
    }
}

proptest! {
    #[test]
    fn v3_round_trip(owned in v3_packet()) {
        let original = owned.view();
        let mut wire = Vec::new();
        try_encode_v3(&original, &mut wire).unwrap();
        let decoded = decode(&wire).unwrap();
        // Everything but chunk_area (which now also holds the typed chunks) is equal.
        let expected = HepPacket { chunk_area: decoded.chunk_area, ..original.clone() };
        prop_assert_eq!(&decoded, &expected);
        prop_assert!(decoded.extra_chunks().eq(original.extra_chunks()));
        prop_assert_eq!(decoded.chunk_area.len() + 6, wire.len());
        // Stable order: re-encoding the decoded packet gives the same bytes.
        let mut again = Vec::new();
        encode_v3(&decoded, &mut again);
        prop_assert_eq!(again, wire);
    }

    #[test]
    fn v3_every_truncation_is_truncated(owned in v3_packet()) {
        let mut wire = Vec::new();
        encode_v3(&owned.view(), &mut wire);
        for len in 0..wire.len() {
            let result = decode(&wire[..len]);
            prop_assert!(
                matches!(result, Err(HepError::Truncated { .. })),
                "len {}: {:?}", len, result
            );
        }
        // And framing waits for exactly the whole packet.
        for len in 0..wire.len() {
            prop_assert_eq!(tcp_frame_len(&wire[..len], 65_535), Ok(None));
        }
        prop_assert_eq!(tcp_frame_len(&wire, 65_535), Ok(Some(wire.len())));
    }

    #[test]
    fn v1v2_round_trip(owned in v1v2_packet()) {
        let original = owned.view();
        let mut wire = Vec::new();
        encode_v1v2(&original, &mut wire).unwrap();
        prop_assert_eq!(decode(&wire).unwrap(), original);
    }

    #[test]
    fn v1v2_every_truncation_is_truncated_or_a_shorter_payload(owned in v1v2_packet()) {
        let original = owned.view();
        let mut wire = Vec::new();
        encode_v1v2(&original, &mut wire).unwrap();
        let header_len = wire.len() - owned.payload.as_ref().map_or(0, |(_, p)| p.len());
        for len in 0..wire.len() {
            let result = decode(&wire[..len]);
            if len < header_len {
                prop_assert!(
                    matches!(result, Err(HepError::Truncated { .. })),
                    "len {}: {:?}", len, result
                );
            } else {
                // No length field: a cut payload is still a valid, shorter packet.
                let p = result.unwrap();
                prop_assert_eq!(p.payload, Some(HepPayload::Raw(&wire[header_len..len])));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(buf in bytes(200)) {
        let _ = decode(&buf);
        let _ = tcp_frame_len(&buf, 100);
        let mut hep3 = b"HEP3".to_vec();
        hep3.extend_from_slice(&u16::try_from(buf.len() + 6).unwrap().to_be_bytes());
        hep3.extend_from_slice(&buf);
        if let Ok(p) = decode(&hep3) {
            // Decoded packets always walk cleanly to the end of the chunk area.
            let walked: usize = p.chunks().map(|c| c.wire_len()).sum();
            prop_assert_eq!(walked, p.chunk_area.len());
        }
    }
}
