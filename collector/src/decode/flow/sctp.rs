//! SCTP user-message reassembly (RFC 9260 §6.9): DATA chunks ([`crate::decode::sctp`]) of one
//! stream whose user message was fragmented are put back together.

use crate::decode::error::PacketError;
use crate::decode::sctp::{DataChunk, FLAG_B, FLAG_E};

/// Identifies the stream a fragmented user message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SctpStreamKey {
    /// Sender.
    pub src: std::net::SocketAddr,
    /// Receiver.
    pub dst: std::net::SocketAddr,
    /// SCTP stream identifier.
    pub stream: u16,
}

#[derive(Debug)]
struct Partial {
    next_tsn: u32,
    data: Vec<u8>,
    started: std::time::SystemTime,
}

/// What a DATA chunk did to its user message.
#[derive(Debug, PartialEq, Eq)]
pub enum SctpReassembly<'a> {
    /// The chunk holds a whole message.
    Whole(&'a [u8]),
    /// The last fragment: the whole message.
    Complete(Vec<u8>),
    /// Kept, waiting for the next fragment.
    Stored,
}

/// Reassembles user messages fragmented over several DATA chunks (RFC 9260 §6.9): B, middle
/// and E fragments of one stream carry consecutive TSNs. Bounded in messages and bytes; a
/// fragment out of sequence discards the message being assembled.
#[derive(Debug)]
pub struct SctpReassembler {
    partial: std::collections::HashMap<SctpStreamKey, Partial>,
    max_messages: usize,
    max_message: usize,
    timeout: std::time::Duration,
}

impl SctpReassembler {
    /// A reassembler with these limits.
    pub fn new(max_messages: usize, max_message: usize, timeout: std::time::Duration) -> Self {
        SctpReassembler {
            partial: std::collections::HashMap::new(),
            max_messages,
            max_message,
            timeout,
        }
    }

    /// Messages being assembled.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Handles one DATA chunk of `key`'s stream.
    pub fn chunk<'a>(
        &mut self,
        key: SctpStreamKey,
        chunk: &DataChunk<'a>,
        ts: std::time::SystemTime,
    ) -> Result<SctpReassembly<'a>, PacketError> {
        if chunk.is_whole() {
            return Ok(SctpReassembly::Whole(chunk.data));
        }
        let overflow = PacketError::ReassemblyOverflow {
            layer: "sctp",
            limit: self.max_message,
        };
        if chunk.flags & FLAG_B != 0 {
            if !self.partial.contains_key(&key) && self.partial.len() >= self.max_messages {
                return Err(PacketError::ReassemblyOverflow {
                    layer: "sctp",
                    limit: self.max_messages,
                });
            }
            if chunk.data.len() > self.max_message {
                self.partial.remove(&key);
                return Err(overflow);
            }
            self.partial.insert(
                key,
                Partial {
                    next_tsn: chunk.tsn.wrapping_add(1),
                    data: chunk.data.to_vec(),
                    started: ts,
                },
            );
            return Ok(SctpReassembly::Stored);
        }
        let Some(p) = self.partial.get_mut(&key) else {
            return Err(PacketError::StreamFraming {
                what: "sctp fragment without its first fragment",
            });
        };
        if chunk.tsn != p.next_tsn {
            self.partial.remove(&key);
            return Err(PacketError::StreamFraming {
                what: "sctp fragment out of sequence",
            });
        }
        if p.data.len() + chunk.data.len() > self.max_message {
            self.partial.remove(&key);
            return Err(overflow);
        }
        p.data.extend_from_slice(chunk.data);
        p.next_tsn = chunk.tsn.wrapping_add(1);
        if chunk.flags & FLAG_E == 0 {
            return Ok(SctpReassembly::Stored);
        }
        let data = self
            .partial
            .remove(&key)
            .map(|p| p.data)
            .unwrap_or_default();
        Ok(SctpReassembly::Complete(data))
    }

    /// Discards messages started longer ago than the timeout; returns how many.
    pub fn expire(&mut self, now: std::time::SystemTime) -> usize {
        let before = self.partial.len();
        let timeout = self.timeout;
        self.partial
            .retain(|_, p| now.duration_since(p.started).unwrap_or_default() < timeout);
        before - self.partial.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fragmented_messages_reassemble() {
        let key = SctpStreamKey {
            src: "10.0.0.1:5060".parse().unwrap(),
            dst: "10.0.0.2:5060".parse().unwrap(),
            stream: 1,
        };
        let t0 = std::time::SystemTime::UNIX_EPOCH;
        let chunk = |flags, tsn, data| DataChunk {
            flags,
            tsn,
            stream: 1,
            ppid: 0,
            data,
        };
        let mut r = SctpReassembler::new(4, 100, std::time::Duration::from_secs(5));
        assert_eq!(
            r.chunk(key, &chunk(FLAG_B | FLAG_E, 1, b"whole"), t0),
            Ok(SctpReassembly::Whole(b"whole"))
        );
        assert_eq!(
            r.chunk(key, &chunk(FLAG_B, 2, b"ab"), t0),
            Ok(SctpReassembly::Stored)
        );
        assert_eq!(
            r.chunk(key, &chunk(0, 3, b"cd"), t0),
            Ok(SctpReassembly::Stored)
        );
        assert_eq!(
            r.chunk(key, &chunk(FLAG_E, 4, b"ef"), t0),
            Ok(SctpReassembly::Complete(b"abcdef".to_vec()))
        );
        // A gap discards; an orphan end is an error; the timeout discards.
        r.chunk(key, &chunk(FLAG_B, 10, b"ab"), t0).unwrap();
        assert!(r.chunk(key, &chunk(FLAG_E, 12, b"ef"), t0).is_err());
        assert!(r.chunk(key, &chunk(FLAG_E, 13, b"ef"), t0).is_err());
        r.chunk(key, &chunk(FLAG_B, 20, b"ab"), t0).unwrap();
        assert_eq!(r.expire(t0 + std::time::Duration::from_secs(5)), 1);
        assert_eq!(r.pending(), 0);
    }
}
