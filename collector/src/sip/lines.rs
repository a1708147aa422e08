//! The byte sets of the header split: line feed, the colon after a header name and the
//! header-name characters, each tested 16 bytes at a time ([`ByteSet::mask16`]).
//!
//! Finding line ends is the hot loop of the header split. Calling a search function per line
//! pays its set-up for every 30–80 byte line; the header reader (`headers.rs`) instead takes
//! the LF mask of the first 64 bytes of each line, loaded once with the name, so each line end
//! is a `trailing_zeros`, and searches only past a line's first 64 bytes.

use super::scan::ByteSet;

/// Line feed.
pub(crate) static LF: ByteSet = ByteSet::any_of(b"\n");
/// The colon after a header name.
pub(crate) static COLON: ByteSet = ByteSet::any_of(b":");
/// Characters Kamailio accepts in a header name (`_ksr_hname_chars_list`): `[0-9A-Za-z-._+~]`.
pub(crate) static NAME_CHARS: ByteSet = ByteSet::any_of(b"-._+~").or_alphanumeric();

#[cfg(test)]
mod tests {
    use super::*;

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
    fn byte_sets_are_exactly_kamailios() {
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
                let lf = LF.mask16(&chunk);
                assert_eq!(lf, if b == b'\n' { 1 << at } else { 0 });
            }
        }
        // Bytes that differ from LF in one bit, and 0x8a (LF with the sign bit).
        let near = *b"\x0b\x08\x0e\x02\x1a\x2a\x4a\x8a\x0a\x0a\x00\x00\x00\x00\x00\x00";
        assert_eq!(LF.mask16(&near), 0b11 << 8);
    }

    proptest::proptest! {
        #[test]
        fn masks_match_their_definitions(
            chunk in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(&b"\n\r:-._+~/@ \t\x80\x8aAZaz09"[..]),
                    proptest::prelude::any::<u8>(),
                ],
                16,
            ),
        ) {
            let chunk: [u8; 16] = chunk.try_into().unwrap();
            proptest::prop_assert_eq!(u64::from(LF.mask16(&chunk)), mask_of(&chunk, |c| c == b'\n'));
            proptest::prop_assert_eq!(u64::from(COLON.mask16(&chunk)), mask_of(&chunk, |c| c == b':'));
            proptest::prop_assert_eq!(u64::from(NAME_CHARS.mask16(&chunk)), mask_of(&chunk, is_name_char));
        }
    }
}
