//! topoh Call-ID unmasking (behaviour doc §6; Kamailio `topoh/th_mask.c`, `th_msg.c`).
//!
//! topoh masks a Call-ID as `prefix + base64(callid)` over a key-shuffled alphabet with `*`
//! padding. The alphabet is the standard 64 characters `A–Z a–z 0–9 . -` shuffled with
//! MD5(key‖key) (as four little-endian u32 words) and CRC-16/X-25(key).

use md5::{Digest, Md5};

/// Kamailio topoh `mask_key` / `callid_prefix` (`topoh_unmask=1`).
#[derive(Debug, Clone)]
pub struct TopohConfig {
    /// topoh `mask_key` (Kamailio default `aL9.n8~Hm]Z`).
    pub mask_key: String,
    /// topoh `callid_prefix` (Kamailio default `!!:`).
    pub callid_prefix: String,
}

impl TopohConfig {
    /// The topoh module defaults.
    pub fn kamailio_defaults() -> Self {
        Self {
            mask_key: "aL9.n8~Hm]Z".to_owned(),
            callid_prefix: "!!:".to_owned(),
        }
    }
}

/// `TH_EB64I`, before shuffling.
const BASE_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-";
/// topoh padding character.
const PAD: u8 = b'*';

/// Core `crcitt_string`: CRC-16/X-25 (init 0xFFFF, reflected polynomial 0x8408, inverted).
fn crc_x25(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x8408
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The shuffled alphabet and its reverse table for one key.
#[derive(Debug, Clone)]
pub struct TopohCodec {
    alphabet: [u8; 64],
    reverse: [Option<u8>; 256],
    prefix: Vec<u8>,
}

impl TopohCodec {
    /// Builds the alphabet for `cfg.mask_key` (`th_mask_init` / `th_shuffle`).
    pub fn new(cfg: &TopohConfig) -> Self {
        let key = cfg.mask_key.as_bytes();
        let mut alphabet = *BASE_ALPHABET;
        if !key.is_empty() {
            let mut md5 = Md5::new();
            md5.update(key);
            md5.update(key);
            let digest = md5.finalize();
            let mut words = [0u32; 4];
            for (w, chunk) in words.iter_mut().zip(digest.as_slice().chunks_exact(4)) {
                let mut b = [0u8; 4];
                b.copy_from_slice(chunk);
                *w = u32::from_le_bytes(b);
            }
            let crc = u32::from(crc_x25(key));
            // Kamailio keeps the key length in an int; keys are short config strings.
            let key_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
            for last in (2..=64u32).rev() {
                let i = crc.wrapping_add(last).wrapping_add(key_len);
                let word = words.get((i % 4) as usize).copied().unwrap_or_default();
                // The key byte is a (signed) C char, sign-extended before the unsigned add.
                let key_byte = key.get((i % key_len) as usize).copied().unwrap_or_default();
                let signed = i32::from(key_byte as i8) as u32;
                let r = word.wrapping_add(signed) % last;
                alphabet.swap(r as usize, (last - 1) as usize);
            }
        }
        let mut reverse = [None; 256];
        for (idx, &ch) in alphabet.iter().enumerate() {
            if let Some(slot) = reverse.get_mut(usize::from(ch)) {
                *slot = u8::try_from(idx).ok();
            }
        }
        Self {
            alphabet,
            reverse,
            prefix: cfg.callid_prefix.as_bytes().to_vec(),
        }
    }

    /// The shuffled alphabet (for tests and diagnostics).
    pub fn alphabet(&self) -> &[u8; 64] {
        &self.alphabet
    }

    /// `th_mask_encode` with the Call-ID prefix: what a topoh proxy puts on the wire.
    pub fn mask(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + input.len().div_ceil(3) * 4);
        out.extend_from_slice(&self.prefix);
        for chunk in input.chunks(3) {
            let b0 = chunk.first().copied().unwrap_or_default();
            let b1 = chunk.get(1).copied().unwrap_or_default();
            let b2 = chunk.get(2).copied().unwrap_or_default();
            let block = u32::from(b0) << 16 | u32::from(b1) << 8 | u32::from(b2);
            let sym = |shift: u32| {
                self.alphabet
                    .get(((block >> shift) & 63) as usize)
                    .copied()
                    .unwrap_or(PAD)
            };
            out.push(sym(18));
            out.push(sym(12));
            out.push(if chunk.len() > 1 { sym(6) } else { PAD });
            out.push(if chunk.len() > 2 { sym(0) } else { PAD });
        }
        out
    }

    /// `th_unmask_callid_str`: `Some(decoded)` when the Call-ID carries the prefix and decodes.
    pub fn unmask(&self, callid: &[u8]) -> Option<Vec<u8>> {
        let plen = self.prefix.len();
        if plen > 0 && (plen >= callid.len() || !callid.starts_with(&self.prefix)) {
            return None;
        }
        let pad = callid.iter().rev().take_while(|&&c| c == PAD).count();
        let olen = (((callid.len() - plen) * 6) >> 3)
            .checked_sub(pad)
            .filter(|&n| n > 0)?;
        let body = callid.get(plen..callid.len() - pad)?;
        let mut out = Vec::with_capacity(olen);
        for group in body.chunks(4) {
            let mut block: u32 = 0;
            for (j, &c) in group.iter().enumerate() {
                let v = self.reverse.get(usize::from(c)).copied().flatten()?;
                block += u32::from(v) << (18 - 6 * j as u32);
            }
            for shift in [16u32, 8, 0] {
                if out.len() < olen {
                    out.push(((block >> shift) & 0xff) as u8);
                }
            }
        }
        Some(out)
    }
}

