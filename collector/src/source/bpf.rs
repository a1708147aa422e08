//! The kernel-side port filter of mirror capture (Kamailio `raw_moni_bpf_on`): a classic-BPF
//! program built from the `raw_socket_listen` port range and attached to the packet socket with
//! `SO_ATTACH_FILTER`, so frames outside the range never reach userspace.
//!
//! Kamailio patches the output of `tcpdump -dd "udp and portrange A-B"` (behaviour doc §5): IPv4
//! and extension-header-free IPv6 over untagged Ethernet, UDP only, and every IPv4 fragment
//! with a non-zero offset rejected. This program is generated here (no libpcap) and covers more:
//!
//! * untagged, 802.1Q / 802.1ad (0x8100, 0x88a8, 0x9100) and double-tagged (QinQ) frames. The
//!   kernel usually moves the outer tag of a received frame into packet metadata before a packet
//!   socket sees it, so a QinQ frame arrives with one tag in its bytes and a single-tagged frame
//!   with none: all three shapes are matched;
//! * IPv4 (any IHL) and IPv6; UDP, TCP and SCTP, whose ports sit at the same offsets of their
//!   headers; a frame is accepted when its source OR destination port lies in the inclusive
//!   range (Kamailio's userspace rule);
//! * fragments: an IPv4 fragment with a non-zero offset carries no ports, so it is **accepted**
//!   (the first fragment carries the ports and is checked), and every IPv6 packet with a Fragment
//!   header is accepted, so userspace reassembly gets all the pieces; userspace applies the port
//!   range again to the reassembled datagram;
//! * IPv6 packets that start with another extension header (hop-by-hop, routing, destination
//!   options, AH) and tunnels (IPIP 4, IPv6-in-IP 41, GRE 47, VXLAN on UDP destination port 4789)
//!   are accepted: their ports are not at a fixed offset or belong to the inner packet, which
//!   userspace decodes and filters;
//! * interfaces without a link header (tun, IPIP and GRE tunnel devices) get a program that
//!   starts at the IP header.
//!
//! Everything else (ARP, other transports, other ports) is rejected. A load beyond the end of
//! the frame makes the kernel reject it, so truncated frames are rejected too.
//!
//! The builder is pure and unit-tested by running the program in a small cBPF interpreter
//! against real and generated frames.

use std::ops::RangeInclusive;

/// One classic-BPF instruction (`struct sock_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode: class | size | mode, or class | op | source.
    pub code: u16,
    /// Relative jump when the condition holds.
    pub jt: u8,
    /// Relative jump when it does not.
    pub jf: u8,
    /// The constant operand.
    pub k: u32,
}

impl Insn {
    /// The socket2 form, for `Socket::attach_filter`.
    pub fn to_sock_filter(self) -> socket2::SockFilter {
        socket2::SockFilter::new(self.code, self.jt, self.jf, self.k)
    }
}

/// Opcode parts (linux/bpf_common.h, linux/filter.h).
pub mod op {
    /// Class: load into A.
    pub const LD: u16 = 0x00;
    /// Class: load into X.
    pub const LDX: u16 = 0x01;
    /// Class: arithmetic on A.
    pub const ALU: u16 = 0x04;
    /// Class: jump.
    pub const JMP: u16 = 0x05;
    /// Class: return.
    pub const RET: u16 = 0x06;
    /// Size: 32-bit word.
    pub const W: u16 = 0x00;
    /// Size: 16-bit half word.
    pub const H: u16 = 0x08;
    /// Size: byte.
    pub const B: u16 = 0x10;
    /// Mode: immediate.
    pub const IMM: u16 = 0x00;
    /// Mode: packet at absolute offset k.
    pub const ABS: u16 = 0x20;
    /// Mode: packet at offset X + k.
    pub const IND: u16 = 0x40;
    /// Mode (LDX B only): X = 4 * (P[k] & 0xf), the IPv4 header length.
    pub const MSH: u16 = 0xa0;
    /// ALU: right shift.
    pub const RSH: u16 = 0x70;
    /// ALU: bitwise and.
    pub const AND: u16 = 0x50;
    /// Jump: always (by k).
    pub const JA: u16 = 0x00;
    /// Jump: A == k.
    pub const JEQ: u16 = 0x10;
    /// Jump: A > k.
    pub const JGT: u16 = 0x20;
    /// Jump: A >= k.
    pub const JGE: u16 = 0x30;
    /// Jump: A & k != 0.
    pub const JSET: u16 = 0x40;
    /// Source: the constant k.
    pub const K: u16 = 0x00;
}

