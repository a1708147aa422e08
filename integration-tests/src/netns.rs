//! Live-capture topologies: a network namespace joined to the host by a veth pair (removed on
//! drop, even when the test fails), commands run inside it, and a small Python sender that
//! writes SIP over UDP through the namespace's stack or as hand-built (VLAN-tagged) Ethernet
//! frames on its veth end. Every address lives only on the test's own veth pair and tunnels.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

/// The sender (stdin: the payload).
/// * `udp <src ip> <src port> <dst ip> <dst port> [count]`: datagrams through the namespace's IP
///   stack (the kernel fragments one larger than the MTU).
/// * `eth <ifname> <dst mac> <tags> <src ip> <src port> <dst ip> <dst port>`: one Ethernet frame
///   written on `ifname` with a packet socket; `tags` is `-` or a comma list of
///   `<tpid hex>:<vlan id>` outermost first (`88a8:200,8100:100`). IPv6 when the addresses are.
///   (This kernel may lack 8021q, so no VLAN device is needed.)
/// * `tun <ifname> <src ip> <src port> <dst ip> <dst port>`: one IPv4/IPv6 UDP packet written
///   into the persistent tun device `ifname` (run on the host, where the device is).
/// * `ipip <outer src> <outer dst> <outer option bytes> <src> <sport> <dst> <dport>`: an IPv4
///   UDP packet encapsulated in IPv4 protocol 4 (RFC 2003) as a tunnel end would send it, the
///   outer header built by hand (`IP_HDRINCL`) so it can carry options; for kernels without
///   IPIP tunnel devices.
pub const SENDER: &str = r#"
import ipaddress, socket, struct, sys
payload = sys.stdin.buffer.read()
mode = sys.argv[1]

def csum(data):
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s & 0xffff) + (s >> 16)
    s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff

if mode == "udp":
    src, sport, dst, dport = sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    count = int(sys.argv[6]) if len(sys.argv) > 6 else 1
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((src, sport))
    for _ in range(count):
        s.sendto(payload, (dst, dport))
elif mode in ("eth", "tun"):
    if mode == "eth":
        ifname, dst_mac, tags = sys.argv[2], bytes.fromhex(sys.argv[3].replace(":", "")), sys.argv[4]
        rest = sys.argv[5:]
    else:
        ifname, rest = sys.argv[2], sys.argv[3:]
    src, sport, dst, dport = rest[0], int(rest[1]), rest[2], int(rest[3])
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if ":" in dst:
        ethertype = 0x86DD
        ip = struct.pack("!IHBB", 0x60000000, len(udp), 17, 64) \
            + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
    else:
        ethertype = 0x0800
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    if mode == "tun":
        # Attach to the persistent tun device (TUNSETIFF, IFF_TUN | IFF_NO_PI) and write the
        # IP packet: the kernel receives it on that interface, with no link header.
        import fcntl, os
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", ifname.encode(), 0x0001 | 0x1000))
        os.write(fd, ip + udp)
        sys.exit(0)
    src_mac = bytes.fromhex(open(f"/sys/class/net/{ifname}/address").read().strip().replace(":", ""))
    tagged = b""
    if tags != "-":
        for tag in tags.split(","):
            tpid, vid = tag.split(":")
            tagged += struct.pack("!HH", int(tpid, 16), int(vid))
    frame = dst_mac + src_mac + tagged + struct.pack("!H", ethertype) + ip + udp
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((ifname, 0))
    s.send(frame)
elif mode == "ipip":
    osrc, odst, options = sys.argv[2], sys.argv[3], int(sys.argv[4])
    src, sport, dst, dport = sys.argv[5], int(sys.argv[6]), sys.argv[7], int(sys.argv[8])
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    inner = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0x4000, 64, 17, 0,
                        ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    inner = inner[:10] + struct.pack("!H", csum(inner)) + inner[12:] + udp
    # The outer header by hand (IP_HDRINCL), `options` bytes of NOP options (IHL > 5); the
    # kernel fills in the checksum.
    ihl = 5 + options // 4
    outer = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(inner), 0, 0x4000, 64, 4,
                        0, ipaddress.IPv4Address(osrc).packed, ipaddress.IPv4Address(odst).packed)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.sendto(outer + b"\x01" * options + inner, (odst, 0))
else:
    sys.exit("unknown mode " + mode)
"#;

/// Whether the tests run as root (namespaces and packet sockets need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Skips (returns false) with a message when not root, unless `CI` is set, where skipping
/// would hide a broken set-up: then it fails.
pub fn root_or_skip(test: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root (network namespaces, CAP_NET_RAW) and CI is set"
    );
    eprintln!("SKIPPED {test}: needs root (network namespaces and CAP_NET_RAW)");
    false
}

