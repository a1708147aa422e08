//! `hep-loadgen`: sends HEP SIP packets (built with the collector's own encoder) over UDP to a
//! HEP receiver at a fixed rate or as fast as possible, and prints packets sent per second.
//!
//! ```sh
//! cargo run --release -p sipcapture-collector --bin hep-loadgen -- \
//!     --target 127.0.0.1:9060 --rate 50000 --seconds 10 --senders 2
//! # the packets it would send, as a pcap + a CSV of their fields (to check with tshark/hep.lua):
//! hep-loadgen --count 8 --pcap-out /tmp/loadgen.pcap
//! # plain SIP over UDP (no HEP), for mirror/IPIP capture benchmarks:
//! hep-loadgen --sip-only --bind 10.1.2.1:0 --target 10.1.2.2:5060 --rate 20000
//! ```
//!
//! Each packet is an INVITE with SDP (padded to `--size` bytes of HEP), its own Call-ID
//! (repeated after `--distinct` packets), a source address and port that vary per packet, and
//! the HEP time of its construction. Several `--senders` use several source ports, so a
//! receiver's SO_REUSEPORT sockets share the load as they would with several agents.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use sipcapture_collector::decode::hep::{HepPacket, HepPayload, encode_v1v2, try_encode_v3};

/// Sends HEP SIP packets over UDP and reports the rate.
#[derive(Debug, Parser)]
#[command(name = "hep-loadgen", version)]
struct Args {
    /// Receiver address.
    #[arg(long, default_value = "127.0.0.1:9060")]
    target: SocketAddr,
    /// Packets per second over all senders; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to send, seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Stop after this many packets (0 = no limit).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Sending threads, each with its own socket (source port).
    #[arg(long, default_value_t = 1)]
    senders: usize,
    /// Target size of one HEP packet, bytes (the SIP message is padded to reach it).
    #[arg(long, default_value_t = 800)]
    size: usize,
    /// HEP version: 1, 2 or 3.
    #[arg(long, default_value_t = 3)]
    hep_version: u8,
    /// Inner (captured) addresses are IPv6.
    #[arg(long)]
    ipv6: bool,
    /// Capture id (chunk 0x000c; v2 keeps the low 16 bits).
    #[arg(long, default_value_t = 2001)]
    capture_id: u32,
    /// Auth key (HEP3 chunk 0x000e).
    #[arg(long)]
    auth_key: Option<String>,
    /// Node name (HEP3 chunk 0x0013).
    #[arg(long)]
    node_name: Option<String>,
    /// Distinct packets (Call-IDs) built before sending, then cycled.
    #[arg(long, default_value_t = 4096)]
    distinct: usize,
    /// Write the packets (`--count`, default 16) to this pcap file instead of sending them, and
    /// their fields to `<file>.fields.csv`.
    #[arg(long)]
    pcap_out: Option<PathBuf>,
    /// Send the SIP message itself (padded to `--size`), no HEP: the traffic a mirror port or
    /// an IPIP tunnel carries, for raw-capture benchmarks.
    #[arg(long)]
    sip_only: bool,
    /// Local address (and port) to send from, e.g. an address in a test namespace.
    #[arg(long)]
    bind: Option<SocketAddr>,
}

/// The fields of one generated packet, kept for the CSV next to `--pcap-out`.
struct Generated {
    src: SocketAddr,
    dst: SocketAddr,
    ts_sec: u32,
    ts_usec: u32,
    call_id: String,
    sip: Vec<u8>,
    wire: Vec<u8>,
}

fn sip_invite(call_id: &str, src: SocketAddr, padding: usize) -> Vec<u8> {
    let sdp = "v=0\r\no=loadgen 2890844526 2890844526 IN IP4 192.0.2.101\r\ns=-\r\n\
               c=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0 8 101\r\n\
               a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
               a=rtpmap:101 telephone-event/8000\r\n";
    let pad = "x".repeat(padding);
    format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {src};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         To: Bob <sip:bob@biloxi.example.com>\r\n\
         From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{src}>\r\n\
         User-Agent: hep-loadgen\r\n\
         X-Padding: {pad}\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
    .into_bytes()
}

fn addresses(i: usize, ipv6: bool) -> (SocketAddr, SocketAddr) {
    let low = u16::try_from(i % 65_536).unwrap_or(0);
    let [hi, lo] = low.to_be_bytes();
    let port = 5060 + u16::try_from(i % 1000).unwrap_or(0);
    if ipv6 {
        let src = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, low);
        let dst = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 4);
        (
            SocketAddr::new(IpAddr::V6(src), port),
            SocketAddr::new(IpAddr::V6(dst), 5060),
        )
    } else {
        (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, hi, lo)), port),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 4)), 5060),
        )
    }
}

