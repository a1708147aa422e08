//! The on-disk spool: batches that do not fit the in-memory window (storers slow or down) are
//! appended to segment files and replayed in order. Each frame is
//! `[magic 4 bytes][length u32 LE][CRC-32 u32 LE][RecordBatch, protobuf]`, the CRC covering the
//! length and the body; a segment is named after its first sequence, so recovery after a
//! restart replays in sequence order. A torn tail (crash during a write) or a corrupt frame is
//! counted and skipped, never fatal: the reader resynchronises on the next magic whose frame
//! checks out, so one damaged byte costs exactly the one frame that holds it. Segments written
//! before the magic existed (`[length][CRC][body]`, format 1) are still read; in those a damaged
//! frame ends the segment (no marker to resynchronise on), and recovery rewrites any damaged
//! segment in the current format. Writes go to the kernel at once (they survive a process
//! crash; `fsync` happens on segment rotation and at shutdown); a failed write (a full disk) is
//! cut back to the last whole frame, so no torn frame is ever followed by good ones.
//!
//! The spool also keeps the delivery stream's identity (`stream` file): its id and a reserved
//! sequence range, so a restarted collector resumes the same stream with higher sequence numbers
//! and the storer's dedupe recognises batches committed before the restart.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::export::encoded::EncodedBatch;

/// Sequence numbers reserved per write of the `stream` file.
const SEQUENCE_BLOCK: u64 = 10_000;
/// Old-format (format 1) frame header: length, CRC.
const FRAME_HEADER: usize = 8;
/// Current frame header: magic, length, CRC.
const FRAME_HEADER_V2: usize = 12;
/// Starts every current-format frame. Read as a format-1 length it is above [`MAX_FRAME`], so
/// a format-1 segment can never start with it.
const MAGIC: [u8; 4] = [0xA7, 0x5C, 0x0F, 0xF1];
/// A frame larger than this is treated as corruption.
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// Spool failures.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool holds `max_bytes` already.
    #[error("spool full ({bytes} bytes of {max_bytes})")]
    Full {
        /// Bytes held.
        bytes: u64,
        /// The cap.
        max_bytes: u64,
    },
    /// The file system is full (ENOSPC/EDQUOT): the frame was cut back, nothing torn is left.
    #[error("no space left for the spool in {path}")]
    NoSpace {
        /// The segment.
        path: PathBuf,
    },
    /// Another process holds this spool directory.
    #[error(
        "spool directory {0} is in use by another collector (give each collector its own spool_dir)"
    )]
    Locked(PathBuf),
    /// File system error.
    #[error("spool I/O error in {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    last_seq: u64,
    bytes: u64,
    /// Frames not yet handed out.
    unread: u64,
    /// Offset of the next unread frame.
    read_offset: u64,
}

/// What recovery found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Batches waiting in the spool.
    pub batches: u64,
    /// Records in them.
    pub records: u64,
    /// Frames skipped as torn or corrupt.
    pub corrupt: u64,
}

