//! Building HEP packets and SIP messages for tests, with the collector's own encoder.

use std::net::{IpAddr, SocketAddr, UdpSocket};

use sipcapture_collector::decode::hep::{HepPacket, HepPayload, encode_v1v2, encode_v3};

/// A HEP3 SIP packet as Kamailio siptrace sends it (11 chunks).
pub fn hep3_sip(
    src: SocketAddr,
    dst: SocketAddr,
    ts_sec: u32,
    ts_usec: u32,
    capture_id: u32,
    sip: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    encode_v3(
        &sip_packet(3, src, dst, ts_sec, ts_usec, capture_id, sip),
        &mut out,
    );
    out
}

/// Optional HEP3 chunks of [`hep3_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Chunks<'a> {
    /// Chunk 0x000b (payload type); SIP when `None`.
    pub proto_type: Option<u8>,
    /// Chunk 0x0011.
    pub correlation_id: Option<&'a [u8]>,
    /// Chunk 0x0013.
    pub node_name: Option<&'a [u8]>,
    /// Chunk 0x000e.
    pub auth_key: Option<&'a [u8]>,
}

/// A HEP3 packet with a payload of any type and the optional chunks of `chunks`.
pub fn hep3_with(
    src: SocketAddr,
    dst: SocketAddr,
    ts: (u32, u32),
    capture_id: u32,
    payload: &[u8],
    chunks: Chunks<'_>,
) -> Vec<u8> {
    let mut packet = sip_packet(3, src, dst, ts.0, ts.1, capture_id, payload);
    packet.proto_type = Some(chunks.proto_type.unwrap_or(1));
    packet.correlation_id = chunks.correlation_id;
    packet.node_name = chunks.node_name;
    packet.auth_key = chunks.auth_key;
    let mut out = Vec::new();
    encode_v3(&packet, &mut out);
    out
}

/// A HEP3 SIP packet whose payload travels compressed (chunk 0x0010 holds `compressed` as
/// given: gzip, zlib or raw deflate).
pub fn hep3_compressed(
    src: SocketAddr,
    dst: SocketAddr,
    ts: (u32, u32),
    capture_id: u32,
    compressed: &[u8],
) -> Vec<u8> {
    let mut packet = sip_packet(3, src, dst, ts.0, ts.1, capture_id, compressed);
    packet.payload = Some(HepPayload::Compressed(compressed));
    let mut out = Vec::new();
    encode_v3(&packet, &mut out);
    out
}

/// A HEP v2 SIP packet as Kamailio siptrace sends it (`hep_version = 2`).
pub fn hep2_sip(
    src: SocketAddr,
    dst: SocketAddr,
    ts_sec: u32,
    ts_usec: u32,
    capture_id: u32,
    sip: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let mut packet = sip_packet(2, src, dst, ts_sec, ts_usec, capture_id, sip);
    packet.proto_type = None;
    let mut out = Vec::new();
    encode_v1v2(&packet, &mut out)?;
    Ok(out)
}

fn sip_packet<'a>(
    version: u8,
    src: SocketAddr,
    dst: SocketAddr,
    ts_sec: u32,
    ts_usec: u32,
    capture_id: u32,
    sip: &'a [u8],
) -> HepPacket<'a> {
    let family = match src.ip() {
        IpAddr::V4(_) => 2,
        IpAddr::V6(_) => 10,
    };
    HepPacket {
        version,
        ip_family: Some(family),
        ip_protocol: Some(17),
        src_ip: Some(src.ip()),
        dst_ip: Some(dst.ip()),
        src_port: Some(src.port()),
        dst_port: Some(dst.port()),
        ts_sec: Some(ts_sec),
        ts_usec: Some(ts_usec),
        proto_type: Some(1),
        capture_id: Some(capture_id),
        keep_alive: None,
        auth_key: None,
        payload: Some(HepPayload::Raw(sip)),
        correlation_id: None,
        vlan_id: None,
        node_name: None,
        core_chunks: 0,
        chunk_area: &[],
    }
}

/// Sends datagrams to `target` from an ephemeral loopback socket.
pub fn send_udp(target: SocketAddr, packets: &[Vec<u8>]) -> anyhow::Result<()> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    for p in packets {
        socket.send_to(p, target)?;
    }
    Ok(())
}

/// A SIP request with the usual headers.
pub fn request(
    method: &str,
    call_id: &str,
    cseq: u32,
    from_tag: &str,
    to_tag: Option<&str>,
) -> Vec<u8> {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds{cseq}\r\n\
         Max-Forwards: 70\r\n\
         To: Bob <sip:bob@biloxi.example.com>{to_tag}\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag={from_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:alice@192.0.2.101:5062>\r\n\
         User-Agent: sipcapture-it\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// A SIP reply to `method`.
pub fn reply(
    code: u16,
    reason: &str,
    method: &str,
    call_id: &str,
    cseq: u32,
    from_tag: &str,
    to_tag: &str,
) -> Vec<u8> {
    format!(
        "SIP/2.0 {code} {reason}\r\n\
         Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds{cseq}\r\n\
         To: Bob <sip:bob@biloxi.example.com>;tag={to_tag}\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag={from_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:bob@192.0.2.4:5070>\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Sends `count` HEP3 packets (OPTIONS with Call-ID `{prefix}-{n}`) over one TCP connection at
/// about `rate` packets per second; returns when all are written and the collector has read them.
pub async fn send_tcp_paced(
    target: SocketAddr,
    prefix: &str,
    count: u32,
    rate: u32,
) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(target).await?;
    let started = std::time::Instant::now();
    let src: SocketAddr = "10.1.0.1:5060".parse()?;
    let dst: SocketAddr = "10.1.0.2:5060".parse()?;
    for n in 0..count {
        let sip = request("OPTIONS", &format!("{prefix}-{n}"), 1, "t", None);
        let packet = hep3_sip(src, dst, 1_768_464_000, n % 1_000_000, 9, &sip);
        stream.write_all(&packet).await?;
        if n % 50 == 49 {
            // Pace: packet n is due at n / rate seconds.
            let due = std::time::Duration::from_secs_f64(f64::from(n + 1) / f64::from(rate.max(1)));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
    }
    stream.flush().await?;
    Ok(())
}
