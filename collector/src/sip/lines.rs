//! Line-feed positions of a message, found 64 bytes at a time, and the other byte masks of the
//! header split (colon position, header-name characters).
//!
//! Finding line ends is the hot loop of the header split. Calling a search function per line
//! pays its set-up for every 30–80 byte line; here one pass turns a 64-byte block into a bit
//! mask (bit `i` set when byte `i` is an LF) and each line end is then a `trailing_zeros`. The
//! blocks are computed on demand, so the message body after the header block is never scanned.

/// The LF bit mask of up to 64 bytes (`block` shorter than 64 bytes is taken as zero-padded).
fn lf_mask(block: &[u8]) -> u64 {
    match block.first_chunk::<64>() {
        Some(full) => lf_mask64(full),
        None => {
            let mut padded = [0u8; 64];
            if let Some(head) = padded.get_mut(..block.len()) {
                head.copy_from_slice(block);
            }
            lf_mask64(&padded)
        }
    }
}

/// SSE2 (part of the x86-64 baseline): four 16-byte compares and byte masks.
#[cfg(target_arch = "x86_64")]
fn lf_mask64(block: &[u8; 64]) -> u64 {
    use safe_arch::{cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i};
    let lf = safe_arch::set_splat_i8_m128i(b'\n' as i8);
    let (chunks, _) = block.as_chunks::<16>();
    let mut mask = 0u64;
    for (i, chunk) in chunks.iter().enumerate() {
        let bits = move_mask_i8_m128i(cmp_eq_mask_i8_m128i(load_unaligned_m128i(chunk), lf));
        // The mask holds 16 bits; the cast only drops the zero upper half of the i32.
        mask |= u64::from(bits as u16) << (16 * i);
    }
    mask
}

/// Bit `i` set when `chunk[i] == byte`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn byte_mask16(chunk: &[u8; 16], byte: u8) -> u32 {
    use safe_arch::{cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i};
    let wanted = safe_arch::set_splat_i8_m128i(byte as i8);
    // The mask holds 16 bits (the i32 is never negative).
    move_mask_i8_m128i(cmp_eq_mask_i8_m128i(load_unaligned_m128i(chunk), wanted)) as u32
}

/// Bit `i` set when `chunk[i]` may appear in a header name: `[0-9A-Za-z-._+~]`
/// (Kamailio's `_ksr_hname_chars_list`).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn name_char_mask16(chunk: &[u8; 16]) -> u32 {
    use safe_arch::{
        bitand_m128i, bitor_m128i, cmp_eq_mask_i8_m128i, cmp_gt_mask_i8_m128i,
        cmp_lt_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };
    // Signed byte compares: bytes >= 0x80 are negative and fall below every range.
    let in_range = |x, lo: u8, hi: u8| {
        bitand_m128i(
            cmp_gt_mask_i8_m128i(x, set_splat_i8_m128i((lo - 1) as i8)),
            cmp_lt_mask_i8_m128i(x, set_splat_i8_m128i((hi + 1) as i8)),
        )
    };
    let eq = |x, b: u8| cmp_eq_mask_i8_m128i(x, set_splat_i8_m128i(b as i8));
    let x = load_unaligned_m128i(chunk);
    // OR-ing the case bit maps exactly the letters (and nothing else) onto `a..=z`.
    let letters = in_range(bitor_m128i(x, set_splat_i8_m128i(0x20)), b'a', b'z');
    let digits_dash_dot = in_range(x, b'-', b'9');
    let slash = eq(x, b'/');
    let others = bitor_m128i(bitor_m128i(eq(x, b'_'), eq(x, b'+')), eq(x, b'~'));
    let ok = bitor_m128i(letters, others);
    let dd = move_mask_i8_m128i(digits_dash_dot) & !move_mask_i8_m128i(slash);
    (move_mask_i8_m128i(ok) | dd) as u32
}

/// The same masks without SIMD: the code on other architectures, and the reference the tests
/// compare the SSE2 forms with.
#[cfg(any(test, not(target_arch = "x86_64")))]
mod portable {
    /// Elsewhere: eight bytes per word, exact zero-byte detection on `word ^ LF`.
    pub(crate) fn lf_mask64(block: &[u8; 64]) -> u64 {
        const LF: u64 = 0x0a0a_0a0a_0a0a_0a0a;
        const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        let (words, _) = block.as_chunks::<8>();
        let mut mask = 0u64;
        for (i, word) in words.iter().enumerate() {
            let x = u64::from_le_bytes(*word) ^ LF;
            // 0x80 in exactly the bytes of `x` that are zero (no carries between bytes).
            let zero = !(((x & LOW7) + LOW7) | x | LOW7);
            // Gather the eight high bits into one byte.
            let byte = ((zero >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
            mask |= byte << (8 * i);
        }
        mask
    }

    /// Bit `i` set when `chunk[i] == byte`.
    #[inline(always)]
    pub(crate) fn byte_mask16(chunk: &[u8; 16], byte: u8) -> u32 {
        chunk
            .iter()
            .enumerate()
            .fold(0, |m, (i, &b)| m | u32::from(b == byte) << i)
    }

    /// Bit `i` set when `chunk[i]` may appear in a header name: `[0-9A-Za-z-._+~]`
    /// (Kamailio's `_ksr_hname_chars_list`).
    #[inline(always)]
    pub(crate) fn name_char_mask16(chunk: &[u8; 16]) -> u32 {
        chunk.iter().enumerate().fold(0, |m, (i, &b)| {
            let ok = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'+' | b'~');
            m | u32::from(ok) << i
        })
    }
}

#[cfg(not(target_arch = "x86_64"))]
use portable::lf_mask64;
#[cfg(not(target_arch = "x86_64"))]
pub(crate) use portable::{byte_mask16, name_char_mask16};

/// The scanner over one message.
pub(crate) struct LineFeeds<'a> {
    msg: &'a [u8],
    /// Start of the block `mask` describes.
    base: usize,
    /// LF bits of `msg[base..base + 64]`.
    mask: u64,
}

