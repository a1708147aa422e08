//! SCTP (RFC 9260): the common header and the DATA chunks of a packet. Each DATA chunk with
//! both the B (beginning) and E (ending) bits carries one whole user message; SIP over SCTP
//! (RFC 4168) sends one SIP message per user message; a fragmented one is put back together by
//! `flow/sctp.rs`.

use super::error::{PacketError, be16, be32, need};

/// The common header: ports, verification tag, checksum.
pub const SCTP_COMMON_HEADER_LEN: usize = 12;
/// Chunk type DATA.
pub const CHUNK_DATA: u8 = 0;
/// DATA chunk header: type, flags, length, TSN, stream id, stream sequence, PPID.
const DATA_HEADER_LEN: usize = 16;
/// DATA flags: ending fragment, beginning fragment, unordered.
pub const FLAG_E: u8 = 0x01;
/// Beginning fragment.
pub const FLAG_B: u8 = 0x02;

/// The SCTP common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SctpPacket<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The chunks.
    pub chunks: &'a [u8],
}

/// One DATA chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataChunk<'a> {
    /// Flags (U, B, E).
    pub flags: u8,
    /// Transmission sequence number.
    pub tsn: u32,
    /// Stream identifier.
    pub stream: u16,
    /// Payload protocol identifier.
    pub ppid: u32,
    /// The user data.
    pub data: &'a [u8],
}

impl DataChunk<'_> {
    /// Whether the chunk holds a whole user message (B and E set).
    pub fn is_whole(&self) -> bool {
        self.flags & (FLAG_B | FLAG_E) == FLAG_B | FLAG_E
    }
}

/// Decodes the common header.
pub fn from_slice(buf: &[u8]) -> Result<SctpPacket<'_>, PacketError> {
    let header = need(buf, "sctp", 0, SCTP_COMMON_HEADER_LEN)?;
    Ok(SctpPacket {
        src_port: be16(header, 0),
        dst_port: be16(header, 2),
        chunks: buf.get(SCTP_COMMON_HEADER_LEN..).unwrap_or_default(),
    })
}

/// Walks the chunks of a packet and returns its DATA chunks (other chunk types are skipped).
/// Offsets in errors count from the start of `chunks`.
pub fn data_chunks(chunks: &[u8]) -> Result<Vec<DataChunk<'_>>, PacketError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < chunks.len() {
        let header = need(chunks, "sctp_chunk", at, 4)?;
        let kind = header.first().copied().unwrap_or(0);
        let flags = header.get(1).copied().unwrap_or(0);
        let length = be16(header, 2);
        if usize::from(length) < 4 {
            return Err(PacketError::BadSctpChunk { offset: at, length });
        }
        let chunk = need(chunks, "sctp_chunk", at, usize::from(length))?;
        if kind == CHUNK_DATA {
            if chunk.len() < DATA_HEADER_LEN {
                return Err(PacketError::BadSctpChunk { offset: at, length });
            }
            out.push(DataChunk {
                flags,
                tsn: be32(chunk, 4),
                stream: be16(chunk, 8),
                ppid: be32(chunk, 12),
                data: chunk.get(DATA_HEADER_LEN..).unwrap_or_default(),
            });
        }
        // Chunks are padded to 4 bytes; the padding of the last one may be absent.
        at += usize::from(length).next_multiple_of(4);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn data(flags: u8, tsn: u32, payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(DATA_HEADER_LEN + payload.len()).unwrap();
        let mut c = vec![CHUNK_DATA, flags];
        c.extend_from_slice(&len.to_be_bytes());
        c.extend_from_slice(&tsn.to_be_bytes());
        c.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        c.extend_from_slice(payload);
        while c.len() % 4 != 0 {
            c.push(0);
        }
        c
    }

    #[test]
    fn data_chunks_after_other_chunks() {
        let mut chunks = vec![3, 0, 0, 8, 0, 0, 0, 0]; // SACK-like, skipped
        chunks.extend(data(FLAG_B | FLAG_E, 7, b"OPTIONS"));
        chunks.extend(data(FLAG_B, 8, b"INV"));
        let d = data_chunks(&chunks).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(
            (d[0].tsn, d[0].data, d[0].is_whole()),
            (7, &b"OPTIONS"[..], true)
        );
        assert!(!d[1].is_whole());
        assert_eq!(
            data_chunks(&[0, 3, 0, 2]),
            Err(PacketError::BadSctpChunk {
                offset: 0,
                length: 2
            })
        );
        let one = data(3, 1, b"abcd");
        for cut in 1..one.len() {
            assert_eq!(
                data_chunks(&one[..cut]).unwrap_err().reason(),
                "truncated",
                "{cut}"
            );
        }
    }
}