/// What a frame on the interface starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterLink {
    /// An Ethernet header (Ethernet, veth, bridges, bonds, `lo`).
    Ethernet,
    /// The IP header itself (tun, IPIP/GRE/SIT tunnel devices: no link header).
    RawIp,
}

/// Why no program was built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BpfError {
    /// A forward jump longer than the 8-bit offset allows (a generator bug).
    #[error("bpf jump of {distance} instructions at {at} does not fit in 8 bits")]
    JumpTooFar {
        /// Instruction index.
        at: usize,
        /// Distance.
        distance: usize,
    },
    /// A jump to a label that precedes the jump or was never placed (a generator bug).
    #[error("bpf jump at {at} to a label that is not ahead of it")]
    BadLabel {
        /// Instruction index.
        at: usize,
    },
}

/// The value a filter returns to accept a frame: the number of bytes to keep, i.e. all.
pub const ACCEPT: u32 = u32::MAX;
/// IANA protocol numbers the program knows.
const IPPROTO_TCP: u32 = 6;
const IPPROTO_UDP: u32 = 17;
const IPPROTO_SCTP: u32 = 132;
const TUNNEL_PROTOCOLS: [u32; 3] = [4, 41, 47];
/// IPv6 extension headers that precede the transport: hop-by-hop, routing, fragment,
/// destination options, AH.
const IPV6_EXTENSIONS: [u32; 5] = [0, 43, 44, 60, 51];
/// VXLAN's IANA UDP port (RFC 7348).
const VXLAN_PORT: u32 = 4789;
const ETHERTYPE_IPV4: u32 = 0x0800;
const ETHERTYPE_IPV6: u32 = 0x86dd;
const ETHERTYPE_VLAN: [u32; 3] = [0x8100, 0x88a8, 0x9100];

/// Builds the program accepting frames whose source OR destination port is in `ports`
/// (inclusive), plus fragments and tunnels (see the module doc).
pub fn port_range_program(
    link: FilterLink,
    ports: &RangeInclusive<u16>,
) -> Result<Vec<Insn>, BpfError> {
    let mut asm = Asm::default();
    let accept = asm.label();
    let reject = asm.label();
    match link {
        FilterLink::RawIp => {
            let (v4, v6) = (asm.label(), asm.label());
            asm.load(op::B | op::ABS, 0);
            asm.push(op::ALU | op::RSH | op::K, 4);
            asm.jeq(4, v4, Target::Next);
            asm.jeq(6, v6, reject);
            asm.mark(v4);
            ipv4(&mut asm, 0, ports, accept, reject);
            asm.mark(v6);
            ipv6(&mut asm, 0, ports, accept, reject);
        }
        FilterLink::Ethernet => {
            let bases = [14u32, 18, 22];
            let v4: Vec<Label> = bases.iter().map(|_| asm.label()).collect();
            let v6: Vec<Label> = bases.iter().map(|_| asm.label()).collect();
            let tags: Vec<Label> = bases.iter().map(|_| asm.label()).collect();
            for (i, base) in bases.iter().enumerate() {
                if let Some(tag) = tags.get(i) {
                    asm.mark(*tag);
                }
                // The ethertype (or the tag's inner type) just before `base`.
                asm.load(op::H | op::ABS, base - 2);
                if let Some(next_tag) = tags.get(i + 1) {
                    for vlan in ETHERTYPE_VLAN {
                        asm.jeq(vlan, *next_tag, Target::Next);
                    }
                }
                let (Some(v4), Some(v6)) = (v4.get(i), v6.get(i)) else {
                    continue;
                };
                asm.jeq(ETHERTYPE_IPV4, *v4, Target::Next);
                asm.jeq(ETHERTYPE_IPV6, *v6, reject);
            }
            for (i, base) in bases.iter().enumerate() {
                let (Some(v4), Some(v6)) = (v4.get(i), v6.get(i)) else {
                    continue;
                };
                asm.mark(*v4);
                ipv4(&mut asm, *base, ports, accept, reject);
                asm.mark(*v6);
                ipv6(&mut asm, *base, ports, accept, reject);
            }
        }
    }
    asm.mark(reject);
    asm.push(op::RET | op::K, 0);
    asm.mark(accept);
    asm.push(op::RET | op::K, ACCEPT);
    asm.finish()
}