/// topoh unmask of a Call-ID: `Some(unmasked)` when it was masked and decodes, `None` otherwise
/// (behaviour doc §6). Builds the alphabet per call only when the prefix matches; keep a
/// [`TopohCodec`] for hot paths.
pub fn topoh_unmask(callid: &[u8], cfg: &TopohConfig) -> Option<Vec<u8>> {
    let prefix = cfg.callid_prefix.as_bytes();
    if !prefix.is_empty() && (prefix.len() >= callid.len() || !callid.starts_with(prefix)) {
        return None;
    }
    TopohCodec::new(cfg).unmask(callid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc_check_values() {
        assert_eq!(crc_x25(b"123456789"), 0x906E);
        assert_eq!(crc_x25(b"aL9.n8~Hm]Z"), 0x6609);
    }

    #[test]
    fn default_key_alphabet() {
        let codec = TopohCodec::new(&TopohConfig::kamailio_defaults());
        assert_eq!(
            codec.alphabet(),
            b"y0GxFtSUVeTOMWzHPam.jKR93gCoNpkicrJBqIEhvYbnd175AfLl4u6wZs-X8Q2D"
        );
    }

    #[test]
    fn doc_vector_masks_and_unmasks() {
        let cfg = TopohConfig::kamailio_defaults();
        let codec = TopohCodec::new(&cfg);
        let masked = b"!!:3.c43BaBWlgIWB3wM.0yNSMlMLsrpSfroharOEW5oP**";
        assert_eq!(
            codec.mask(b"a84b4c76e66710@pc33.atlanta.com"),
            masked.to_vec()
        );
        assert_eq!(
            topoh_unmask(masked, &cfg),
            Some(b"a84b4c76e66710@pc33.atlanta.com".to_vec())
        );
    }

    #[test]
    fn not_masked_or_undecodable() {
        let cfg = TopohConfig::kamailio_defaults();
        assert_eq!(topoh_unmask(b"a84b4c76e66710@pc33.atlanta.com", &cfg), None);
        assert_eq!(topoh_unmask(b"!!:", &cfg), None);
        assert_eq!(topoh_unmask(b"!!", &cfg), None);
        assert_eq!(topoh_unmask(b"!!:a", &cfg), None); // olen 0
        assert_eq!(topoh_unmask(b"!!:ab#d", &cfg), None); // '#' not in the alphabet
        assert_eq!(topoh_unmask(b"!!:ab*d", &cfg), None); // padding in the middle
        assert_eq!(topoh_unmask("!!:abcé".as_bytes(), &cfg), None);
    }

    proptest! {
        #[test]
        fn round_trip(input in proptest::collection::vec(any::<u8>(), 1..200), key in "[ -~]{1,20}") {
            let cfg = TopohConfig { mask_key: key, callid_prefix: "!!:".into() };
            let codec = TopohCodec::new(&cfg);
            let masked = codec.mask(&input);
            prop_assert_eq!(codec.unmask(&masked), Some(input));
        }

        #[test]
        fn unmask_never_panics(callid in proptest::collection::vec(any::<u8>(), 0..100)) {
            let cfg = TopohConfig { mask_key: "k".into(), callid_prefix: String::new() };
            let _ = topoh_unmask(&callid, &cfg);
        }
    }
}
