//! HEP3 TCP framing: never panics; a frame is never longer than the buffer or `max_frame`;
//! splitting the same byte stream at arbitrary points yields the same frames and the same
//! final error as feeding it at once; a complete frame never decodes as `Truncated`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipcapture_collector_fuzz::decode::hep::{self, HepError, tcp_frame_len};

const MAX_FRAME: usize = 4096;

/// Frames and the terminal state (None = waiting for more bytes, Some(err) = broken stream).
type Outcome = (Vec<Vec<u8>>, Option<HepError>);

fuzz_target!(|data: &[u8]| {
    let Some((&split_seed, stream)) = data.split_first() else {
        return;
    };
    let whole = run(stream, &[stream.len()]);
    // Read sizes 1..=16 derived from the seed, cycling.
    let sizes: Vec<usize> = (0..stream.len().max(1))
        .map(|i| 1 + (usize::from(split_seed).wrapping_mul(31).wrapping_add(i * 7) % 16))
        .collect();
    let pieces = run(stream, &sizes);
    assert_eq!(whole, pieces);
});

/// Feeds `stream` to a framer in reads of the given sizes (cycled), like a socket would.
fn run(stream: &[u8], sizes: &[usize]) -> Outcome {
    let mut buffer: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut read = 0usize;
    loop {
        // Drain every whole frame in the buffer.
        loop {
            match tcp_frame_len(&buffer, MAX_FRAME) {
                Ok(Some(n)) => {
                    assert!((6..=MAX_FRAME).contains(&n) && n <= buffer.len());
                    let frame: Vec<u8> = buffer.drain(..n).collect();
                    if let Err(HepError::Truncated { .. }) = hep::decode(&frame) {
                        panic!("a complete frame decoded as Truncated");
                    }
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(err) => return (frames, Some(err)),
            }
        }
        if rest.is_empty() {
            return (frames, None);
        }
        let size = sizes[read % sizes.len()].clamp(1, rest.len());
        read += 1;
        let (chunk, tail) = rest.split_at(size);
        buffer.extend_from_slice(chunk);
        rest = tail;
    }
}
