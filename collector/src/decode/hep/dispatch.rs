//! [`decode`]: one HEP packet of any version, dispatched on its first bytes to [`super::v1v2`]
//! or [`super::v3`].

use super::error::HepError;
use super::packet::{EEP1_MAGIC, HEP3_MAGIC, HepPacket};
use super::{v1v2, v3};

/// Decodes one HEP packet of any version.
///
/// Dispatch follows Kamailio (`hep_msg_received`, `nosip_hep_msg`): first byte 1 or 2 → v1/v2;
/// `"HEP3"` or `"EEP1"` → v3 (we accept `"EEP1"` on every path, like Kamailio's path B);
/// anything else → [`HepError::BadMagic`]. A buffer too short to tell (empty, or a proper
/// prefix of a v3 magic) is [`HepError::Truncated`].
pub fn decode(buf: &[u8]) -> Result<HepPacket<'_>, HepError> {
    match buf {
        [] => Err(HepError::Truncated {
            layer: "hep",
            offset: 0,
            required: 1,
            actual: 0,
        }),
        [1 | 2, ..] => v1v2::decode(buf),
        [a, b, c, d, ..] if [*a, *b, *c, *d] == *HEP3_MAGIC || [*a, *b, *c, *d] == *EEP1_MAGIC => {
            v3::decode(buf)
        }
        short
            if short.len() < 4
                && (HEP3_MAGIC.starts_with(short) || EEP1_MAGIC.starts_with(short)) =>
        {
            Err(HepError::Truncated {
                layer: "hep_v3_header",
                offset: 0,
                required: v3::CONTROL_HEADER_LEN,
                actual: short.len(),
            })
        }
        _ => Err(HepError::BadMagic),
    }
}
