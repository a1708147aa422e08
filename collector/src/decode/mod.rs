//! Pure, synchronous, zero-copy decoders: bytes in, borrowed views out. No tokio here.
//!
//! Raw capture: [`ethernet`] (VLAN, SLL), [`tunnel`] (PPPoE, GRE/ERSPAN, VXLAN), [`ip`], [`udp`],
//! [`tcp`], [`sctp`] and [`websocket`] framing, with [`frame`] (the link types) and [`error`]
//! (the errors they share). HEP: [`hep`]. What needs state across frames (defragmentation, TCP
//! and SCTP reassembly, SIP framing on streams, and the frame walk that owns that state) is in
//! [`flow`], which imports the decoders here; nothing here imports [`flow`].

pub mod error;
pub mod ethernet;
pub mod flow;
pub mod frame;
pub mod hep;
pub mod ip;
pub mod sctp;
pub mod tcp;
pub mod tunnel;
pub mod udp;
pub mod websocket;

/// Helpers shared by the decoders' unit tests.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
pub(crate) mod test_support {
    /// Minimal classic-pcap reader (little-endian, microseconds: what the test captures are):
    /// the link type and the frames.
    pub(crate) fn pcap_frames(file: &[u8]) -> (u32, Vec<&[u8]>) {
        assert_eq!(
            &file[..4],
            &[0xd4, 0xc3, 0xb2, 0xa1],
            "little-endian usec pcap"
        );
        let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
        let link = u32_at(20);
        let mut frames = Vec::new();
        let mut at = 24;
        while at < file.len() {
            let caplen = u32_at(at + 8) as usize;
            frames.push(&file[at + 16..at + 16 + caplen]);
            at += 16 + caplen;
        }
        (link, frames)
    }
}
