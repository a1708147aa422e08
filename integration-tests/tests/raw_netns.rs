//! Live raw capture end to end on real links, in network namespaces created and removed by the
//! tests (`rawsock-*`): `sipcapture up` on the host end of a veth pair in mirror mode (with and
//! without the kernel BPF filter, one reader or several in a PACKET_FANOUT group), in IPIP mode
//! behind an IPIP tunnel (a kernel tunnel when the kernel has IPIP devices, else encapsulated by
//! hand with a raw socket), both modes together, and on a tun device (raw IP, no link header).
//! Traffic: sipp calls over UDP and TCP (`-t t1`), IPv6, hand-built 802.1Q and QinQ frames,
//! IPv4 and IPv6 INVITEs fragmented by the sender's kernel, datagrams outside the
//! `raw_socket_listen` range. Every SIP message on the wire in range must become exactly one
//! row, with the addresses and ports of the wire.
//!
//! Needs root (namespaces, packet sockets) and sipp: skipped with a message otherwise (failing
//! under `CI`, where a skip would hide a broken set-up).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use sipcapture_integration_tests::hep::request;
use sipcapture_integration_tests::netns::{
    SENDER, SipRow, Veth, is_root, root_or_skip, run, sip_rows,
};
use sipcapture_integration_tests::{Sandbox, bin_path, member_counters, open_db, wait_until};

const WAIT: Duration = Duration::from_secs(20);
/// sipp calls per run; each is INVITE, 180, 200, ACK, BYE, 200.
const CALLS: usize = 4;
const MESSAGES_PER_CALL: usize = 6;

fn have_sipp(test: &str) -> bool {
    let found = Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test} needs sipp (apt package sip-tester) and CI is set"
        );
        eprintln!("SKIPPED {test}: sipp (sip-tester) is not installed");
    }
    found
}

/// An INVITE that does not fit one 1500-byte frame (padded with an `X-Padding` header).
fn big_invite(call_id: &str) -> Vec<u8> {
    let small = String::from_utf8(request("INVITE", call_id, 1, "big", None)).unwrap();
    let padding = format!("X-Padding: {}\r\n", "p".repeat(3000));
    small
        .replace("Content-Length: 0", &format!("{padding}Content-Length: 0"))
        .into_bytes()
}

/// What one run sent and expects: row → how many times.
#[derive(Debug, Default)]
struct Expected(BTreeMap<SipRow, usize>);

impl Expected {
    fn add(&mut self, callid: &str, src: &str, sport: u16, dst: &str, dport: u16, proto: u8) {
        let family = if src.contains(':') { 10 } else { 2 };
        let row = SipRow {
            callid: callid.to_owned(),
            src: src.to_owned(),
            sport,
            dst: dst.to_owned(),
            dport,
            proto,
            family,
        };
        *self.0.entry(row).or_default() += 1;
    }

    fn total(&self) -> usize {
        self.0.values().sum()
    }
}

fn count(rows: &[SipRow]) -> BTreeMap<SipRow, usize> {
    let mut counted = BTreeMap::new();
    for row in rows {
        *counted.entry(row.clone()).or_default() += 1;
    }
    counted
}