/// The IPv4 header at `base`: transport → port check (ports at X + base, X = IHL * 4),
/// fragments with an offset and tunnels → accept, anything else → reject.
fn ipv4(asm: &mut Asm, base: u32, ports: &RangeInclusive<u16>, accept: Label, reject: Label) {
    let (udp, other_l4) = (asm.label(), asm.label());
    asm.load(op::B | op::ABS, base + 9);
    asm.jeq(IPPROTO_UDP, udp, Target::Next);
    asm.jeq(IPPROTO_TCP, other_l4, Target::Next);
    asm.jeq(IPPROTO_SCTP, other_l4, Target::Next);
    tunnels_or_reject(asm, &TUNNEL_PROTOCOLS, accept, reject);
    for (label, vxlan) in [(udp, true), (other_l4, false)] {
        asm.mark(label);
        // Flags + fragment offset: a non-zero offset means no transport header here.
        asm.load(op::H | op::ABS, base + 6);
        asm.jset(0x1fff, accept, Target::Next);
        asm.push(op::LDX | op::B | op::MSH, base);
        port_check(asm, op::IND, base, ports, vxlan, accept, reject);
    }
}

/// The IPv6 header at `base`: UDP/TCP/SCTP right after it → port check (ports at base + 40),
/// extension headers and tunnels → accept, anything else → reject.
fn ipv6(asm: &mut Asm, base: u32, ports: &RangeInclusive<u16>, accept: Label, reject: Label) {
    let (udp, other_l4) = (asm.label(), asm.label());
    asm.load(op::B | op::ABS, base + 6);
    asm.jeq(IPPROTO_UDP, udp, Target::Next);
    asm.jeq(IPPROTO_TCP, other_l4, Target::Next);
    asm.jeq(IPPROTO_SCTP, other_l4, Target::Next);
    let mut pass: Vec<u32> = IPV6_EXTENSIONS.to_vec();
    pass.extend(TUNNEL_PROTOCOLS);
    tunnels_or_reject(asm, &pass, accept, reject);
    for (label, vxlan) in [(udp, true), (other_l4, false)] {
        asm.mark(label);
        port_check(asm, op::ABS, base + 40, ports, vxlan, accept, reject);
    }
}

/// A holds a protocol number: one of `pass` → accept, else → reject.
fn tunnels_or_reject(asm: &mut Asm, pass: &[u32], accept: Label, reject: Label) {
    let last = pass.len().saturating_sub(1);
    for (i, proto) in pass.iter().enumerate() {
        let otherwise = if i == last {
            Target::Label(reject)
        } else {
            Target::Next
        };
        asm.jeq(*proto, accept, otherwise);
    }
    if pass.is_empty() {
        asm.ja(reject);
    }
}

/// Source port at `offset` (mode ABS, or IND: X + offset), destination port 2 bytes later:
/// either in `ports` → accept; with `vxlan`, destination port 4789 → accept; else → reject.
fn port_check(
    asm: &mut Asm,
    mode: u16,
    offset: u32,
    ports: &RangeInclusive<u16>,
    vxlan: bool,
    accept: Label,
    reject: Label,
) {
    let (lo, hi) = (u32::from(*ports.start()), u32::from(*ports.end()));
    let (dst, src_ge) = (asm.label(), asm.label());
    asm.load(op::H | mode, offset);
    asm.jge(lo, src_ge, dst);
    asm.mark(src_ge);
    asm.jgt(hi, dst, accept);
    asm.mark(dst);
    asm.load(op::H | mode, offset + 2);
    if vxlan {
        asm.jeq(VXLAN_PORT, accept, Target::Next);
    }
    let dst_ge = asm.label();
    asm.jge(lo, dst_ge, reject);
    asm.mark(dst_ge);
    asm.jgt(hi, reject, accept);
}

/// A forward label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Label(usize);

/// Where a conditional jump goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The next instruction.
    Next,
    /// A label ahead.
    Label(Label),
}

impl From<Label> for Target {
    fn from(label: Label) -> Self {
        Target::Label(label)
    }
}

