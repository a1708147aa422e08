//! Byte-class scanning shared by the SIP parsers: the hot loops of the extraction.
//!
//! A scan looks for the first byte of a [`ByteSet`]. On x86-64 it tests 16 bytes at once with
//! SSE2 (one compare per listed byte, two or three per ASCII range, through the safe wrappers of
//! `safe_arch`) and takes the position from the lowest bit of the match mask, so there is no
//! byte-by-byte walk; near the end of the slice it reloads the last 16 (or 8) bytes instead of
//! reading past the end. Elsewhere it ORs eight table lookups per step. The set is written once
//! and both forms are derived from it; the tests compare them on every byte and on random input.

/// A set of bytes: the listed ones, optionally every ASCII digit and/or letter, optionally all
/// of it complemented.
#[derive(Clone, Copy)]
pub(crate) struct ByteSet {
    bytes: &'static [u8],
    digits: bool,
    letters: bool,
    /// Every byte up to and including space (0x00 ..= 0x20).
    controls: bool,
    negated: bool,
    /// Membership of every byte (the scalar form).
    table: [bool; 256],
}

impl ByteSet {
    /// The bytes of `bytes`.
    pub(crate) const fn any_of(bytes: &'static [u8]) -> Self {
        Self {
            bytes,
            digits: false,
            letters: false,
            controls: false,
            negated: false,
            table: [false; 256],
        }
        .with_table()
    }

    /// The set with every ASCII letter and digit added.
    pub(crate) const fn or_alphanumeric(self) -> Self {
        Self {
            digits: true,
            letters: true,
            ..self
        }
        .with_table()
    }

    /// The set with every ASCII digit added.
    pub(crate) const fn or_digits(self) -> Self {
        Self {
            digits: true,
            ..self
        }
        .with_table()
    }

    /// The set with space and every byte below it (the C0 controls) added. One compare instead
    /// of four for SP, HT, CR and LF, for fast paths that hand any unusual byte to a general
    /// path anyway.
    pub(crate) const fn or_space_and_controls(self) -> Self {
        Self {
            controls: true,
            ..self
        }
        .with_table()
    }

    /// Every byte not in the set.
    pub(crate) const fn complement(self) -> Self {
        Self {
            negated: !self.negated,
            ..self
        }
        .with_table()
    }

    const fn with_table(mut self) -> Self {
        let mut c = 0;
        while c < 256 {
            let b = c as u8;
            let mut listed = false;
            let mut k = 0;
            while k < self.bytes.len() {
                listed |= self.bytes[k] == b;
                k += 1;
            }
            let member = listed
                || (self.digits && b.is_ascii_digit())
                || (self.letters && b.is_ascii_alphabetic())
                || (self.controls && b <= b' ');
            self.table[c] = member != self.negated;
            c += 1;
        }
        self
    }

    /// Whether `c` is in the set.
    #[inline(always)]
    pub(crate) fn contains(&self, c: u8) -> bool {
        self.table[usize::from(c)]
    }

    /// Bit `k` set where `chunk[k]` is in the set: one SSE2 mask on x86-64, sixteen table
    /// lookups elsewhere.
    #[inline(always)]
    pub(crate) fn mask16(&self, chunk: &[u8; 16]) -> u32 {
        #[cfg(target_arch = "x86_64")]
        return self.mask(safe_arch::load_unaligned_m128i(chunk));
        #[cfg(not(target_arch = "x86_64"))]
        chunk
            .iter()
            .enumerate()
            .fold(0, |m, (k, &c)| m | u32::from(self.contains(c)) << k)
    }

    /// Bit `k` set where `block[k]` is in the set: [`Self::mask16`] of each quarter.
    #[inline(always)]
    pub(crate) fn mask64(&self, block: &[u8; 64]) -> u64 {
        let (chunks, _) = block.as_chunks::<16>();
        let mut mask = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            mask |= u64::from(self.mask16(chunk)) << (16 * i);
        }
        mask
    }

    /// Bit `k` set where lane `k` of `v` is in the set (the SSE2 form of [`Self::contains`]).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn mask(&self, v: safe_arch::m128i) -> u32 {
        use safe_arch::*;
        let mut m = zeroed_m128i();
        for &b in self.bytes {
            m = bitor_m128i(m, cmp_eq_mask_i8_m128i(v, set_splat_i8_m128i(b as i8)));
        }
        // `c` is in `lo .. lo + n` iff `c + 0x80 - lo` (wrapping) is below `-128 + n` as i8.
        let in_range = |v: m128i, lo: u8, n: u8| {
            let shifted = add_i8_m128i(v, set_splat_i8_m128i(0x80u8.wrapping_sub(lo) as i8));
            cmp_lt_mask_i8_m128i(shifted, set_splat_i8_m128i(i8::MIN + n as i8))
        };
        if self.controls {
            // `c <= 0x20` as bytes without sign: `min(c, 0x20) == c`.
            let low = set_splat_i8_m128i(b' ' as i8);
            m = bitor_m128i(m, cmp_eq_mask_i8_m128i(min_u8_m128i(v, low), v));
        }
        if self.digits {
            m = bitor_m128i(m, in_range(v, b'0', 10));
        }
        if self.letters {
            let lower = bitor_m128i(v, set_splat_i8_m128i(0x20));
            m = bitor_m128i(m, in_range(lower, b'a', 26));
        }
        let bits = move_mask_i8_m128i(m) as u32;
        if self.negated { !bits & 0xFFFF } else { bits }
    }
}