/// The spool of one collector.
#[derive(Debug)]
pub struct Spool {
    /// Held (locked) for the spool's lifetime.
    _lock: File,
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    writer: Option<File>,
    total_bytes: u64,
    stream_id: String,
    reserved_upto: u64,
    corrupt: u64,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, recovering segments left by an earlier run.
    /// `new_stream_id` is used when the directory holds no stream identity yet.
    pub fn open(
        dir: &Path,
        max_bytes: u64,
        segment_bytes: u64,
        new_stream_id: impl FnOnce() -> String,
    ) -> Result<(Self, Recovered), SpoolError> {
        // The spool holds SIP with its Authorization headers: only the collector's user reads
        // it (directories we create 0700, files 0600).
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err(dir))?;
        // One collector per spool: two sharing it would share the stream identity, and the
        // storers would take one's batches for resends of the other's.
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .mode(0o600)
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked(dir.to_owned())),
            Err(fs::TryLockError::Error(e)) => {
                return Err(SpoolError::Io {
                    path: lock_path,
                    source: e,
                });
            }
        }
        let stream_file = dir.join("stream");
        let existing = match fs::read_to_string(&stream_file) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(SpoolError::Io {
                    path: stream_file,
                    source: e,
                });
            }
        };
        let (stream_id, reserved_upto) = match &existing {
            Some(text) => {
                let mut lines = text.lines();
                let id = lines.next().unwrap_or("").trim().to_owned();
                let reserved = lines
                    .next()
                    .and_then(|l| l.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                if id.is_empty() {
                    (new_stream_id(), 0)
                } else {
                    (id, reserved)
                }
            }
            None => (new_stream_id(), 0),
        };
        let mut spool = Spool {
            _lock: lock,
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: segment_bytes.max(1024),
            segments: VecDeque::new(),
            writer: None,
            total_bytes: 0,
            stream_id,
            reserved_upto,
            corrupt: 0,
        };
        // Rewritten only when it changes (a restart on a full disk still starts).
        if existing != Some(stream_text(&spool.stream_id, spool.reserved_upto)) {
            spool.write_stream_file(spool.reserved_upto)?;
        }
        let recovered = spool.recover()?;
        Ok((spool, recovered))
    }

    /// The delivery stream id kept with the spool.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The first sequence number a new run may use: above everything an earlier run reserved.
    pub fn first_free_sequence(&self) -> u64 {
        let spooled_max = self.segments.back().map_or(0, |s| s.last_seq);
        self.reserved_upto.max(spooled_max) + 1
    }

    /// Makes sure sequences up to `sequence` are reserved on disk before they are used.
    pub fn reserve(&mut self, sequence: u64) -> Result<(), SpoolError> {
        if sequence <= self.reserved_upto {
            return Ok(());
        }
        let reserved = sequence + SEQUENCE_BLOCK;
        self.write_stream_file(reserved)?;
        self.reserved_upto = reserved;
        Ok(())
    }

    /// Writes the stream identity atomically (temporary file renamed over the old one).
    fn write_stream_file(&self, reserved: u64) -> Result<(), SpoolError> {
        let text = stream_text(&self.stream_id, reserved);
        self.replace_file(&self.dir.join("stream"), text.as_bytes())
    }

    fn recover(&mut self) -> Result<Recovered, SpoolError> {
        let mut names: Vec<PathBuf> = fs::read_dir(&self.dir)
            .map_err(io_err(&self.dir))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        names.sort();
        let mut found = Recovered::default();
        for path in names {
            let data = fs::read(&path).map_err(io_err(&path))?;
            let scan = scan_segment(&data);
            found.corrupt += scan.damaged;
            let frames = scan.frames.len() as u64;
            if frames == 0 {
                self.remove_file(&path);
                continue;
            }
            let last_seq = scan.frames.last().map_or(0, |f| f.sequence);
            found.records += scan.frames.iter().map(|f| f.records).sum::<u64>();
            let valid = if scan.damaged > 0 || scan.format1 {
                // Damage or format 1: the good frames are rewritten in the current format and
                // the file replaced, so reads never meet the damaged bytes again.
                let mut clean = Vec::with_capacity(data.len());
                for f in &scan.frames {
                    if let Some(body) = data.get(f.body.clone()) {
                        append_frame(&mut clean, body);
                    }
                }
                self.replace_file(&path, &clean)?;
                clean.len() as u64
            } else {
                data.len() as u64
            };
            found.batches += frames;
            self.total_bytes += valid;
            self.segments.push_back(Segment {
                path,
                last_seq,
                bytes: valid,
                unread: frames,
                read_offset: 0,
            });
        }
        self.corrupt += found.corrupt;
        Ok(found)
    }

    /// Writes `data` to `path` atomically: a temporary file flushed to disk, renamed over the
    /// old one, and the directory flushed (a crash leaves the old file or the new one).
    fn replace_file(&self, path: &Path, data: &[u8]) -> Result<(), SpoolError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = OpenOptions::new()
            .mode(0o600)
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        let written = file.write_all(data).and_then(|()| file.sync_all());
        if let Err(e) = written {
            self.remove_file(&tmp);
            return Err(write_error(&tmp, e));
        }
        fs::rename(&tmp, path).map_err(io_err(path))?;
        self.sync_dir();
        Ok(())
    }

    /// Flushes the directory (file creations, renames and deletions reach the disk).
    fn sync_dir(&self) {
        if let Ok(dir) = File::open(&self.dir) {
            let _ignored = dir.sync_all();
        }
    }

    fn remove_file(&self, path: &Path) {
        if let Err(e) = fs::remove_file(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete a spool file");
        }
    }

    /// Whether batches wait to be read.
    pub fn has_unread(&self) -> bool {
        self.segments.iter().any(|s| s.unread > 0)
    }

    /// Bytes held on disk.
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Segment files on disk.
    pub fn segments(&self) -> usize {
        self.segments.len()
    }

    /// Frames skipped as corrupt so far.
    pub fn corrupt_frames(&self) -> u64 {
        self.corrupt
    }

    /// Appends a batch (its sequence must be above every spooled one). A failed write is cut
    /// back to the last whole frame (no torn frame stays on disk); ENOSPC is [`SpoolError::NoSpace`].
    pub fn push(&mut self, batch: &EncodedBatch) -> Result<(), SpoolError> {
        let body = &batch.body;
        let frame_len = (FRAME_HEADER_V2 + body.len()) as u64;
        if self.total_bytes + frame_len > self.max_bytes {
            return Err(SpoolError::Full {
                bytes: self.total_bytes,
                max_bytes: self.max_bytes,
            });
        }
        let rotate = match self.segments.back() {
            None => true,
            Some(s) => self.writer.is_none() || s.bytes + frame_len > self.segment_bytes,
        };
        if rotate {
            if let Some(old) = self.writer.take() {
                let _ignored = old.sync_data();
            }
            let path = self.dir.join(format!("{:020}.seg", batch.sequence));
            let file = OpenOptions::new()
                .mode(0o600)
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| write_error(&path, e))?;
            self.sync_dir();
            self.writer = Some(file);
            self.segments.push_back(Segment {
                path,
                last_seq: batch.sequence,
                bytes: 0,
                unread: 0,
                read_offset: 0,
            });
        }
        let (Some(segment), Some(writer)) = (self.segments.back_mut(), self.writer.as_mut()) else {
            return Ok(());
        };
        let mut frame = Vec::with_capacity(FRAME_HEADER_V2 + body.len());
        append_frame(&mut frame, body);
        if let Err(e) = writer.write_all(&frame) {
            // Part of the frame may be on disk: cut it off so the next frame follows the last
            // whole one. If even that fails, the writer is dropped (the next push opens a new
            // segment) and recovery resynchronises past the torn bytes.
            if writer.set_len(segment.bytes).is_err() {
                self.writer = None;
            }
            let empty = segment.bytes == 0;
            let err = write_error(&segment.path, e);
            if empty {
                let path = segment.path.clone();
                self.segments.pop_back();
                self.writer = None;
                self.remove_file(&path);
            }
            return Err(err);
        }
        segment.bytes += frame_len;
        segment.unread += 1;
        segment.last_seq = batch.sequence;
        self.total_bytes += frame_len;
        Ok(())
    }

    /// Reads the oldest unread batch. A frame damaged since recovery is skipped (counted in
    /// [`Spool::corrupt_frames`]) and reading resumes at the next frame that checks out.
    pub fn pop(&mut self) -> Result<Option<EncodedBatch>, SpoolError> {
        loop {
            let Some(segment) = self.segments.iter_mut().find(|s| s.unread > 0) else {
                return Ok(None);
            };
            if segment.read_offset >= segment.bytes {
                segment.unread = 0;
                continue;
            }
            let mut file = File::open(&segment.path).map_err(io_err(&segment.path))?;
            file.seek(SeekFrom::Start(segment.read_offset))
                .map_err(io_err(&segment.path))?;
            let mut header = [0u8; FRAME_HEADER_V2];
            let read = file.read_exact(&mut header).and_then(|()| {
                let (_, len, _) = frame_header_v2(&header);
                let mut body = vec![0u8; len.min(MAX_FRAME)];
                file.read_exact(&mut body).map(|()| body)
            });
            // The body read is the batch kept in memory: checked, not copied or decoded.
            let decoded = read.ok().and_then(|body| {
                let len = checked_len_v2(&header, &body)?;
                EncodedBatch::from_body(Bytes::from(body)).map(|b| (b, FRAME_HEADER_V2 + len))
            });
            if let Some((batch, len)) = decoded {
                segment.read_offset += len as u64;
                segment.unread -= 1;
                return Ok(Some(batch));
            }
            // Damaged after recovery: resynchronise on the next good frame of this segment.
            self.corrupt += 1;
            let data = fs::read(&segment.path).map_err(io_err(&segment.path))?;
            let end = usize::try_from(segment.bytes).unwrap_or(usize::MAX);
            let from = usize::try_from(segment.read_offset).unwrap_or(usize::MAX);
            let next = data
                .get(..end.min(data.len()))
                .and_then(|d| next_frame_v2(d, from.saturating_add(1)));
            tracing::error!(path = %segment.path.display(), offset = from, resumes_at = ?next, "corrupt spool frame skipped");
            match next {
                Some(offset) => {
                    segment.read_offset = offset as u64;
                    segment.unread = segment.unread.saturating_sub(1).max(1);
                }
                None => segment.unread = 0,
            }
        }
    }

    /// Deletes every fully read segment whose batches are all acknowledged (≤ `acked`).
    pub fn release(&mut self, acked: u64) {
        while let Some(front) = self.segments.front() {
            let is_writer = self.segments.len() == 1 && self.writer.is_some();
            if front.unread > 0 || front.last_seq > acked {
                break;
            }
            if is_writer {
                self.writer = None;
            }
            if let Err(e) = fs::remove_file(&front.path) {
                tracing::warn!(path = %front.path.display(), error = %e, "cannot delete a spool segment");
            }
            self.total_bytes = self.total_bytes.saturating_sub(front.bytes);
            self.segments.pop_front();
        }
    }

    /// Writes batches that were only in memory (shutdown while storers are unreachable) as a
    /// segment of their own, named after their first sequence, so they replay first.
    pub fn save_unacked(&mut self, batches: &[&EncodedBatch]) -> Result<(), SpoolError> {
        let Some(first) = batches.first() else {
            return Ok(());
        };
        let path = self.dir.join(format!("{:020}.seg", first.sequence));
        let mut data = Vec::new();
        for batch in batches {
            append_frame(&mut data, &batch.body);
        }
        self.replace_file(&path, &data)
    }

    /// [`Self::save_unacked`] for as many leading batches as the disk takes: on a full disk the
    /// batch count is halved until a save succeeds (each attempt replaces the file whole, so no
    /// torn frame is left). Returns how many batches were saved, and the error that cut the
    /// rest short.
    pub fn save_unacked_prefix(
        &mut self,
        batches: &[&EncodedBatch],
    ) -> (usize, Option<SpoolError>) {
        let mut count = batches.len();
        let mut first_error = None;
        while count > 0 {
            match self.save_unacked(&batches[..count]) {
                Ok(()) => return (count, first_error),
                Err(e) => {
                    let no_space = matches!(e, SpoolError::NoSpace { .. });
                    first_error.get_or_insert(e);
                    if !no_space {
                        return (0, first_error);
                    }
                    count /= 2;
                }
            }
        }
        (0, first_error)
    }

    /// Flushes the open segment to disk.
    pub fn sync(&mut self) {
        if let Some(w) = &self.writer {
            let _ignored = w.sync_data();
        }
    }
}