fn encode(args: &Args, i: usize, run: u64, now: Duration) -> anyhow::Result<Generated> {
    let (src, dst) = addresses(i, args.ipv6);
    let call_id = format!("loadgen-{run:x}-{i}@sipcapture.invalid");
    let ts_sec = u32::try_from(now.as_secs()).context("time past 2106")?;
    let ts_usec = now.subsec_micros();
    let build = |sip: &[u8]| -> anyhow::Result<Vec<u8>> {
        if args.sip_only {
            return Ok(sip.to_vec());
        }
        let packet = HepPacket {
            version: args.hep_version,
            ip_family: Some(if args.ipv6 { 10 } else { 2 }),
            ip_protocol: Some(17),
            src_ip: Some(src.ip()),
            dst_ip: Some(dst.ip()),
            src_port: Some(src.port()),
            dst_port: Some(dst.port()),
            ts_sec: Some(ts_sec),
            ts_usec: Some(ts_usec),
            proto_type: Some(1),
            capture_id: Some(args.capture_id),
            keep_alive: None,
            auth_key: args.auth_key.as_deref().map(str::as_bytes),
            payload: Some(HepPayload::Raw(sip)),
            correlation_id: Some(call_id.as_bytes()),
            vlan_id: None,
            node_name: args.node_name.as_deref().map(str::as_bytes),
            core_chunks: 0,
            chunk_area: &[],
        };
        let mut wire = Vec::new();
        match args.hep_version {
            3 => try_encode_v3(&packet, &mut wire)?,
            1 | 2 => encode_v1v2(&packet, &mut wire)?,
            v => bail!("--hep-version {v}: must be 1, 2 or 3"),
        }
        Ok(wire)
    };
    // Encode once unpadded to learn the overhead, then pad the SIP message to reach `--size`.
    let bare = build(&sip_invite(&call_id, src, 0))?;
    let padding = args.size.saturating_sub(bare.len());
    let sip = sip_invite(&call_id, src, padding);
    let wire = build(&sip)?;
    Ok(Generated {
        src,
        dst,
        ts_sec,
        ts_usec,
        call_id,
        sip,
        wire,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let run = u64::from(now.subsec_nanos()) ^ now.as_secs();
    let distinct = if args.pcap_out.is_some() {
        usize::try_from(if args.count == 0 { 16 } else { args.count })?
    } else {
        args.distinct.max(1)
    };
    let mut packets = Vec::with_capacity(distinct);
    for i in 0..distinct {
        // Successive microseconds, so every packet has its own HEP time.
        let at = now + Duration::from_micros(u64::try_from(i)?);
        packets.push(encode(&args, i, run, at)?);
    }
    if let Some(path) = &args.pcap_out {
        write_pcap(path, &args, &packets)?;
        println!(
            "wrote {} HEP{} packets to {} (fields: {})",
            packets.len(),
            args.hep_version,
            path.display(),
            fields_path(path).display()
        );
        return Ok(());
    }
    let sizes: Vec<usize> = packets.iter().map(|p| p.wire.len()).collect();
    let wires: Arc<Vec<Vec<u8>>> = Arc::new(packets.into_iter().map(|p| p.wire).collect());
    send(&args, &wires, &sizes)
}

fn send(args: &Args, wires: &Arc<Vec<Vec<u8>>>, sizes: &[usize]) -> anyhow::Result<()> {
    let senders = args.senders.max(1);
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let duration = Duration::from_secs_f64(args.seconds.max(0.0));
    let per_sender_rate = args.rate as f64 / senders as f64;
    let per_sender_count = args.count.div_ceil(senders as u64);
    let bind: SocketAddr = match args.bind {
        Some(bind) => bind,
        None if args.target.is_ipv6() => "[::]:0".parse()?,
        None => "0.0.0.0:0".parse()?,
    };
    let start = Instant::now();
    let mut threads = Vec::new();
    for s in 0..senders {
        let socket = UdpSocket::bind(bind)?;
        socket.connect(args.target)?;
        let (wires, sent, errors, stop) =
            (wires.clone(), sent.clone(), errors.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut mine: u64 = 0;
            let mut index = s;
            loop {
                if stop.load(Ordering::Relaxed)
                    || (per_sender_count > 0 && mine >= per_sender_count)
                {
                    return;
                }
                if per_sender_rate > 0.0 {
                    // Pace: send what is due by now, then nap briefly.
                    let due = (start.elapsed().as_secs_f64() * per_sender_rate) as u64;
                    if mine >= due {
                        std::thread::sleep(Duration::from_micros(100));
                        continue;
                    }
                }
                let Some(wire) = wires.get(index % wires.len()) else {
                    return;
                };
                index = index.wrapping_add(1);
                match socket.send(wire) {
                    Ok(_) => {
                        mine += 1;
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let avg = sizes.iter().sum::<usize>() / sizes.len().max(1);
    let kind = if args.sip_only {
        "SIP".to_owned()
    } else {
        format!("HEP{}", args.hep_version)
    };
    println!(
        "sending {kind} ~{avg}-byte packets to {} with {senders} sender(s), rate {}, for {:?}",
        args.target,
        if args.rate == 0 {
            "max".to_owned()
        } else {
            format!("{}/s", args.rate)
        },
        duration
    );
    let mut last = 0;
    let mut second = 0;
    while start.elapsed() < duration && !threads.iter().all(|t| t.is_finished()) {
        second += 1;
        let next = start + Duration::from_secs(second);
        while Instant::now() < next && start.elapsed() < duration {
            if threads.iter().all(|t| t.is_finished()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let now = sent.load(Ordering::Relaxed);
        println!("t={second}s sent/s={}", now - last);
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ignored = t.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let total = sent.load(Ordering::Relaxed);
    println!(
        "sent={total} errors={} elapsed={elapsed:.3}s pps={:.0} bytes_per_packet={avg}",
        errors.load(Ordering::Relaxed),
        total as f64 / elapsed
    );
    Ok(())
}

fn fields_path(pcap: &Path) -> PathBuf {
    let mut name = pcap.as_os_str().to_owned();
    name.push(".fields.csv");
    PathBuf::from(name)
}

/// Writes `packets` as Ethernet/IPv4/UDP frames (127.0.0.1:40000 → `--target` port) in a
/// classic pcap, and their HEP fields to `<path>.fields.csv`.
fn write_pcap(path: &Path, args: &Args, packets: &[Generated]) -> anyhow::Result<()> {
    let mut out = Vec::new();
    // Classic pcap header: magic, v2.4, thiszone 0, sigfigs 0, snaplen, LINKTYPE_ETHERNET.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, 262_144, 1] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    let mut csv = String::from(
        "version,src_ip,src_port,dst_ip,dst_port,ts_sec,ts_usec,capture_id,proto_type,\
         auth_key,correlation_id,node_name,payload_len,payload_sha_prefix\n",
    );
    for p in packets {
        let frame = ethernet_ipv4_udp(args.target.port(), &p.wire)?;
        let len = u32::try_from(frame.len())?;
        for word in [p.ts_sec, p.ts_usec, len, len] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.extend_from_slice(&frame);
        let v3 = args.hep_version == 3;
        let capture_id = match args.hep_version {
            1 => String::new(),
            2 => (args.capture_id & 0xffff).to_string(),
            _ => args.capture_id.to_string(),
        };
        let time = if args.hep_version == 1 {
            (String::new(), String::new())
        } else {
            (p.ts_sec.to_string(), p.ts_usec.to_string())
        };
        let optional = |s: &Option<String>| if v3 { s.clone() } else { None }.unwrap_or_default();
        writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            args.hep_version,
            p.src.ip(),
            p.src.port(),
            p.dst.ip(),
            p.dst.port(),
            time.0,
            time.1,
            capture_id,
            if v3 { "1" } else { "" },
            optional(&args.auth_key),
            if v3 { p.call_id.as_str() } else { "" },
            optional(&args.node_name),
            p.sip.len(),
            hex_prefix(&p.sip),
        )?;
    }
    std::fs::File::create(path)?.write_all(&out)?;
    std::fs::write(fields_path(path), csv)?;
    Ok(())
}

/// The first 16 payload bytes in hex (enough to tell messages apart next to the length).
fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(16).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn ethernet_ipv4_udp(dst_port: u16, payload: &[u8]) -> anyhow::Result<Vec<u8>> {
    let udp_len = u16::try_from(payload.len() + 8).context("payload too large for UDP")?;
    let ip_len = udp_len
        .checked_add(20)
        .context("payload too large for IPv4")?;
    let mut f = Vec::with_capacity(usize::from(ip_len) + 14);
    f.extend_from_slice(&[0; 12]); // zero MACs, as on lo
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = [
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
    ];
    if let Some(field) = ip.get_mut(2..4) {
        field.copy_from_slice(&ip_len.to_be_bytes());
    }
    let checksum = ipv4_checksum(&ip);
    if let Some(field) = ip.get_mut(10..12) {
        field.copy_from_slice(&checksum.to_be_bytes());
    }
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40_000u16.to_be_bytes());
    f.extend_from_slice(&dst_port.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4)
    f.extend_from_slice(payload);
    Ok(f)
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| {
            u32::from(u16::from_be_bytes([
                w.first().copied().unwrap_or(0),
                w.get(1).copied().unwrap_or(0),
            ]))
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0xffff)
}