impl<'a> LineFeeds<'a> {
    /// A scanner with its first block at `start`.
    pub(crate) fn new(msg: &'a [u8], start: usize) -> Self {
        Self {
            msg,
            base: start,
            mask: lf_mask(msg.get(start..).unwrap_or_default()),
        }
    }

    /// Moves to the block at `base` (once per 64 bytes: kept out of line so the per-line path
    /// stays small).
    #[inline(never)]
    fn load(&mut self, base: usize) {
        self.base = base;
        self.mask = lf_mask(self.msg.get(base..).unwrap_or_default());
    }

    /// The position of the first LF at or after `p`.
    #[inline(always)]
    pub(crate) fn find(&mut self, p: usize) -> Option<usize> {
        if p < self.base || p - self.base >= 64 {
            if p >= self.msg.len() {
                return None;
            }
            self.load(p);
        }
        let mut bits = self.mask & (u64::MAX << (p - self.base));
        while bits == 0 {
            let next = self.base + 64;
            if next >= self.msg.len() {
                return None;
            }
            self.load(next);
            bits = self.mask;
        }
        Some(self.base + bits.trailing_zeros() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(msg: &[u8], p: usize) -> Option<usize> {
        msg.get(p..)?
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| p + i)
    }

    #[test]
    fn masks_every_lf_and_nothing_else() {
        let mut block = [0u8; 64];
        for (i, b) in block.iter_mut().enumerate() {
            *b = if i % 7 == 3 { b'\n' } else { (i as u8) ^ 0x80 };
        }
        let expected = (0..64).filter(|i| i % 7 == 3).fold(0u64, |m, i| m | 1 << i);
        assert_eq!(lf_mask(&block), expected);
        assert_eq!(lf_mask(&block[..10]), expected & 0x3ff);
        assert_eq!(lf_mask(b""), 0);
        // Bytes that differ from LF in one bit, and 0x8a (LF with the sign bit).
        assert_eq!(lf_mask(b"\x0b\x08\x0e\x02\x1a\x2a\x4a\x8a\x0a"), 1 << 8);
    }

    #[test]
    fn finds_forwards_backwards_and_across_blocks() {
        let mut msg = vec![b'a'; 300];
        for i in [0, 5, 63, 64, 65, 127, 200, 299] {
            msg[i] = b'\n';
        }
        let mut lf = LineFeeds::new(&msg, 0);
        for p in (0..=310)
            .chain((0..=310).rev())
            .chain([7, 150, 3, 290, 64, 0])
        {
            assert_eq!(lf.find(p), reference(&msg, p), "p = {p}");
        }
    }

    #[test]
    fn name_chars_are_exactly_kamailios() {
        for b in 0..=255u8 {
            let ok = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'+' | b'~');
            for at in [0, 7, 15] {
                let mut chunk = [b'a'; 16];
                chunk[at] = b;
                let mask = name_char_mask16(&chunk);
                assert_eq!(mask, portable::name_char_mask16(&chunk));
                assert_eq!(
                    lf_mask(&[chunk, chunk, chunk, chunk].concat()),
                    portable::lf_mask64(&[chunk, chunk, chunk, chunk].concat().try_into().unwrap())
                );
                assert_eq!(mask & 1 << at != 0, ok, "byte {b:#04x} at {at}");
                assert_eq!(mask | 1 << at, 0xffff);
                let eq = byte_mask16(&chunk, b);
                assert_eq!(eq & 1 << at, 1 << at);
                assert_eq!(eq, if b == b'a' { 0xffff } else { 1 << at });
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn simd_masks_equal_portable_masks(
            block in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(&b"\n\r:-._+~/@ \t\x80\x8aAZaz09"[..]),
                    proptest::prelude::any::<u8>(),
                ],
                64,
            ),
            byte in proptest::prelude::any::<u8>(),
        ) {
            let block: [u8; 64] = block.try_into().unwrap();
            proptest::prop_assert_eq!(lf_mask64(&block), portable::lf_mask64(&block));
            let (chunks, _) = block.as_chunks::<16>();
            for chunk in chunks {
                proptest::prop_assert_eq!(byte_mask16(chunk, byte), portable::byte_mask16(chunk, byte));
                proptest::prop_assert_eq!(byte_mask16(chunk, b':'), portable::byte_mask16(chunk, b':'));
                proptest::prop_assert_eq!(name_char_mask16(chunk), portable::name_char_mask16(chunk));
            }
        }

        #[test]
        fn find_is_the_next_lf(
            msg in proptest::collection::vec(
                proptest::prop_oneof![proptest::prelude::Just(b'\n'), proptest::prelude::any::<u8>()],
                0..400,
            ),
            start in 0usize..420,
            steps in proptest::collection::vec(0usize..420, 1..20),
        ) {
            let mut lf = LineFeeds::new(&msg, start);
            // A header walk: each search starts after the previous LF; then random positions.
            let mut p = start;
            while let Some(q) = lf.find(p) {
                proptest::prop_assert_eq!(Some(q), reference(&msg, p));
                p = q + 1;
            }
            proptest::prop_assert_eq!(None, reference(&msg, p));
            for s in steps {
                proptest::prop_assert_eq!(lf.find(s), reference(&msg, s));
            }
        }
    }
}