/// The `stream` file: the stream id, then the highest reserved sequence.
fn stream_text(stream_id: &str, reserved: u64) -> String {
    format!("{stream_id}\n{reserved}\n")
}

/// A failed write: ENOSPC and EDQUOT are [`SpoolError::NoSpace`].
fn write_error(path: &Path, source: io::Error) -> SpoolError {
    if matches!(
        source.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) {
        SpoolError::NoSpace {
            path: path.to_owned(),
        }
    } else {
        SpoolError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Appends one current-format frame holding `body`.
fn append_frame(out: &mut Vec<u8>, body: &[u8]) {
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len);
    crc.update(body);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(body);
}

fn frame_header(header: &[u8; FRAME_HEADER]) -> (usize, u32) {
    let [a, b, c, d, e, f, g, h] = *header;
    (
        usize::try_from(u32::from_le_bytes([a, b, c, d])).unwrap_or(usize::MAX),
        u32::from_le_bytes([e, f, g, h]),
    )
}

/// The magic, length and CRC of a current-format frame header.
fn frame_header_v2(header: &[u8; FRAME_HEADER_V2]) -> ([u8; 4], usize, u32) {
    let [m0, m1, m2, m3, a, b, c, d, e, f, g, h] = *header;
    (
        [m0, m1, m2, m3],
        usize::try_from(u32::from_le_bytes([a, b, c, d])).unwrap_or(usize::MAX),
        u32::from_le_bytes([e, f, g, h]),
    )
}

/// The body length when `body` matches its format-1 frame header (length, checksum).
fn checked_len(header: &[u8; FRAME_HEADER], body: &[u8]) -> Option<usize> {
    let (len, crc) = frame_header(header);
    (len <= MAX_FRAME && body.len() == len && crc32fast::hash(body) == crc).then_some(len)
}

/// The body length when `body` matches its current-format frame header.
fn checked_len_v2(header: &[u8; FRAME_HEADER_V2], body: &[u8]) -> Option<usize> {
    let (magic, len, crc) = frame_header_v2(header);
    if magic != MAGIC || len > MAX_FRAME || body.len() != len {
        return None;
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header.get(4..8)?);
    hasher.update(body);
    (hasher.finalize() == crc).then_some(len)
}

/// One good frame found by [`scan_segment`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    sequence: u64,
    records: u64,
    /// Where its body is in the segment.
    body: std::ops::Range<usize>,
}

