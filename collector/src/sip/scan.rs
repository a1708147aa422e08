//! Byte-class scanning shared by the SIP parsers: the hot loops of the extraction.

/// The position of the first byte at or after `i` whose class in `table` has a bit of `stop`
/// (`s.len()` when there is none).
///
/// Eight bytes are looked up per step and their classes OR-ed, so a run of ordinary bytes costs
/// about two instructions a byte instead of a compare-and-branch per byte; the step that holds
/// the stop byte is then walked byte by byte.
#[inline(always)]
pub(crate) fn find_class(s: &[u8], mut i: usize, table: &[u8; 256], stop: u8) -> usize {
    while let Some(chunk) = s.get(i..).and_then(|rest| rest.first_chunk::<8>()) {
        let classes = chunk.iter().fold(0, |acc, &c| acc | table[usize::from(c)]);
        if classes & stop != 0 {
            break;
        }
        i += 8;
    }
    while let Some(&c) = s.get(i) {
        if table[usize::from(c)] & stop != 0 {
            break;
        }
        i += 1;
    }
    i
}

/// A class table with bit 1 set for each of `bytes`.
pub(crate) const fn flag_table(bytes: &[u8]) -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = 1;
        i += 1;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn find_class_is_the_first_flagged_byte(
            s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..50),
            start in 0usize..60,
            needles in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4),
        ) {
            let table = {
                let mut t = [0u8; 256];
                for &n in &needles {
                    t[usize::from(n)] = 1;
                }
                t
            };
            let expected = if start >= s.len() {
                start
            } else {
                s[start..].iter().position(|c| needles.contains(c)).map_or(s.len(), |p| start + p)
            };
            proptest::prop_assert_eq!(find_class(&s, start, &table, 1), expected);
        }
    }
}