/// The position of the first byte at or after `i` that is in `set` (`s.len()` when there is
/// none; `i` when `i` is past the end).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn find(s: &[u8], mut i: usize, set: &ByteSet) -> usize {
    use safe_arch::{load_unaligned_m128i, m128i};
    let len = s.len();
    if i >= len {
        return i;
    }
    while len - i >= 16 {
        let Some(chunk) = s.get(i..).and_then(|rest| rest.first_chunk::<16>()) else {
            break;
        };
        let m = set.mask(load_unaligned_m128i(chunk));
        if m != 0 {
            return i + m.trailing_zeros() as usize;
        }
        i += 16;
    }
    // Fewer than 16 bytes left: test the last 16 (or two overlapping 8) of the slice and drop
    // the bits before `i`.
    let left = len - i;
    if left == 0 {
        return i;
    }
    let m = if let Some(last) = s.last_chunk::<16>() {
        set.mask(load_unaligned_m128i(last)) >> (16 - left)
    } else if let (Some(head), Some(tail)) = (s.first_chunk::<8>(), s.last_chunk::<8>()) {
        // 8 ..= 15 bytes in all: lanes 0..8 are `s[..8]`, lanes 8..16 are `s[len - 8..]`.
        let v = m128i::from([u64::from_le_bytes(*head), u64::from_le_bytes(*tail)]);
        let m = set.mask(v);
        ((m & 0xFF) | ((m >> 8) << (s.len() - 8))) >> i
    } else {
        return find_scalar(s, i, set);
    };
    if m != 0 {
        i + m.trailing_zeros() as usize
    } else {
        s.len()
    }
}

/// [`find`] without SIMD.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn find(s: &[u8], i: usize, set: &ByteSet) -> usize {
    find_portable(s, i, set)
}

/// Eight table lookups OR-ed per step, then a byte walk.
#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn find_portable(s: &[u8], mut i: usize, set: &ByteSet) -> usize {
    while let Some(chunk) = s.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
        if chunk.iter().any(|&c| set.contains(c)) {
            break;
        }
        i += 8;
    }
    find_scalar(s, i, set)
}

/// Byte by byte.
#[inline(always)]
fn find_scalar(s: &[u8], mut i: usize, set: &ByteSet) -> usize {
    while let Some(&c) = s.get(i) {
        if set.contains(c) {
            break;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets of every shape the parsers use.
    const SETS: &[ByteSet] = &[
        ByteSet::any_of(b""),
        ByteSet::any_of(b"@"),
        ByteSet::any_of(b" \t\r\n"),
        ByteSet::any_of(b" \t\r\n\\<>\";,="),
        ByteSet::any_of(b" \t\r\n").complement(),
        ByteSet::any_of(b"").or_digits(),
        ByteSet::any_of(b"").or_digits().complement(),
        ByteSet::any_of(b".-").or_alphanumeric(),
        ByteSet::any_of(b"._-").or_alphanumeric().complement(),
        ByteSet::any_of(b"\x00\x7f\x80\xff"),
        ByteSet::any_of(b"\x80\xff").or_alphanumeric().complement(),
        ByteSet::any_of(b";,=\"()").or_space_and_controls(),
        ByteSet::any_of(b"\x7f")
            .or_space_and_controls()
            .complement(),
    ];

    fn contains_spec(set: &ByteSet, c: u8) -> bool {
        let member = set.bytes.contains(&c)
            || (set.digits && c.is_ascii_digit())
            || (set.letters && c.is_ascii_alphabetic())
            || (set.controls && c <= b' ');
        member != set.negated
    }

    #[test]
    fn table_is_the_definition() {
        for set in SETS {
            for c in 0..=255u8 {
                assert_eq!(set.contains(c), contains_spec(set, c), "{c:#x}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_mask_agrees_with_the_table_on_every_byte() {
        for set in SETS {
            for first in (0..=255u8).step_by(16) {
                let lanes: [u8; 16] = std::array::from_fn(|k| first + k as u8);
                let m = set.mask(safe_arch::load_unaligned_m128i(&lanes));
                for (k, &c) in lanes.iter().enumerate() {
                    assert_eq!(m >> k & 1 == 1, set.contains(c), "{c:#x}");
                }
            }
        }
    }

    fn expected(s: &[u8], start: usize, set: &ByteSet) -> usize {
        if start >= s.len() {
            start
        } else {
            s[start..]
                .iter()
                .position(|&c| set.contains(c))
                .map_or(s.len(), |p| start + p)
        }
    }

    #[test]
    fn find_at_every_start_of_every_short_length() {
        let bytes: Vec<u8> = (0..80u8)
            .map(|k| b"ab1 .-_;\r@Z\xff9"[usize::from(k) % 13])
            .collect();
        for set in SETS {
            for len in 0..bytes.len() {
                let s = &bytes[..len];
                for start in 0..len + 3 {
                    assert_eq!(
                        find(s, start, set),
                        expected(s, start, set),
                        "{len} {start}"
                    );
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn find_is_the_first_member(
            s in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::prelude::any::<u8>(),
                    proptest::sample::select(b" \t\r\n;,=\"<>@:?[]._-09azAZ".to_vec()),
                ],
                0..70,
            ),
            start in 0usize..75,
            which in 0..SETS.len(),
        ) {
            let set = &SETS[which];
            let want = expected(&s, start, set);
            proptest::prop_assert_eq!(find(&s, start, set), want);
            proptest::prop_assert_eq!(find_portable(&s, start, set), want);
        }
    }
}