/// A tiny assembler: instructions with symbolic forward jumps, resolved by [`Asm::finish`].
#[derive(Debug, Default)]
struct Asm {
    code: Vec<(u16, Target, Target, u32)>,
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    fn mark(&mut self, label: Label) {
        if let Some(slot) = self.labels.get_mut(label.0) {
            *slot = Some(self.code.len());
        }
    }

    fn push(&mut self, code: u16, k: u32) {
        self.code.push((code, Target::Next, Target::Next, k));
    }

    fn load(&mut self, size_mode: u16, k: u32) {
        self.push(op::LD | size_mode, k);
    }

    fn jump(&mut self, op: u16, k: u32, jt: impl Into<Target>, jf: impl Into<Target>) {
        self.code
            .push((op::JMP | op | op::K, jt.into(), jf.into(), k));
    }

    fn jeq(&mut self, k: u32, jt: impl Into<Target>, jf: impl Into<Target>) {
        self.jump(op::JEQ, k, jt, jf);
    }

    fn jgt(&mut self, k: u32, jt: impl Into<Target>, jf: impl Into<Target>) {
        self.jump(op::JGT, k, jt, jf);
    }

    fn jge(&mut self, k: u32, jt: impl Into<Target>, jf: impl Into<Target>) {
        self.jump(op::JGE, k, jt, jf);
    }

    fn jset(&mut self, k: u32, jt: impl Into<Target>, jf: impl Into<Target>) {
        self.jump(op::JSET, k, jt, jf);
    }

    /// An unconditional jump, encoded as `jeq` with both branches to `to` (k is unused).
    fn ja(&mut self, to: Label) {
        self.jump(op::JEQ, 0, to, to);
    }

