//! The errors of the HEP codec: data, with the layer, offset and lengths, so tests assert the
//! exact variant; [`HepError::reason`] is the drop-reason label.

/// Why a buffer is not a (complete) HEP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HepError {
    /// The buffer ends before a structure that must be there: `required` bytes were needed
    /// from the packet start, the buffer has `actual`.
    #[error("{layer}: truncated at offset {offset}: need {required} bytes, have {actual}")]
    Truncated {
        /// Which structure was cut (`"hep"`, `"hep_v1v2_header"`, `"hep_v3_header"`, ...).
        layer: &'static str,
        /// Offset of that structure from the packet start.
        offset: usize,
        /// Bytes needed from the packet start.
        required: usize,
        /// Bytes available.
        actual: usize,
    },
    /// The first bytes are not `0x01`, `0x02`, `"HEP3"` or `"EEP1"`.
    #[error("not a HEP packet (bad magic/version)")]
    BadMagic,
    /// v1/v2 `hp_f` is neither AF_INET (2) nor AF_INET6 (10) (Kamailio: "unsupported family").
    #[error("unsupported HEP v1/v2 address family {0}")]
    UnsupportedFamily(u8),
    /// v3 declared total length is below the 6-byte control header.
    #[error("HEP3 declared total length {declared} is below 6")]
    BadTotalLength {
        /// The length in the control header.
        declared: usize,
    },
    /// A v3 chunk length is below 6 or runs past the declared total length.
    #[error("HEP3 chunk at offset {offset} has bad length {length}")]
    BadChunkLength {
        /// Chunk offset from the packet start.
        offset: usize,
        /// The chunk's declared length (header included).
        length: usize,
    },
    /// Fewer than 6 bytes remain before the declared total length, so a chunk header does not
    /// fit (Kamailio HEAD rejects the packet).
    #[error("HEP3 chunk header at offset {offset} does not fit in the {remaining} remaining bytes")]
    ChunkHeaderOverrun {
        /// Offset of the would-be chunk header from the packet start.
        offset: usize,
        /// Bytes left before the declared end.
        remaining: usize,
    },
    /// Generic (vendor 0) chunk type 0: Kamailio rejects the whole packet.
    #[error("HEP3 generic chunk type 0 at offset {offset}")]
    ChunkTypeZero {
        /// Chunk offset from the packet start.
        offset: usize,
    },
    /// A fixed-size generic chunk has the wrong value size (e.g. IPv4 not 4 bytes).
    #[error("HEP3 chunk type {type_id:#06x} has a {length}-byte value of the wrong size")]
    BadChunkValue {
        /// The chunk type.
        type_id: u16,
        /// The value length (chunk length minus 6).
        length: usize,
    },
    /// Inflating a compressed payload would exceed the cap.
    #[error("inflated payload exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The cap given to [`super::HepPayload::inflate`].
        limit: usize,
    },
    /// The compressed payload is not valid gzip/zlib/deflate.
    #[error("compressed payload does not inflate")]
    BadCompressedPayload,
    /// TCP framing: the declared HEP3 frame length exceeds the configured maximum.
    #[error("HEP3 frame of {declared} bytes exceeds the {limit}-byte limit")]
    FrameTooLarge {
        /// The length in the control header.
        declared: usize,
        /// The configured maximum frame size.
        limit: usize,
    },
    /// The encoder cannot represent this packet in the requested wire format.
    #[error("cannot encode HEP packet: {0}")]
    Unencodable(&'static str),
}

impl HepError {
    /// A low-cardinality label for drop-reason metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HepError::Truncated { .. } => "truncated",
            HepError::BadMagic => "bad_magic",
            HepError::UnsupportedFamily(_) => "unsupported_family",
            HepError::BadTotalLength { .. } => "bad_total_length",
            HepError::BadChunkLength { .. } => "bad_chunk_length",
            HepError::ChunkHeaderOverrun { .. } => "chunk_header_overrun",
            HepError::ChunkTypeZero { .. } => "chunk_type_zero",
            HepError::BadChunkValue { .. } => "bad_chunk_value",
            HepError::PayloadTooLarge { .. } => "payload_too_large",
            HepError::BadCompressedPayload => "bad_compressed_payload",
            HepError::FrameTooLarge { .. } => "frame_too_large",
            HepError::Unencodable(_) => "unencodable",
        }
    }
}