/// What [`scan_segment`] found in one segment.
#[derive(Debug, Default)]
struct Scan {
    frames: Vec<Frame>,
    /// Damaged stretches skipped (each cost the frame(s) it held).
    damaged: u64,
    /// The segment is in format 1 (no magic).
    format1: bool,
}

/// Reads every good frame of a segment. Current format: a damaged stretch is skipped up to the
/// next magic whose frame checks out. Format 1 (written before the magic): reading stops at
/// the first damaged frame.
fn scan_segment(data: &[u8]) -> Scan {
    let mut scan = Scan::default();
    if !data.starts_with(&MAGIC) && frame_at_v1(data).is_some() {
        scan.format1 = true;
        let mut offset = 0;
        while offset < data.len() {
            let Some(frame) = data.get(offset..).and_then(frame_at_v1) else {
                scan.damaged += 1;
                break;
            };
            let len = frame.body.len();
            offset += FRAME_HEADER + len;
            scan.frames.push(Frame {
                body: offset - len..offset,
                ..frame
            });
        }
        return scan;
    }
    let mut offset = 0;
    while offset < data.len() {
        if let Some(frame) = frame_at_v2(data, offset) {
            offset = frame.body.end;
            scan.frames.push(frame);
            continue;
        }
        scan.damaged += 1;
        match next_frame_v2(data, offset + 1) {
            Some(next) => offset = next,
            None => break,
        }
    }
    scan
}