/// Runs a command; an error carries its output.
pub fn run(args: &[&str]) -> anyhow::Result<Output> {
    let (program, rest) = args.split_first().context("empty command")?;
    let out = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{args:?}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A namespace `rawsock-<pid>-<n>` joined to the host by a veth pair, with IPv4 and IPv6
/// addresses on both ends and static neighbours.
#[derive(Debug)]
pub struct Veth {
    /// The namespace.
    pub ns: String,
    /// The host end.
    pub host_if: String,
    /// The namespace end.
    pub ns_if: String,
    /// Second and third octets of the IPv4 /24 (and the IPv6 /64).
    net: (u8, u8),
    extra_links: Vec<String>,
}

impl Veth {
    /// Creates the topology.
    pub fn create() -> anyhow::Result<Self> {
        let pid = std::process::id() % 100_000;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let seed = pid.wrapping_mul(31).wrapping_add(n.wrapping_mul(7919));
        let topo = Veth {
            ns: format!("rawsock-{pid}-{n}"),
            host_if: format!("rsk{pid}x{n}a"),
            ns_if: format!("rsk{pid}x{n}b"),
            net: (
                u8::try_from(100 + seed % 100).unwrap_or(100),
                u8::try_from((seed / 100) % 250 + 1).unwrap_or(1),
            ),
            extra_links: Vec::new(),
        };
        if topo.host_if.len() > 15 {
            bail!("interface name {} is over 15 bytes", topo.host_if);
        }
        let (ns, host_if, ns_if) = (&topo.ns, &topo.host_if, &topo.ns_if);
        run(&["ip", "netns", "add", ns])?;
        run(&[
            "ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if,
        ])?;
        run(&["ip", "link", "set", ns_if, "netns", ns])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", topo.v4(2)),
            "dev",
            host_if,
        ])?;
        run(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{}/64", topo.v6(2)),
            "dev",
            host_if,
            "nodad",
        ])?;
        run(&["ip", "link", "set", host_if, "up"])?;
        topo.exec(&["ip", "link", "set", "lo", "up"])?;
        topo.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", topo.v4(1)),
            "dev",
            ns_if,
        ])?;
        topo.exec(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{}/64", topo.v6(1)),
            "dev",
            ns_if,
            "nodad",
        ])?;
        topo.exec(&["ip", "link", "set", ns_if, "up"])?;
        // Static neighbours: no ARP/ND round trip before the first datagram.
        let mac = topo.host_mac()?;
        topo.exec(&[
            "ip",
            "neigh",
            "replace",
            &topo.v4(2),
            "lladdr",
            &mac,
            "dev",
            ns_if,
        ])?;
        topo.exec(&[
            "ip",
            "-6",
            "neigh",
            "replace",
            &topo.v6(2),
            "lladdr",
            &mac,
            "dev",
            ns_if,
        ])?;
        Ok(topo)
    }

    /// `10.<a>.<b>.<host>`: .1 is the namespace end, .2 the host end.
    pub fn v4(&self, host: u8) -> String {
        format!("10.{}.{}.{host}", self.net.0, self.net.1)
    }

    /// `fd<a>:<b>::<host>`.
    pub fn v6(&self, host: u8) -> String {
        format!("fd{:02x}:{}::{host}", self.net.0, self.net.1)
    }

    /// A second /24 for tunnel inner addresses: `10.<a>.<b+1 mod 250>.<host>`... kept apart
    /// from the veth subnet.
    pub fn inner_v4(&self, host: u8) -> String {
        format!("10.{}.{}.{host}", self.net.0.wrapping_add(100), self.net.1)
    }

    /// The host end's MAC address.
    pub fn host_mac(&self) -> anyhow::Result<String> {
        Ok(
            std::fs::read_to_string(format!("/sys/class/net/{}/address", self.host_if))?
                .trim()
                .to_owned(),
        )
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut full = vec!["ip", "netns", "exec", self.ns.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Adds a host-side link (e.g. a tunnel device) that [`Drop`] removes.
    pub fn own_link(&mut self, name: &str) {
        self.extra_links.push(name.to_owned());
    }

    /// Runs [`SENDER`] (written to `script`) inside the namespace with `payload` on stdin.
    pub fn send(&self, script: &Path, args: &[&str], payload: &[u8]) -> anyhow::Result<()> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3"])
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("sender stdin")?
            .write_all(payload)?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("sender {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair; the explicit
        // deletes cover a half-built topology and host-side links.
        let mut commands = vec![vec!["ip", "netns", "del", self.ns.as_str()]];
        commands.push(vec!["ip", "link", "del", self.host_if.as_str()]);
        for link in &self.extra_links {
            commands.push(vec!["ip", "link", "del", link.as_str()]);
        }
        for args in commands {
            let _ignored = Command::new(args[0])
                .args(&args[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One `sip_capture_*` row, as the capture tests compare it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SipRow {
    /// `callid`.
    pub callid: String,
    /// `source_ip`.
    pub src: String,
    /// `source_port`.
    pub sport: u16,
    /// `destination_ip`.
    pub dst: String,
    /// `destination_port`.
    pub dport: u16,
    /// `proto` (Kamailio: 1 UDP, 2 TCP).
    pub proto: u8,
    /// `family` (2 IPv4, 10 IPv6).
    pub family: u8,
}

/// Every row of every `sip_capture_*` table of a SQLite database.
pub async fn sip_rows(db: &sea_orm::DatabaseConnection) -> anyhow::Result<Vec<SipRow>> {
    use sea_orm::{ConnectionTrait, Statement};
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
            "SELECT callid, source_ip, source_port, destination_ip, destination_port, proto, \
             family FROM {name}"
        );
        for row in db
            .query_all_raw(Statement::from_string(backend, sql))
            .await?
        {
            let number = |c: &str| -> anyhow::Result<i64> { Ok(row.try_get::<i64>("", c)?) };
            rows.push(SipRow {
                callid: row.try_get("", "callid")?,
                src: row.try_get("", "source_ip")?,
                sport: u16::try_from(number("source_port")?)?,
                dst: row.try_get("", "destination_ip")?,
                dport: u16::try_from(number("destination_port")?)?,
                proto: u8::try_from(number("proto")?)?,
                family: u8::try_from(number("family")?)?,
            });
        }
    }
    rows.sort();
    Ok(rows)
}