/// Runs `calls` sipp calls (UDP unless `transport` says `t1`): uas on the host end, uac in the
/// namespace. sipp's Call-IDs are `<n>-<pid>@<uac ip>`.
fn sipp_calls(topo: &Veth, transport: &str, uas_port: u16, uac_port: u16, calls: usize) {
    let host = topo.v4(2);
    let peer = topo.v4(1);
    let uas = Command::new("sipp")
        .args(["-sn", "uas", "-i", &host, "-p", &uas_port.to_string()])
        .args(["-t", transport, "-m", &calls.to_string(), "-nostdin"])
        .args(["-timeout", "30s", "-timeout_error"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir(std::env::temp_dir())
        .spawn()
        .unwrap();
    // The uas must listen before the first INVITE: wait for its socket.
    let listening = (0..100).any(|_| {
        let out = Command::new("ss")
            .args(["-ltunH", "sport", "=", &format!(":{uas_port}")])
            .output()
            .unwrap();
        if out.stdout.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
            false
        } else {
            true
        }
    });
    assert!(listening, "sipp uas did not open port {uas_port}");
    let uac = Command::new("ip")
        .args(["netns", "exec", &topo.ns, "sipp", "-sn", "uac"])
        .arg(format!("{host}:{uas_port}"))
        .args(["-i", &peer, "-p", &uac_port.to_string(), "-t", transport])
        .args(["-m", &calls.to_string(), "-r", "20", "-nostdin"])
        .args(["-timeout", "30s", "-timeout_error"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        uac.status.success(),
        "sipp uac: {}{}",
        String::from_utf8_lossy(&uac.stdout),
        String::from_utf8_lossy(&uac.stderr)
    );
    let uas = uas.wait_with_output().unwrap();
    // Over TCP the uas counts its calls failed when the uac closes the connection during the
    // scenario's final pause: every message was exchanged (the rows check that), so only UDP's
    // exit status is asserted.
    assert!(
        uas.status.success() || transport == "t1",
        "sipp uas ({transport}): {}\n{}{}",
        uas.status,
        String::from_utf8_lossy(&uas.stdout),
        String::from_utf8_lossy(&uas.stderr)
    );
}

/// Checks the sipp rows of the calls to `uas_port`: `calls` Call-IDs, each with the six
/// messages between the two ends (the uac's port is sipp's choice over TCP).
fn check_sipp_rows(rows: &[SipRow], topo: &Veth, uas_port: u16, proto: u8, calls: usize) {
    let (uac, uas) = (topo.v4(1), topo.v4(2));
    let mut per_call: BTreeMap<&str, Vec<&SipRow>> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.callid.ends_with(&format!("@{uac}")))
        .filter(|r| r.sport == uas_port || r.dport == uas_port)
    {
        per_call.entry(row.callid.as_str()).or_default().push(row);
    }
    assert_eq!(
        per_call.len(),
        calls,
        "sipp calls to {uas_port}: {per_call:#?}"
    );
    for (callid, rows) in per_call {
        assert_eq!(rows.len(), MESSAGES_PER_CALL, "{callid}: {rows:#?}");
        let requests = rows
            .iter()
            .filter(|r| (r.src.as_str(), r.dst.as_str(), r.dport) == (&uac, &uas, uas_port))
            .count();
        let replies = rows
            .iter()
            .filter(|r| (r.src.as_str(), r.sport, r.dst.as_str()) == (&uas, uas_port, &uac))
            .count();
        // INVITE, ACK, BYE one way; 180, 200, 200 the other.
        assert_eq!((requests, replies), (3, 3), "{callid}: {rows:#?}");
        assert!(
            rows.iter().all(|r| r.proto == proto && r.family == 2),
            "{rows:#?}"
        );
    }
}

/// One mirror run on a fresh veth.
async fn mirror_run(bpf: bool, children: usize) {
    let topo = Veth::create().unwrap();
    let sandbox = Sandbox::new().unwrap();
    let script = sandbox.path().join("send.py");
    std::fs::write(&script, SENDER).unwrap();
    let settings = [
        "raw_moni_capture_on=1".to_owned(),
        format!("raw_interface={}", topo.host_if),
        "raw_socket_listen=0.0.0.0:5060-5090".to_owned(),
        format!("raw_moni_bpf_on={}", u8::from(bpf)),
        format!("raw_sock_children={children}"),
        "promiscuous_on=1".to_owned(),
    ];
    let mut args = Vec::new();
    for s in &settings {
        args.extend(["--set", s.as_str()]);
    }
    let mut up = sandbox.up(&args).await.unwrap();
    // promiscuous_on: the interface is promiscuous while capturing (IFF_PROMISC = 0x100).
    let flags = std::fs::read_to_string(format!("/sys/class/net/{}/flags", topo.host_if)).unwrap();
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_ne!(flags & 0x100, 0, "promiscuous_on: flags {flags:#x}");

    let (ns4, host4, ns6, host6) = (topo.v4(1), topo.v4(2), topo.v6(1), topo.v6(2));
    let mac = topo.host_mac().unwrap();
    let mut expected = Expected::default();
    // Out of range on both ports: never a row (with BPF it does not even reach userspace).
    topo.send(
        &script,
        &["udp", &ns4, "40000", &host4, "9999", "3"],
        &request("OPTIONS", "rawsock-filtered", 1, "f", None),
    )
    .unwrap();
    for i in 0..3 {
        let callid = format!("rawsock-v4-{i}");
        topo.send(
            &script,
            &["udp", &ns4, "5070", &host4, "5060"],
            &request("OPTIONS", &callid, 1, "t4", None),
        )
        .unwrap();
        expected.add(&callid, &ns4, 5070, &host4, 5060, 1);
    }
    topo.send(
        &script,
        &["udp", &ns6, "5072", &host6, "5062"],
        &request("OPTIONS", "rawsock-v6", 1, "t6", None),
    )
    .unwrap();
    expected.add("rawsock-v6", &ns6, 5072, &host6, 5062, 1);
    for (callid, tags, src, dst) in [
        ("rawsock-vlan", "8100:100", &ns4, &host4),
        ("rawsock-qinq", "88a8:200,8100:100", &ns4, &host4),
        ("rawsock-vlan-v6", "8100:101", &ns6, &host6),
        ("rawsock-qinq-v6", "88a8:201,8100:102", &ns6, &host6),
    ] {
        topo.send(
            &script,
            &["eth", &topo.ns_if, &mac, tags, src, "5071", dst, "5061"],
            &request("OPTIONS", callid, 1, "tv", None),
        )
        .unwrap();
        expected.add(callid, src, 5071, dst, 5061, 1);
    }
    // A tagged frame out of range: filtered (by BPF or in userspace).
    topo.send(
        &script,
        &[
            "eth",
            &topo.ns_if,
            &mac,
            "88a8:200,8100:100",
            &ns4,
            "40001",
            &host4,
            "9998",
        ],
        &request("OPTIONS", "rawsock-qinq-filtered", 1, "tq", None),
    )
    .unwrap();
    // Fragmented by the sender's kernel (3 fragments on a 1500-byte MTU): reassembled by the
    // kernel for a fanout group (PACKET_FANOUT_FLAG_DEFRAG, IPv4), else by the dissector.
    topo.send(
        &script,
        &["udp", &ns4, "5073", &host4, "5063"],
        &big_invite("rawsock-frag-v4"),
    )
    .unwrap();
    expected.add("rawsock-frag-v4", &ns4, 5073, &host4, 5063, 1);
    topo.send(
        &script,
        &["udp", &ns6, "5074", &host6, "5064"],
        &big_invite("rawsock-frag-v6"),
    )
    .unwrap();
    expected.add("rawsock-frag-v6", &ns6, 5074, &host6, 5064, 1);
    // sipp calls over UDP, then over TCP (`-t t1`: one connection, reassembled per flow).
    let sipp = have_sipp("raw_netns sipp calls");
    if sipp {
        sipp_calls(&topo, "u1", 5080, 5081, CALLS);
        sipp_calls(&topo, "t1", 5082, 5083, CALLS);
    }
    let want = expected.total()
        + if sipp {
            2 * CALLS * MESSAGES_PER_CALL
        } else {
            0
        };

    let db = open_db(&up.db_url).await.unwrap();
    wait_until("one row per sip message", WAIT, || async {
        Ok(sip_rows(&db).await?.len() >= want)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", up.process.log_text()));
    // Late duplicates would show up after the expected count is reached: look once more after
    // the capture threads' read timeout has passed several times.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counters = member_counters(up.grpc).await.unwrap();
    eprintln!("bpf={bpf} children={children} counters: {counters:?}");
    let rows = sip_rows(&db).await.unwrap();
    assert_eq!(rows.len(), want, "rows: {rows:#?}\ncounters: {counters:?}");
    let ours: Vec<SipRow> = rows
        .iter()
        .filter(|r| r.callid.starts_with("rawsock-"))
        .cloned()
        .collect();
    assert_eq!(count(&ours), expected.0, "counters: {counters:?}");
    if sipp {
        check_sipp_rows(&rows, &topo, 5080, 1, CALLS);
        check_sipp_rows(&rows, &topo, 5082, 2, CALLS);
    }
    let filtered = counters.get("dropped.port_filtered").copied().unwrap_or(0);
    if bpf {
        // The kernel dropped them: userspace never saw a frame outside the range.
        assert_eq!(filtered, 0, "{counters:?}");
    } else {
        assert!(filtered >= 4, "3 + 1 out-of-range datagrams: {counters:?}");
    }
    assert_eq!(
        counters.get("records_queued").copied().unwrap_or(0),
        u64::try_from(want).unwrap(),
        "{counters:?}"
    );
    assert!(
        up.process.terminate(Duration::from_secs(20)).unwrap(),
        "sipcapture up exited with an error; log:\n{}",
        up.process.log_text()
    );
    let log = up.process.log_text();
    assert_eq!(
        log.matches("mirror capture stopped").count(),
        children,
        "every reader stops: {log}"
    );
    // The kernel dropped the promiscuous membership with the sockets.
    let flags = std::fs::read_to_string(format!("/sys/class/net/{}/flags", topo.host_if)).unwrap();
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 0x100, 0, "still promiscuous: {flags:#x}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_with_bpf_and_two_fanout_readers_gives_one_row_per_message() {
    if root_or_skip("raw_netns mirror bpf") {
        mirror_run(true, 2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_without_bpf_one_reader_gives_one_row_per_message() {
    if root_or_skip("raw_netns mirror") {
        mirror_run(false, 1).await;
    }
}

/// How the namespace sends IPIP.
enum IpipSender {
    /// Kernel IPIP tunnel devices (`ip tunnel add ... mode ipip`): plain UDP sockets in the
    /// namespace, routed into the tunnels.
    Kernel,
    /// This kernel has no IPIP devices (`CONFIG_NET_IPIP` off): the sender writes the same
    /// packets with a raw socket, outer header by hand (with IP options on some).
    Raw,
}

/// IPIP: SIP sent in the namespace to the host's inner address travels encapsulated over the
/// veth, where the collector's raw IPIP socket (bound to the host's veth address) reads it. A
/// kernel IPIP tunnel between the namespace and the host carries it when the kernel has IPIP
/// devices; otherwise the sender encapsulates by hand. IPIP sent to another host address must
/// not be captured (the bind), nor must inner ports out of range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipip_tunnel_capture_gives_one_row_per_message() {
    if !root_or_skip("raw_netns ipip") {
        return;
    }
    let mut topo = Veth::create().unwrap();
    let sandbox = Sandbox::new().unwrap();
    let script = sandbox.path().join("send.py");
    std::fs::write(&script, SENDER).unwrap();
    let (ns_outer, host_outer, other_outer) = (topo.v4(1), topo.v4(2), topo.v4(3));
    let (ns_inner, host_inner, other_inner) =
        (topo.inner_v4(1), topo.inner_v4(2), topo.inner_v4(3));
    // A second host address on the veth: IPIP sent there is outside the socket's bind.
    run(&[
        "ip",
        "addr",
        "add",
        &format!("{other_outer}/32"),
        "dev",
        &topo.host_if,
    ])
    .unwrap();
    let neighbour = [
        "ip",
        "neigh",
        "replace",
        &other_outer,
        "lladdr",
        &topo.host_mac().unwrap(),
        "dev",
        &topo.ns_if,
    ];
    topo.exec(&neighbour).unwrap();
    let sender = if topo
        .exec(&["ip", "link", "add", "rskprobe", "type", "ipip"])
        .is_ok()
    {
        let host_tunnel = format!("{}t", topo.host_if);
        topo.own_link(&host_tunnel);
        run(&[
            "ip",
            "tunnel",
            "add",
            &host_tunnel,
            "mode",
            "ipip",
            "local",
            &host_outer,
            "remote",
            &ns_outer,
        ])
        .unwrap();
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{host_inner}/32"),
            "dev",
            &host_tunnel,
        ])
        .unwrap();
        run(&["ip", "link", "set", &host_tunnel, "up"]).unwrap();
        for (dev, remote, inner) in [
            ("rskt1", &host_outer, &host_inner),
            ("rskt2", &other_outer, &other_inner),
        ] {
            topo.exec(&[
                "ip", "tunnel", "add", dev, "mode", "ipip", "local", &ns_outer, "remote", remote,
            ])
            .unwrap();
            topo.exec(&["ip", "link", "set", dev, "up"]).unwrap();
            topo.exec(&[
                "ip",
                "route",
                "add",
                &format!("{inner}/32"),
                "dev",
                dev,
                "src",
                &ns_inner,
            ])
            .unwrap();
        }
        topo.exec(&["ip", "addr", "add", &format!("{ns_inner}/32"), "dev", "lo"])
            .unwrap();
        IpipSender::Kernel
    } else {
        eprintln!(
            "raw_netns ipip: this kernel has no IPIP tunnel devices (CONFIG_NET_IPIP); \
             the namespace encapsulates with a raw socket instead"
        );
        IpipSender::Raw
    };
    // Sends `count` datagrams from the namespace's inner address to `dst` (inner), through the
    // tunnel to `outer`.
    let send = |outer: &str, options: u8, sport: u16, dst: &str, dport: u16, payload: &[u8]| {
        let (sport, dport) = (sport.to_string(), dport.to_string());
        match sender {
            IpipSender::Kernel => {
                topo.send(&script, &["udp", &ns_inner, &sport, dst, &dport], payload)
            }
            IpipSender::Raw => topo.send(
                &script,
                &[
                    "ipip",
                    &ns_outer,
                    outer,
                    &options.to_string(),
                    &ns_inner,
                    &sport,
                    dst,
                    &dport,
                ],
                payload,
            ),
        }
        .unwrap();
    };

    // Both raw modes together: mirror capture (BPF on) on the same veth sees the IPIP packets
    // too and decapsulates them in userspace, so every message in range has a second row (one
    // per input), and the packet to the unbound address gets its mirror row.
    let settings = [
        "raw_ipip_capture_on=1".to_owned(),
        format!("raw_socket_listen={host_outer}:5060-5090"),
        "raw_moni_capture_on=1".to_owned(),
        format!("raw_interface={}", topo.host_if),
        "raw_moni_bpf_on=1".to_owned(),
    ];
    let mut args = Vec::new();
    for s in &settings {
        args.extend(["--set", s.as_str()]);
    }
    let mut up = sandbox.up(&args).await.unwrap();

    // Not captured: out of the inner port range, and through the tunnel to the other address.
    for _ in 0..2 {
        let filtered = request("OPTIONS", "rawsock-ipip-filtered", 1, "f", None);
        send(&host_outer, 0, 40000, &host_inner, 9999, &filtered);
    }
    let unbound = request("OPTIONS", "rawsock-ipip-unbound", 1, "u", None);
    send(&other_outer, 0, 5070, &other_inner, 5060, &unbound);
    let mut expected = Expected::default();
    expected.add(
        "rawsock-ipip-unbound",
        &ns_inner,
        5070,
        &other_inner,
        5060,
        1,
    );
    for i in 0..5u8 {
        let callid = format!("rawsock-ipip-{i}");
        // Outer IP options (hand-built packets only) move the inner packet: IHL is honoured.
        let options = if i % 2 == 1 { 4 * i } else { 0 };
        let message = request("OPTIONS", &callid, 1, "t", None);
        send(&host_outer, options, 5070, &host_inner, 5060, &message);
        // Once from the IPIP socket, once from the mirror.
        expected.add(&callid, &ns_inner, 5070, &host_inner, 5060, 1);
        expected.add(&callid, &ns_inner, 5070, &host_inner, 5060, 1);
    }
    let db = open_db(&up.db_url).await.unwrap();
    wait_until("one row per sip message", WAIT, || async {
        Ok(sip_rows(&db).await?.len() >= expected.total())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", up.process.log_text()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counters = member_counters(up.grpc).await.unwrap();
    eprintln!("ipip counters: {counters:?}");
    let rows = sip_rows(&db).await.unwrap();
    assert_eq!(count(&rows), expected.0, "counters: {counters:?}");
    // 2 filtered by the IPIP socket's worker, and the same 2 by the mirror's after
    // decapsulation (the BPF filter lets tunnels through).
    assert_eq!(
        counters.get("dropped.port_filtered").copied(),
        Some(4),
        "{counters:?}"
    );
    assert_eq!(
        counters.get("records_queued").copied(),
        Some(11),
        "{counters:?}"
    );
    assert_eq!(
        counters.get("ipip_packets").copied(),
        Some(7),
        "5 in range + 2 filtered; the unbound address never reaches the socket: {counters:?}"
    );
    assert!(
        up.process.terminate(Duration::from_secs(20)).unwrap(),
        "sipcapture up exited with an error; log:\n{}",
        up.process.log_text()
    );
    let log = up.process.log_text();
    assert!(log.contains("ipip capture stopped"), "{log}");
    assert!(log.contains("mirror capture stopped"), "{log}");
}

/// Without CAP_NET_RAW the collector refuses to start and names the key that needs it, for
/// each raw mode. As root the test drops to uid/gid 65534 with no capabilities (`setpriv`);
/// otherwise it already lacks them.
#[test]
fn without_cap_net_raw_start_up_fails_naming_the_key() {
    let collector = bin_path("sipcapture-collector").unwrap();
    let modes: [(&[&str], &[&str]); 2] = [
        (
            &["raw_moni_capture_on=1", "raw_interface=lo"],
            &["raw_moni_capture_on", "raw_interface", "CAP_NET_RAW"],
        ),
        (
            &["raw_ipip_capture_on=1"],
            &["raw_ipip_capture_on", "CAP_NET_RAW"],
        ),
    ];
    for (settings, needles) in modes {
        let mut cmd = if is_root() {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
            ])
            .arg(&collector);
            c
        } else {
            Command::new(&collector)
        };
        cmd.args(["--grpc-listen", "127.0.0.1:0"]);
        for s in settings {
            cmd.args(["--set", s]);
        }
        let out = cmd
            .current_dir("/")
            .env("RUST_BACKTRACE", "0")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "started without CAP_NET_RAW: {stderr}"
        );
        for needle in needles {
            assert!(stderr.contains(needle), "{needle:?} missing from: {stderr}");
        }
    }
}

/// The tun device of [`mirror_on_a_tun_device_reads_raw_ip`]; removed on drop.
struct Tun(String);

impl Drop for Tun {
    fn drop(&mut self) {
        let _ignored = Command::new("ip")
            .args(["link", "del", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// An interface without a link header (a tun device, ARPHRD_NONE): frames are read as raw IP
/// and the BPF program starts at the IP header. IPv4 and IPv6 in range become rows, the
/// out-of-range packet is dropped by the kernel filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_on_a_tun_device_reads_raw_ip() {
    if !root_or_skip("raw_netns tun") {
        return;
    }
    let tun = Tun(format!("rsk{}tun", std::process::id() % 100_000));
    run(&["ip", "tuntap", "add", "dev", &tun.0, "mode", "tun"]).unwrap();
    run(&["ip", "link", "set", &tun.0, "up"]).unwrap();
    let sandbox = Sandbox::new().unwrap();
    let script = sandbox.path().join("send.py");
    std::fs::write(&script, SENDER).unwrap();
    let settings = [
        "raw_moni_capture_on=1".to_owned(),
        format!("raw_interface={}", tun.0),
        "raw_socket_listen=0.0.0.0:5060-5090".to_owned(),
        "raw_moni_bpf_on=1".to_owned(),
    ];
    let mut args = Vec::new();
    for s in &settings {
        args.extend(["--set", s.as_str()]);
    }
    let mut up = sandbox.up(&args).await.unwrap();
    // Test-only addresses: packets injected on the tun are never routed anywhere.
    let packets = [
        ("rawsock-tun-v4", "10.254.1.1", "5070", "10.254.1.2", "5060"),
        ("rawsock-tun-v6", "fdfe::1", "5071", "fdfe::2", "5061"),
        (
            "rawsock-tun-filtered",
            "10.254.1.1",
            "40000",
            "10.254.1.2",
            "9999",
        ),
    ];
    for (callid, src, sport, dst, dport) in packets {
        let out = Command::new("python3")
            .arg(&script)
            .args(["tun", &tun.0, src, sport, dst, dport])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(&request("OPTIONS", callid, 1, "tun", None))?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "tun sender: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut expected = Expected::default();
    expected.add("rawsock-tun-v4", "10.254.1.1", 5070, "10.254.1.2", 5060, 1);
    expected.add("rawsock-tun-v6", "fdfe::1", 5071, "fdfe::2", 5061, 1);
    let db = open_db(&up.db_url).await.unwrap();
    wait_until("one row per sip message", WAIT, || async {
        Ok(sip_rows(&db).await?.len() >= expected.total())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", up.process.log_text()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counters = member_counters(up.grpc).await.unwrap();
    let rows = sip_rows(&db).await.unwrap();
    assert_eq!(count(&rows), expected.0, "counters: {counters:?}");
    assert_eq!(counters.get("dropped.port_filtered"), None, "{counters:?}");
    assert!(
        up.process.terminate(Duration::from_secs(20)).unwrap(),
        "sipcapture up exited with an error; log:\n{}",
        up.process.log_text()
    );
}