/// The offset of the first good current-format frame at or after `from`.
fn next_frame_v2(data: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let rest = data.get(at..)?;
        let found = rest.windows(MAGIC.len()).position(|w| w == MAGIC)?;
        at += found;
        if frame_at_v2(data, at).is_some() {
            return Some(at);
        }
        at += 1;
    }
}

/// Reads the current-format frame at `offset` (checked; sequence and record count read from
/// the batch's top-level fields, not copied or decoded).
fn frame_at_v2(data: &[u8], offset: usize) -> Option<Frame> {
    let header: [u8; FRAME_HEADER_V2] = data
        .get(offset..offset.checked_add(FRAME_HEADER_V2)?)?
        .try_into()
        .ok()?;
    let (_, len, _) = frame_header_v2(&header);
    checked_frame(data, offset + FRAME_HEADER_V2, len, |body| {
        checked_len_v2(&header, body)
    })
}

/// Reads one format-1 frame at the start of `data` (body range relative to `data`).
fn frame_at_v1(data: &[u8]) -> Option<Frame> {
    let header: [u8; FRAME_HEADER] = data.get(..FRAME_HEADER)?.try_into().ok()?;
    let (len, _) = frame_header(&header);
    checked_frame(data, FRAME_HEADER, len, |body| checked_len(&header, body))
}

