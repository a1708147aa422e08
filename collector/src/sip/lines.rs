//! Line-feed positions of a message, found 64 bytes at a time, and the other byte sets of the
//! header split (colon position, header-name characters).
//!
//! Finding line ends is the hot loop of the header split. Calling a search function per line
//! pays its set-up for every 30–80 byte line; here one pass turns a 64-byte block into a bit
//! mask (bit `i` set when byte `i` is an LF) and each line end is then a `trailing_zeros`. The
//! blocks are computed on demand, so the message body after the header block is never scanned.

use super::scan::ByteSet;

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

/// Line feed.
static LF: ByteSet = ByteSet::any_of(b"\n");
/// The colon after a header name.
pub(crate) static COLON: ByteSet = ByteSet::any_of(b":");
/// Characters Kamailio accepts in a header name (`_ksr_hname_chars_list`): `[0-9A-Za-z-._+~]`.
pub(crate) static NAME_CHARS: ByteSet = ByteSet::any_of(b"-._+~").or_alphanumeric();

/// Four 16-byte masks (SSE2 on x86-64) into one.
fn lf_mask64(block: &[u8; 64]) -> u64 {
    let (chunks, _) = block.as_chunks::<16>();
    chunks.iter().enumerate().fold(0, |mask, (i, chunk)| {
        mask | u64::from(LF.mask16(chunk)) << (16 * i)
    })
}

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

    fn is_name_char(b: u8) -> bool {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'+' | b'~')
    }

    /// The mask of `chunk` by the definition, byte by byte.
    fn mask_of(chunk: &[u8], wanted: impl Fn(u8) -> bool) -> u64 {
        chunk
            .iter()
            .enumerate()
            .fold(0, |m, (i, &b)| m | u64::from(wanted(b)) << i)
    }

    #[test]
    fn name_chars_are_exactly_kamailios() {
        for b in 0..=255u8 {
            let ok = is_name_char(b);
            for at in [0, 7, 15] {
                let mut chunk = [b'a'; 16];
                chunk[at] = b;
                let mask = NAME_CHARS.mask16(&chunk);
                assert_eq!(mask & 1 << at != 0, ok, "byte {b:#04x} at {at}");
                assert_eq!(mask | 1 << at, 0xffff);
                let colon = COLON.mask16(&chunk);
                assert_eq!(colon, if b == b':' { 1 << at } else { 0 });
                let block = [chunk, chunk, chunk, chunk].concat();
                assert_eq!(lf_mask(&block), mask_of(&block, |c| c == b'\n'));
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn masks_match_their_definitions(
            block in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(&b"\n\r:-._+~/@ \t\x80\x8aAZaz09"[..]),
                    proptest::prelude::any::<u8>(),
                ],
                64,
            ),
        ) {
            let block: [u8; 64] = block.try_into().unwrap();
            proptest::prop_assert_eq!(lf_mask64(&block), mask_of(&block, |c| c == b'\n'));
            let (chunks, _) = block.as_chunks::<16>();
            for chunk in chunks {
                proptest::prop_assert_eq!(u64::from(COLON.mask16(chunk)), mask_of(chunk, |c| c == b':'));
                proptest::prop_assert_eq!(u64::from(NAME_CHARS.mask16(chunk)), mask_of(chunk, is_name_char));
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
