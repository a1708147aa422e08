//! Mirror-port capture (`raw_moni_capture_on`) end to end on a real link: a network namespace
//! joined to the host by a veth pair, `sipcapture up` capturing on the host end, SIP over UDP
//! sent from inside the namespace (IPv4, IPv6, an 802.1Q-tagged frame, and one datagram outside
//! the `raw_socket_listen` port range). Every SIP message in range must become exactly one row
//! with the addresses and ports of the wire.
//!
//! Needs root (network namespaces, packet sockets): skipped with a message otherwise, unless
//! `CI` is set, where skipping would hide a broken set-up, so it fails. Every address used lives
//! only on the test's own veth pair.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use sipcapture_integration_tests::hep::request;
use sipcapture_integration_tests::{Sandbox, bin_path, member_counters, open_db, wait_until};

const WAIT: Duration = Duration::from_secs(15);
/// IPv4 messages sent in range.
const V4_MESSAGES: usize = 5;

/// Sends one UDP datagram from inside the namespace (stdin: the payload).
/// `udp <src ip> <src port> <dst ip> <dst port>`: through the namespace's IP stack.
/// `vlan <ifname> <dst mac> <vlan id> <src ip> <src port> <dst ip> <dst port>`: an Ethernet
/// frame with an 802.1Q tag written on the veth with a packet socket (the kernel here may lack
/// 8021q, so no VLAN subinterface is needed).
const SENDER: &str = r#"
import ipaddress, socket, struct, sys
payload = sys.stdin.buffer.read()
mode = sys.argv[1]
if mode == "udp":
    src, sport, dst, dport = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((src, sport))
    s.sendto(payload, (dst, dport))
elif mode == "vlan":
    ifname, dst_mac, vlan = sys.argv[2], bytes.fromhex(sys.argv[3].replace(":", "")), int(sys.argv[4])
    src, sport, dst, dport = sys.argv[5], int(sys.argv[6]), sys.argv[7], int(sys.argv[8])
    src_mac = bytes.fromhex(open(f"/sys/class/net/{ifname}/address").read().strip().replace(":", ""))
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    words = struct.unpack("!10H", header)
    csum = sum(words)
    csum = (csum & 0xffff) + (csum >> 16)
    csum = (csum & 0xffff) + (csum >> 16)
    header = header[:10] + struct.pack("!H", ~csum & 0xffff) + header[12:]
    frame = dst_mac + src_mac + struct.pack("!HHH", 0x8100, vlan, 0x0800) + header + udp
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    s.send(frame)
else:
    sys.exit("unknown mode " + mode)
"#;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a command; panics with its output when it fails.
fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespace and the veth pair; removed on drop, even when the test fails.
struct Topology {
    ns: String,
    host_if: String,
    ns_if: String,
    subnet: u8,
}