    fn finish(self) -> Result<Vec<Insn>, BpfError> {
        let offset = |at: usize, target: Target| -> Result<u8, BpfError> {
            let Target::Label(label) = target else {
                return Ok(0);
            };
            let Some(Some(to)) = self.labels.get(label.0) else {
                return Err(BpfError::BadLabel { at });
            };
            let distance = to.checked_sub(at + 1).ok_or(BpfError::BadLabel { at })?;
            u8::try_from(distance).map_err(|_| BpfError::JumpTooFar { at, distance })
        };
        self.code
            .iter()
            .enumerate()
            .map(|(at, (code, jt, jf, k))| {
                Ok(Insn {
                    code: *code,
                    jt: offset(at, *jt)?,
                    jf: offset(at, *jf)?,
                    k: *k,
                })
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A minimal classic-BPF interpreter with the kernel's semantics for what the generator
    /// emits: a load past the end of the packet returns 0 (reject); unknown opcodes panic.
    fn run(program: &[Insn], packet: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let load = |at: u32, size: u16| -> Option<u32> {
            let at = at as usize;
            let n = match size {
                op::W => 4,
                op::H => 2,
                op::B => 1,
                other => panic!("size {other:#x}"),
            };
            let bytes = packet.get(at..at.checked_add(n)?)?;
            Some(bytes.iter().fold(0u32, |v, b| (v << 8) | u32::from(*b)))
        };
        loop {
            let insn = program[pc];
            pc += 1;
            let class = insn.code & 0x07;
            let size = insn.code & 0x18;
            let mode = insn.code & 0xe0;
            match class {
                op::LD => {
                    let at = match mode {
                        op::ABS => insn.k,
                        op::IND => x.wrapping_add(insn.k),
                        op::IMM => {
                            a = insn.k;
                            continue;
                        }
                        other => panic!("ld mode {other:#x}"),
                    };
                    match load(at, size) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                op::LDX => match (mode, size) {
                    (op::MSH, op::B) => match load(insn.k, op::B) {
                        Some(v) => x = 4 * (v & 0xf),
                        None => return 0,
                    },
                    (op::IMM, _) => x = insn.k,
                    other => panic!("ldx {other:?}"),
                },
                op::ALU => match insn.code & 0xf0 {
                    op::RSH => a >>= insn.k,
                    op::AND => a &= insn.k,
                    other => panic!("alu {other:#x}"),
                },
                op::JMP => {
                    let taken = match insn.code & 0xf0 {
                        op::JA => {
                            pc += insn.k as usize;
                            continue;
                        }
                        op::JEQ => a == insn.k,
                        op::JGT => a > insn.k,
                        op::JGE => a >= insn.k,
                        op::JSET => a & insn.k != 0,
                        other => panic!("jmp {other:#x}"),
                    };
                    pc += usize::from(if taken { insn.jt } else { insn.jf });
                }
                op::RET => return insn.k,
                other => panic!("class {other:#x}"),
            }
        }
    }

    fn accepts(program: &[Insn], frame: &[u8]) -> bool {
        run(program, frame) != 0
    }

    /// The checks the kernel's `bpf_check_classic` makes, for the subset we emit.
    fn assert_kernel_valid(program: &[Insn]) {
        assert!(!program.is_empty() && program.len() <= 4096);
        for (pc, insn) in program.iter().enumerate() {
            if insn.code & 0x07 == op::JMP {
                assert!(pc + 1 + usize::from(insn.jt) < program.len(), "jt at {pc}");
                assert!(pc + 1 + usize::from(insn.jf) < program.len(), "jf at {pc}");
            }
        }
        assert_eq!(program.last().unwrap().code & 0x07, op::RET);
    }

    /// Builds frames: Ethernet + tags + IPv4/IPv6 + transport ports + payload.
    #[derive(Debug, Clone)]
    struct Frame {
        tags: Vec<u16>,
        v6: bool,
        protocol: u8,
        ihl: u8,
        frag_offset: u16,
        more_fragments: bool,
        sport: u16,
        dport: u16,
    }

    impl Frame {
        fn udp4(sport: u16, dport: u16) -> Self {
            Frame {
                tags: Vec::new(),
                v6: false,
                protocol: 17,
                ihl: 5,
                frag_offset: 0,
                more_fragments: false,
                sport,
                dport,
            }
        }

        fn ip(&self) -> Vec<u8> {
            let mut l4 = Vec::new();
            l4.extend_from_slice(&self.sport.to_be_bytes());
            l4.extend_from_slice(&self.dport.to_be_bytes());
            l4.extend_from_slice(&[0, 20, 0, 0]);
            l4.extend_from_slice(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n");
            let mut ip = Vec::new();
            if self.v6 {
                ip.extend_from_slice(&[0x60, 0, 0, 0]);
                ip.extend_from_slice(&(l4.len() as u16).to_be_bytes());
                ip.extend_from_slice(&[self.protocol, 64]);
                ip.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
                ip.extend_from_slice(&[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            } else {
                let header_len = usize::from(self.ihl) * 4;
                let flags = self.frag_offset | if self.more_fragments { 0x2000 } else { 0 };
                ip.push(0x40 | self.ihl);
                ip.push(0);
                ip.extend_from_slice(&((header_len + l4.len()) as u16).to_be_bytes());
                ip.extend_from_slice(&[0, 1]);
                ip.extend_from_slice(&flags.to_be_bytes());
                ip.extend_from_slice(&[64, self.protocol, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
                ip.resize(header_len, 1); // options (NOPs)
            }
            ip.extend_from_slice(&l4);
            ip
        }

        fn ethernet(&self) -> Vec<u8> {
            let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
            for (i, tag) in self.tags.iter().enumerate() {
                f.extend_from_slice(&tag.to_be_bytes());
                f.extend_from_slice(&(100 + i as u16).to_be_bytes());
            }
            f.extend_from_slice(&if self.v6 { 0x86ddu16 } else { 0x0800 }.to_be_bytes());
            f.extend_from_slice(&self.ip());
            f
        }

        /// What the filter must answer, written independently of the generator.
        fn expected(&self, ports: &RangeInclusive<u16>) -> bool {
            if self.tags.len() > 2 {
                return false;
            }
            let in_range = ports.contains(&self.sport) || ports.contains(&self.dport);
            let has_ports = matches!(self.protocol, 6 | 17 | 132);
            if self.v6 {
                return match self.protocol {
                    0 | 43 | 44 | 60 | 51 | 4 | 41 | 47 => true,
                    17 => in_range || self.dport == 4789,
                    _ => has_ports && in_range,
                };
            }
            match self.protocol {
                4 | 41 | 47 => true,
                _ if !has_ports => false,
                _ if self.frag_offset != 0 => true,
                17 => in_range || self.dport == 4789,
                _ => in_range,
            }
        }
    }

    const RANGE: RangeInclusive<u16> = 5060..=5090;

    fn ethernet_program() -> Vec<Insn> {
        port_range_program(FilterLink::Ethernet, &RANGE).unwrap()
    }

    #[test]
    fn programs_are_valid_for_the_kernel_checker() {
        for link in [FilterLink::Ethernet, FilterLink::RawIp] {
            for range in [1..=65535, 5060..=5060, 5060..=5090, 1..=1, 65535..=65535] {
                let program = port_range_program(link, &range).unwrap();
                assert_kernel_valid(&program);
                assert!(program.len() < 256, "{} instructions", program.len());
            }
        }
    }

    #[test]
    fn port_range_is_source_or_destination_inclusive() {
        let p = ethernet_program();
        for (sport, dport, want) in [
            (5060, 40000, true),
            (40000, 5090, true),
            (5075, 5075, true),
            (5059, 5091, false),
            (40000, 40001, false),
            (5090, 5059, true),
            (4789, 40000, false), // VXLAN is a destination port
            (40000, 4789, true),
        ] {
            let f = Frame::udp4(sport, dport);
            assert_eq!(accepts(&p, &f.ethernet()), want, "{sport}->{dport}");
            let tcp = Frame { protocol: 6, ..f };
            // VXLAN runs over UDP only.
            let want_tcp = RANGE.contains(&sport) || RANGE.contains(&dport);
            assert_eq!(
                accepts(&p, &tcp.ethernet()),
                want_tcp,
                "tcp {sport}->{dport}"
            );
        }
    }

    #[test]
    fn vlan_tags_ipv6_options_and_fragments() {
        let p = ethernet_program();
        let base = Frame::udp4(5070, 40000);
        let out = Frame::udp4(40000, 40001);
        for tags in [vec![0x8100], vec![0x88a8, 0x8100], vec![0x9100, 0x8100]] {
            let f = Frame {
                tags: tags.clone(),
                ..base.clone()
            };
            assert!(accepts(&p, &f.ethernet()), "{tags:x?}");
            let f6 = Frame { v6: true, ..f };
            assert!(accepts(&p, &f6.ethernet()), "v6 {tags:x?}");
            let o = Frame {
                tags: tags.clone(),
                ..out.clone()
            };
            assert!(!accepts(&p, &o.ethernet()), "out of range {tags:x?}");
        }
        // Three tags: beyond what the program walks.
        let deep = Frame {
            tags: vec![0x88a8, 0x8100, 0x8100],
            ..base.clone()
        };
        assert!(!accepts(&p, &deep.ethernet()));
        // IPv4 options move the ports.
        let opts = Frame {
            ihl: 15,
            ..base.clone()
        };
        assert!(accepts(&p, &opts.ethernet()));
        let opts_out = Frame {
            ihl: 15,
            ..out.clone()
        };
        assert!(!accepts(&p, &opts_out.ethernet()));
        // A later fragment has no ports and passes; a first fragment is checked.
        let later = Frame {
            frag_offset: 185,
            ..out.clone()
        };
        assert!(accepts(&p, &later.ethernet()));
        let first_out = Frame {
            more_fragments: true,
            ..out.clone()
        };
        assert!(!accepts(&p, &first_out.ethernet()));
        // IPv6 fragment header, tunnels; ICMP and ARP are rejected.
        for proto in [44, 0, 4, 41, 47] {
            let f = Frame {
                v6: true,
                protocol: proto,
                ..out.clone()
            };
            assert!(accepts(&p, &f.ethernet()), "v6 next header {proto}");
        }
        let icmp = Frame {
            protocol: 1,
            ..base.clone()
        };
        assert!(!accepts(&p, &icmp.ethernet()));
        let mut arp = base.ethernet();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(!accepts(&p, &arp));
        // Truncated in the ports: rejected, as the kernel does.
        let full = base.ethernet();
        assert!(!accepts(&p, &full[..14 + 20 + 1]));
    }

    #[test]
    fn raw_ip_links_start_at_the_ip_header() {
        let p = port_range_program(FilterLink::RawIp, &RANGE).unwrap();
        let f = Frame::udp4(5070, 40000);
        assert!(accepts(&p, &f.ip()));
        assert!(accepts(
            &p,
            &Frame {
                v6: true,
                ..f.clone()
            }
            .ip()
        ));
        assert!(!accepts(&p, &Frame::udp4(1, 2).ip()));
        // An Ethernet frame on a raw-IP program starts with a MAC, not version 4/6.
        assert!(!accepts(&p, &f.ethernet()));
    }

    fn pcap_frames(file: &[u8]) -> Vec<&[u8]> {
        let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
        assert_eq!(u32_at(20), 1, "ethernet pcap");
        let (mut frames, mut at) = (Vec::new(), 24);
        while at < file.len() {
            let caplen = u32_at(at + 8) as usize;
            frames.push(&file[at + 16..at + 16 + caplen]);
            at += 16 + caplen;
        }
        frames
    }

    /// The generated corpus captures (sipp 5090 ↔ 5091): all frames pass a range holding
    /// either port, none passes a range holding neither, except fragments without ports.
    #[test]
    fn real_captures() {
        let files: [(&str, &[u8], usize); 6] = [
            (
                "lo",
                include_bytes!("../../testdata/raw/gen_sip_udp_lo.pcap"),
                0,
            ),
            (
                "vlan100",
                include_bytes!("../../testdata/raw/gen_sip_udp_vlan100.pcap"),
                0,
            ),
            (
                "qinq",
                include_bytes!("../../testdata/raw/gen_sip_udp_qinq.pcap"),
                0,
            ),
            (
                "ipv6",
                include_bytes!("../../testdata/raw/gen_sip_udp_ipv6.pcap"),
                0,
            ),
            // 3 INVITEs in 3 fragments: 6 later fragments carry no ports.
            (
                "v4 fragments",
                include_bytes!("../../testdata/raw/gen_sip_udp_ipv4_fragmented.pcap"),
                6,
            ),
            // Every piece of an IPv6 fragmented datagram has a Fragment header.
            (
                "v6 fragments",
                include_bytes!("../../testdata/raw/gen_sip_udp_ipv6_fragmented.pcap"),
                9,
            ),
        ];
        let hit = port_range_program(FilterLink::Ethernet, &(5091..=5091)).unwrap();
        let hit_wide = port_range_program(FilterLink::Ethernet, &(5000..=6000)).unwrap();
        let miss = port_range_program(FilterLink::Ethernet, &(5060..=5089)).unwrap();
        for (name, file, portless) in files {
            let frames = pcap_frames(file);
            assert!(frames.len() >= 18, "{name}");
            for (i, frame) in frames.iter().enumerate() {
                assert!(accepts(&hit, frame), "{name} frame {i}");
                assert!(accepts(&hit_wide, frame), "{name} frame {i}");
            }
            let passed = frames.iter().filter(|f| accepts(&miss, f)).count();
            assert_eq!(
                passed, portless,
                "{name}: frames passing a range without 5090/5091"
            );
        }
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        (
            prop::collection::vec(prop::sample::select(vec![0x8100u16, 0x88a8, 0x9100]), 0..=3),
            any::<bool>(),
            prop::sample::select(vec![17u8, 6, 132, 1, 4, 41, 47, 44, 0, 43, 60, 51, 58, 2]),
            5u8..=15,
            prop_oneof![Just(0u16), 1u16..0x1fff],
            any::<bool>(),
            prop_oneof![5050u16..5100, any::<u16>(), Just(4789)],
            prop_oneof![5050u16..5100, any::<u16>(), Just(4789)],
        )
            .prop_map(
                |(tags, v6, protocol, ihl, frag_offset, mf, sport, dport)| Frame {
                    tags,
                    v6,
                    protocol,
                    ihl,
                    frag_offset,
                    more_fragments: mf,
                    sport,
                    dport,
                },
            )
    }

    proptest! {
        #[test]
        fn program_agrees_with_the_reference(
            frame in arb_frame(),
            lo in 1u16..=65535,
            len in 0u16..200,
        ) {
            let range = lo..=lo.saturating_add(len);
            let eth = port_range_program(FilterLink::Ethernet, &range).unwrap();
            prop_assert_eq!(accepts(&eth, &frame.ethernet()), frame.expected(&range));
            if frame.tags.is_empty() {
                let raw = port_range_program(FilterLink::RawIp, &range).unwrap();
                prop_assert_eq!(accepts(&raw, &frame.ip()), frame.expected(&range));
            }
        }
    }
}
