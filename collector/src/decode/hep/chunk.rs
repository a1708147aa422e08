//! HEP3 chunks: the 6-byte chunk header and a non-allocating walk over a chunk area.
//!
//! Chunk header (HEP3 spec; Kamailio `hep.h` `hep_chunk_t`, packed): `u16 vendor_id`,
//! `u16 type_id`, `u16 length`, all big-endian; `length` includes the 6-byte header and the
//! value follows immediately.

use super::HepError;

/// Size of a chunk header: vendor id, type id and length, 2 bytes each.
pub const CHUNK_HEADER_LEN: usize = 6;

/// Vendor id 0: the generic chunks of the HEP3 spec. Kamailio skips every other vendor.
pub const GENERIC_VENDOR: u16 = 0;

/// Highest generic chunk type with a typed field in [`super::HepPacket`] (0x0013 node name).
pub const LAST_TYPED_CHUNK: u16 = 0x0013;

/// One HEP3 chunk, borrowing its value from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HepChunk<'a> {
    /// Vendor id (0 = generic, HEP3 spec).
    pub vendor_id: u16,
    /// Chunk type within the vendor.
    pub type_id: u16,
    /// The value (chunk length minus the 6-byte header).
    pub value: &'a [u8],
}

impl HepChunk<'_> {
    /// True when [`super::HepPacket`] has a typed field for this chunk: generic vendor and type
    /// 0x0001..=0x0013. Those chunks are not returned by `extra_chunks()`.
    pub fn is_typed(&self) -> bool {
        self.vendor_id == GENERIC_VENDOR && (1..=LAST_TYPED_CHUNK).contains(&self.type_id)
    }

    /// Total encoded size of this chunk (header + value).
    pub fn wire_len(&self) -> usize {
        CHUNK_HEADER_LEN.saturating_add(self.value.len())
    }
}

/// Reads the chunk at `offset` of `area`. `base` is the area's offset in the packet, used only
/// for error offsets. Returns the chunk and the offset of the next one.
///
/// Length rules follow Kamailio HEAD (`hep.c:parsing_hepv3_message`): reject when a chunk
/// header does not fit, when `length < 6`, or when the chunk runs past the declared end.
pub(crate) fn read_chunk(
    area: &[u8],
    offset: usize,
    base: usize,
) -> Result<(HepChunk<'_>, usize), HepError> {
    let header_end = offset.saturating_add(CHUNK_HEADER_LEN);
    let Some(&[v0, v1, t0, t1, l0, l1]) = area.get(offset..header_end) else {
        return Err(HepError::ChunkHeaderOverrun {
            offset: base.saturating_add(offset),
            remaining: area.len().saturating_sub(offset),
        });
    };
    let vendor_id = u16::from_be_bytes([v0, v1]);
    let type_id = u16::from_be_bytes([t0, t1]);
    let length = u16::from_be_bytes([l0, l1]);
    let length = usize::from(length);
    let end = offset.saturating_add(length);
    let value = match area.get(header_end..end) {
        Some(value) if length >= CHUNK_HEADER_LEN => value,
        _ => {
            return Err(HepError::BadChunkLength {
                offset: base.saturating_add(offset),
                length,
            });
        }
    };
    let chunk = HepChunk {
        vendor_id,
        type_id,
        value,
    };
    Ok((chunk, end))
}

/// Iterator over the chunks of a chunk area, in wire order. Ends at the end of the area or at
/// the first malformed chunk header (a decoded packet has none).
#[derive(Debug, Clone)]
pub struct HepChunks<'a> {
    area: &'a [u8],
    offset: usize,
}

impl<'a> HepChunks<'a> {
    /// Walks `area`, the bytes after the HEP3 control header up to the declared length.
    pub fn new(area: &'a [u8]) -> Self {
        HepChunks { area, offset: 0 }
    }
}

impl<'a> Iterator for HepChunks<'a> {
    type Item = HepChunk<'a>;

    fn next(&mut self) -> Option<HepChunk<'a>> {
        if self.offset >= self.area.len() {
            return None;
        }
        match read_chunk(self.area, self.offset, 0) {
            Ok((chunk, next)) => {
                self.offset = next;
                Some(chunk)
            }
            Err(_) => {
                self.offset = self.area.len();
                None
            }
        }
    }
}

impl std::iter::FusedIterator for HepChunks<'_> {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn walks_generic_and_vendor_chunks() {
        let area = [
            0, 0, 0, 1, 0, 7, 2, // family
            0, 9, 0, 0x20, 0, 8, 0xab, 0xcd, // vendor 9, type 0x20
        ];
        let chunks: Vec<_> = HepChunks::new(&area).collect();
        assert_eq!(chunks.len(), 2);
        assert!(chunks[0].is_typed());
        assert_eq!(
            chunks[1],
            HepChunk {
                vendor_id: 9,
                type_id: 0x20,
                value: &[0xab, 0xcd]
            }
        );
        assert!(!chunks[1].is_typed());
    }

    #[test]
    fn chunk_errors() {
        assert_eq!(
            read_chunk(&[0, 0, 0, 1, 0], 0, 6),
            Err(HepError::ChunkHeaderOverrun {
                offset: 6,
                remaining: 5
            })
        );
        assert_eq!(
            read_chunk(&[0, 0, 0, 1, 0, 5], 0, 6),
            Err(HepError::BadChunkLength {
                offset: 6,
                length: 5
            })
        );
        assert_eq!(
            read_chunk(&[0, 0, 0, 1, 0, 8, 1], 0, 6),
            Err(HepError::BadChunkLength {
                offset: 6,
                length: 8
            })
        );
        // The iterator stops at a malformed chunk.
        assert_eq!(HepChunks::new(&[0, 0, 0, 1, 0, 8, 1]).count(), 0);
    }
}