impl Topology {
    fn create() -> Self {
        let pid = std::process::id();
        let topo = Topology {
            ns: format!("sc{pid}ns"),
            host_if: format!("sc{pid}a"),
            ns_if: format!("sc{pid}b"),
            subnet: u8::try_from(pid % 200 + 20).unwrap(),
        };
        assert!(
            topo.host_if.len() <= 15,
            "interface names are at most 15 bytes"
        );
        let (ns, host_if, ns_if) = (&topo.ns, &topo.host_if, &topo.ns_if);
        let host_v4 = format!("{}/24", topo.v4(2));
        let ns_v4 = format!("{}/24", topo.v4(1));
        let host_v6 = format!("{}/64", topo.v6(2));
        let ns_v6 = format!("{}/64", topo.v6(1));
        run(&["ip", "netns", "add", ns]);
        run(&[
            "ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if,
        ]);
        run(&["ip", "link", "set", ns_if, "netns", ns]);
        run(&["ip", "addr", "add", &host_v4, "dev", host_if]);
        run(&["ip", "-6", "addr", "add", &host_v6, "dev", host_if, "nodad"]);
        run(&["ip", "link", "set", host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let mut full = vec!["ip", "netns", "exec", ns];
            full.extend_from_slice(args);
            run(&full);
        };
        in_ns(&["ip", "link", "set", "lo", "up"]);
        in_ns(&["ip", "addr", "add", &ns_v4, "dev", ns_if]);
        in_ns(&["ip", "-6", "addr", "add", &ns_v6, "dev", ns_if, "nodad"]);
        in_ns(&["ip", "link", "set", ns_if, "up"]);
        // Static neighbours: no ARP/ND round trip before the first datagram.
        let mac = topo.host_mac();
        in_ns(&[
            "ip",
            "neigh",
            "replace",
            &topo.v4(2),
            "lladdr",
            &mac,
            "dev",
            ns_if,
        ]);
        in_ns(&[
            "ip",
            "-6",
            "neigh",
            "replace",
            &topo.v6(2),
            "lladdr",
            &mac,
            "dev",
            ns_if,
        ]);
        topo
    }

    fn v4(&self, host: u8) -> String {
        format!("10.77.{}.{host}", self.subnet)
    }

    fn v6(&self, host: u8) -> String {
        format!("fd77:{}::{host}", self.subnet)
    }

    fn host_mac(&self) -> String {
        std::fs::read_to_string(format!("/sys/class/net/{}/address", self.host_if))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Runs the sender script inside the namespace with `payload` on stdin.
    fn send(&self, script: &Path, args: &[&str], payload: &[u8]) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3"])
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(payload).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "sender {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair; the explicit
        // delete covers a half-built topology.
        for args in [
            vec!["ip", "netns", "del", self.ns.as_str()],
            vec!["ip", "link", "del", self.host_if.as_str()],
        ] {
            let _ignored = Command::new(args[0])
                .args(&args[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Every row of every `sip_capture_*` table: Call-ID → (source, destination, proto, family).
async fn sip_rows(db: &DatabaseConnection) -> anyhow::Result<Vec<(String, [String; 6])>> {
    let backend = db.get_database_backend();
    let tables = db
        .query_all_raw(Statement::from_string(
            backend,
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'sip_capture_%'",
        ))
        .await?;
    let mut rows = Vec::new();
    for table in tables {
        let name: String = table.try_get("", "name")?;
        let sql = format!(
            "SELECT callid, source_ip, CAST(source_port AS TEXT) AS sp, destination_ip, \
             CAST(destination_port AS TEXT) AS dp, CAST(proto AS TEXT) AS proto, \
             CAST(family AS TEXT) AS family FROM {name}"
        );
        for row in db
            .query_all_raw(Statement::from_string(backend, sql))
            .await?
        {
            let text = |c: &str| row.try_get::<String>("", c);
            rows.push((
                text("callid")?,
                [
                    text("source_ip")?,
                    text("sp")?,
                    text("destination_ip")?,
                    text("dp")?,
                    text("proto")?,
                    text("family")?,
                ],
            ));
        }
    }
    Ok(rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_port_capture_on_a_veth_gives_one_row_per_sip_message() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "mirror_netns needs root (network namespaces, CAP_NET_RAW) and CI is set"
        );
        eprintln!("SKIPPED mirror_netns: needs root (network namespaces and CAP_NET_RAW)");
        return;
    }
    let topo = Topology::create();
    let sandbox = Sandbox::new().unwrap();
    let script = sandbox.path().join("send.py");
    std::fs::write(&script, SENDER).unwrap();
    let raw_interface = format!("raw_interface={}", topo.host_if);
    let mut up = sandbox
        .up(&[
            "--set",
            "raw_moni_capture_on=1",
            "--set",
            &raw_interface,
            "--set",
            "raw_socket_listen=0.0.0.0:5060-5090",
        ])
        .await
        .unwrap();

    let (ns_v4, host_v4) = (topo.v4(1), topo.v4(2));
    let (ns_v6, host_v6) = (topo.v6(1), topo.v6(2));
    // Outside the range on both ports: counted as port_filtered, no row. Sent first, so once
    // the in-range rows are there it has certainly been seen.
    topo.send(
        &script,
        &["udp", &ns_v4, "40000", &host_v4, "9999"],
        &request("OPTIONS", "mirror-filtered", 1, "f", None),
    );
    let mut expected: HashMap<String, [String; 6]> = HashMap::new();
    let row = |src: &str, sport: u16, dst: &str, dport: u16, family: u8| {
        [
            src.to_owned(),
            sport.to_string(),
            dst.to_owned(),
            dport.to_string(),
            "1".to_owned(),
            family.to_string(),
        ]
    };
    for i in 0..V4_MESSAGES {
        let call_id = format!("mirror-v4-{i}");
        topo.send(
            &script,
            &["udp", &ns_v4, "5070", &host_v4, "5060"],
            &request("OPTIONS", &call_id, 1, "t4", None),
        );
        expected.insert(call_id, row(&ns_v4, 5070, &host_v4, 5060, 2));
    }
    topo.send(
        &script,
        &["udp", &ns_v6, "5072", &host_v6, "5062"],
        &request("OPTIONS", "mirror-v6", 1, "t6", None),
    );
    expected.insert(
        "mirror-v6".to_owned(),
        row(&ns_v6, 5072, &host_v6, 5062, 10),
    );
    let mac = topo.host_mac();
    topo.send(
        &script,
        &[
            "vlan",
            &topo.ns_if,
            &mac,
            "100",
            &ns_v4,
            "5071",
            &host_v4,
            "5061",
        ],
        &request("OPTIONS", "mirror-vlan", 1, "tv", None),
    );
    expected.insert(
        "mirror-vlan".to_owned(),
        row(&ns_v4, 5071, &host_v4, 5061, 2),
    );

    let db = open_db(&up.db_url).await.unwrap();
    wait_until("one row per sip message", WAIT, || async {
        Ok(sip_rows(&db).await?.len() >= expected.len())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", up.process.log_text()));
    let counters = member_counters(up.grpc).await.unwrap();
    eprintln!("collector counters: {counters:?}");
    let rows = sip_rows(&db).await.unwrap();
    assert_eq!(rows.len(), expected.len(), "rows: {rows:?}");
    let got: HashMap<String, [String; 6]> = rows.into_iter().collect();
    assert_eq!(got, expected, "counters: {counters:?}");
    assert!(
        counters.get("dropped.port_filtered").copied().unwrap_or(0) >= 1,
        "the port-9999 datagram is counted: {counters:?}"
    );
    assert_eq!(
        counters.get("records_queued").copied().unwrap_or(0),
        u64::try_from(expected.len()).unwrap(),
        "{counters:?}"
    );
    // The capture thread checks the stop token between reads: SIGTERM stops everything cleanly.
    assert!(
        up.process.terminate(Duration::from_secs(20)).unwrap(),
        "sipcapture up exited with an error; log:\n{}",
        up.process.log_text()
    );
    assert!(up.process.log_text().contains("mirror capture stopped"));
    drop(topo);
}

/// Without CAP_NET_RAW the collector refuses to start and says which keys need it. As root the
/// test drops to uid/gid 65534 with no capabilities (`setpriv`); otherwise it already lacks them.
#[test]
fn without_cap_net_raw_start_up_fails_naming_the_key() {
    let collector = bin_path("sipcapture-collector").unwrap();
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
    let out = cmd
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--set",
            "raw_moni_capture_on=1",
            "--set",
            "raw_interface=lo",
        ])
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
    for needle in ["raw_moni_capture_on", "raw_interface", "CAP_NET_RAW"] {
        assert!(stderr.contains(needle), "{needle:?} missing from: {stderr}");
    }
}