/// The frame whose `len`-byte body starts at `start`, when `check` accepts the body.
fn checked_frame(
    data: &[u8],
    start: usize,
    len: usize,
    check: impl FnOnce(&[u8]) -> Option<usize>,
) -> Option<Frame> {
    let body = data.get(start..start.checked_add(len)?)?;
    check(body)?;
    let (sequence, records) = crate::export::encoded::header(body)?;
    Some(Frame {
        sequence,
        records,
        body: start..start + len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcapture_proto::v1::{CaptureRecord, RecordBatch};

    fn batch(seq: u64, n: usize) -> EncodedBatch {
        EncodedBatch::encode(&RecordBatch {
            sequence: seq,
            records: (0..n)
                .map(|i| CaptureRecord {
                    payload: vec![b'x'; 100 + i],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn open(dir: &Path, max: u64) -> (Spool, Recovered) {
        Spool::open(dir, max, 4096, || "stream-a".to_owned()).unwrap()
    }

    #[test]
    fn fifo_release_and_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, rec) = open(dir.path(), 1 << 20);
        assert_eq!(rec, Recovered::default());
        for seq in 1..=50 {
            spool.push(&batch(seq, 3)).unwrap();
        }
        assert!(spool.bytes() > 0);
        for seq in 1..=20 {
            assert_eq!(spool.pop().unwrap().unwrap().sequence, seq);
        }
        spool.release(20);
        drop(spool);
        // Restart: everything not released is replayed, in order, same stream.
        let (mut spool, rec) =
            Spool::open(dir.path(), 1 << 20, 4096, || "other".to_owned()).unwrap();
        assert_eq!(spool.stream_id(), "stream-a");
        assert_eq!(rec.corrupt, 0);
        let first = spool.pop().unwrap().unwrap().sequence;
        assert!(
            first <= 21,
            "replay starts at or before the first unacknowledged batch: {first}"
        );
        let mut last = first;
        while let Some(b) = spool.pop().unwrap() {
            assert_eq!(b.sequence, last + 1);
            last = b.sequence;
        }
        assert_eq!(last, 50);
        assert!(spool.first_free_sequence() > 50);
        spool.release(50);
        assert_eq!(spool.bytes(), 0);
        assert!(!spool.has_unread());
    }

    #[test]
    fn full_spool_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = open(dir.path(), 2000);
        let mut pushed = 0;
        let err = loop {
            match spool.push(&batch(pushed + 1, 2)) {
                Ok(()) => pushed += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, SpoolError::Full { .. }));
        assert!(pushed > 0);
    }

    #[test]
    fn torn_tail_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = open(dir.path(), 1 << 20);
        for seq in 1..=3 {
            spool.push(&batch(seq, 1)).unwrap();
        }
        drop(spool);
        let seg = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "seg"))
            .unwrap();
        let mut data = fs::read(&seg).unwrap();
        data.truncate(data.len() - 5);
        fs::write(&seg, data).unwrap();
        let (mut spool, rec) = open(dir.path(), 1 << 20);
        assert_eq!(rec.batches, 2);
        assert_eq!(rec.corrupt, 1);
        assert_eq!(spool.pop().unwrap().unwrap().sequence, 1);
        assert_eq!(spool.pop().unwrap().unwrap().sequence, 2);
        assert!(spool.pop().unwrap().is_none());
    }

    #[test]
    fn a_spool_directory_has_one_owner() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = open(dir.path(), 1 << 20);
        let err = Spool::open(dir.path(), 1 << 20, 4096, || "x".to_owned()).unwrap_err();
        assert!(matches!(err, SpoolError::Locked(_)), "{err}");
        drop(first);
        assert!(Spool::open(dir.path(), 1 << 20, 4096, || "x".to_owned()).is_ok());
    }

    #[test]
    fn reservations_survive_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = open(dir.path(), 1 << 20);
        spool.reserve(5).unwrap();
        drop(spool);
        let (spool, _) = open(dir.path(), 1 << 20);
        assert!(spool.first_free_sequence() > 5);
    }

    #[test]
    fn unacked_memory_batches_replay_first() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = open(dir.path(), 1 << 20);
        spool.push(&batch(10, 1)).unwrap();
        spool.save_unacked(&[&batch(7, 1), &batch(8, 1)]).unwrap();
        drop(spool);
        let (mut spool, rec) = open(dir.path(), 1 << 20);
        assert_eq!(rec.batches, 3);
        let order: Vec<u64> = std::iter::from_fn(|| spool.pop().unwrap())
            .map(|b| b.sequence)
            .collect();
        assert_eq!(order, vec![7, 8, 10]);
    }

    #[test]
    fn only_the_owner_reads_the_spool() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("spool").join("lane-0");
        let (mut spool, _) = open(&dir, 1 << 20);
        spool.push(&batch(1, 2)).unwrap();
        spool.save_unacked(&[&batch(0, 1)]).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
        assert!(dir.join("stream").exists());
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        v.sort();
        v
    }

    fn drain(spool: &mut Spool) -> Vec<u64> {
        std::iter::from_fn(|| spool.pop().unwrap())
            .map(|b| b.sequence)
            .collect()
    }

    /// Issue 21 item 10: one flipped byte in the middle of a 200-frame segment costs exactly
    /// the frame that holds it, wherever the byte is (magic, length, CRC or body).
    #[test]
    fn one_flipped_byte_loses_one_frame() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 1 << 30, 1 << 30, || "s".to_owned()).unwrap();
        for seq in 1..=200 {
            spool.push(&batch(seq, 1)).unwrap();
        }
        drop(spool);
        let seg = segment_files(dir.path()).remove(0);
        let pristine = fs::read(&seg).unwrap();
        let frame = pristine.len() / 200;
        // Byte positions within frame 100: magic, length, CRC, body start, body middle.
        for within in [0, 2, 5, 9, 12, frame / 2] {
            let mut data = pristine.clone();
            let at = 99 * frame + within;
            data[at] ^= 0x40;
            fs::write(&seg, &data).unwrap();
            let (mut spool, rec) = open(dir.path(), 1 << 30);
            assert_eq!(
                (rec.batches, rec.corrupt),
                (199, 1),
                "byte {within} of frame 100"
            );
            let seqs = drain(&mut spool);
            assert_eq!(seqs.len(), 199);
            assert!(!seqs.contains(&100), "byte {within}");
            assert_eq!(spool.corrupt_frames(), 1);
            drop(spool);
            // The damaged segment was rewritten: a second start finds nothing wrong.
            let (_, again) = open(dir.path(), 1 << 30);
            assert_eq!((again.batches, again.corrupt), (199, 0));
            fs::write(&seg, &pristine).unwrap();
        }
    }

    /// Damage that appears after recovery (while running) is skipped when read back.
    #[test]
    fn damage_after_recovery_is_skipped_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, _) = Spool::open(dir.path(), 1 << 30, 1 << 30, || "s".to_owned()).unwrap();
        for seq in 1..=20 {
            spool.push(&batch(seq, 1)).unwrap();
        }
        let seg = segment_files(dir.path()).remove(0);
        let mut data = fs::read(&seg).unwrap();
        let frame = data.len() / 20;
        data[4 * frame + frame / 2] ^= 1;
        fs::write(&seg, &data).unwrap();
        let seqs = drain(&mut spool);
        assert_eq!(seqs, (1..=20).filter(|s| *s != 5).collect::<Vec<_>>());
        assert_eq!(spool.corrupt_frames(), 1);
        assert!(!spool.has_unread());
    }

    /// Segments written before the frame magic existed are still replayed.
    #[test]
    fn format_1_segments_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut data = Vec::new();
        for seq in 3..=5 {
            let body = batch(seq, 2).body;
            data.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
            data.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            data.extend_from_slice(&body);
        }
        fs::create_dir_all(dir.path()).unwrap();
        fs::write(dir.path().join(format!("{:020}.seg", 3)), &data).unwrap();
        let (mut spool, rec) = open(dir.path(), 1 << 20);
        assert_eq!((rec.batches, rec.records, rec.corrupt), (3, 6, 0));
        spool.push(&batch(6, 1)).unwrap();
        assert_eq!(drain(&mut spool), vec![3, 4, 5, 6]);
    }

    /// A full file system (a 64 KiB tmpfs): the failed write is cut back, nothing torn stays,
    /// and a restart recovers exactly the frames that were accepted.
    #[test]
    fn full_disk_leaves_no_torn_frame() {
        let root = tempfile::tempdir().unwrap();
        let mnt = root.path().join("small");
        fs::create_dir(&mnt).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: cannot mount a tmpfs (not root?)");
            return;
        }
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            }
        }
        let _guard = Unmount(mnt.clone());
        let dir = mnt.join("spool");
        let (mut spool, _) = Spool::open(&dir, 1 << 30, 1 << 30, || "s".to_owned()).unwrap();
        let mut accepted = 0u64;
        let mut refused = 0;
        for seq in 1..=400 {
            match spool.push(&batch(seq, 3)) {
                Ok(()) => accepted += 1,
                Err(SpoolError::NoSpace { .. }) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(accepted > 10 && refused > 0, "{accepted} {refused}");
        let on_disk: u64 = segment_files(&dir)
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(on_disk, spool.bytes(), "no torn bytes after a failed write");
        drop(spool);
        let (mut spool, rec) = Spool::open(&dir, 1 << 30, 1 << 30, || "s".to_owned()).unwrap();
        assert_eq!((rec.batches, rec.corrupt), (accepted, 0));
        let seqs = drain(&mut spool);
        assert_eq!(seqs.len() as u64, accepted);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    }
}
