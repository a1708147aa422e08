//! The on-disk spool: batches that do not fit the in-memory window (storers slow or down) are
//! appended to segment files and replayed in order. Each frame is
//! `[length u32 LE][CRC-32 u32 LE][RecordBatch, protobuf]`; a segment is named after its first
//! sequence, so recovery after a restart replays in sequence order. A torn tail (crash during a
//! write) or a corrupt frame is counted and skipped, never fatal. Writes go to the kernel at
//! once (they survive a process crash; `fsync` happens on segment rotation and at shutdown).
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
const FRAME_HEADER: usize = 8;
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
        let (stream_id, reserved_upto) = match fs::read_to_string(&stream_file) {
            Ok(text) => {
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
            Err(e) if e.kind() == io::ErrorKind::NotFound => (new_stream_id(), 0),
            Err(e) => {
                return Err(SpoolError::Io {
                    path: stream_file,
                    source: e,
                });
            }
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
        spool.write_stream_file(spool.reserved_upto)?;
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
        let path = self.dir.join("stream");
        let tmp = self.dir.join("stream.tmp");
        // Written, flushed to disk, then renamed over the old one and the directory flushed: a
        // crash leaves the old file or the new one, never an empty one.
        let mut file = OpenOptions::new()
            .mode(0o600)
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        file.write_all(format!("{}\n{reserved}\n", self.stream_id).as_bytes())
            .map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        if let Ok(dir) = File::open(&self.dir) {
            let _ignored = dir.sync_all();
        }
        Ok(())
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
            let mut offset = 0usize;
            let mut last_seq = 0;
            let mut frames = 0u64;
            while offset < data.len() {
                match frame_at(data.get(offset..).unwrap_or_default()) {
                    Some((sequence, records, len)) => {
                        last_seq = sequence;
                        frames += 1;
                        found.records += records;
                        offset += len;
                    }
                    None => {
                        // A torn tail or corruption: keep what came before it.
                        found.corrupt += 1;
                        break;
                    }
                }
            }
            if frames == 0 {
                let _ignored = fs::remove_file(&path);
                continue;
            }
            let valid = offset as u64;
            if valid < data.len() as u64 {
                // Cut the damaged tail so later appends are not hidden behind it.
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                file.set_len(valid).map_err(io_err(&path))?;
            }
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

    /// Appends a batch (its sequence must be above every spooled one).
    pub fn push(&mut self, batch: &EncodedBatch) -> Result<(), SpoolError> {
        let body = &batch.body;
        let frame_len = (FRAME_HEADER + body.len()) as u64;
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
                .map_err(io_err(&path))?;
            self.writer = Some(file);
            self.segments.push_back(Segment {
                path,
                last_seq: batch.sequence,
                bytes: 0,
                unread: 0,
                read_offset: 0,
            });
        }
        let Some(segment) = self.segments.back_mut() else {
            return Ok(());
        };
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let mut frame = Vec::with_capacity(FRAME_HEADER + body.len());
        frame.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        frame.extend_from_slice(body);
        writer.write_all(&frame).map_err(io_err(&segment.path))?;
        segment.bytes += frame_len;
        segment.unread += 1;
        segment.last_seq = batch.sequence;
        self.total_bytes += frame_len;
        Ok(())
    }

    /// Reads the oldest unread batch.
    pub fn pop(&mut self) -> Result<Option<EncodedBatch>, SpoolError> {
        let Some(segment) = self.segments.iter_mut().find(|s| s.unread > 0) else {
            return Ok(None);
        };
        let mut file = File::open(&segment.path).map_err(io_err(&segment.path))?;
        file.seek(SeekFrom::Start(segment.read_offset))
            .map_err(io_err(&segment.path))?;
        let mut header = [0u8; FRAME_HEADER];
        let read = file.read_exact(&mut header).and_then(|()| {
            let (len, _) = frame_header(&header);
            let mut body = vec![0u8; len.min(MAX_FRAME)];
            file.read_exact(&mut body).map(|()| body)
        });
        // The body read is the batch kept in memory: checked, not copied or decoded.
        let decoded = read.ok().and_then(|body| {
            let len = checked_len(&header, &body)?;
            EncodedBatch::from_body(Bytes::from(body)).map(|b| (b, FRAME_HEADER + len))
        });
        match decoded {
            Some((batch, len)) => {
                segment.read_offset += len as u64;
                segment.unread -= 1;
                Ok(Some(batch))
            }
            None => {
                // Unreadable from here on: skip the rest of this segment.
                self.corrupt += 1;
                tracing::error!(path = %segment.path.display(), skipped = segment.unread, "corrupt spool frame; skipping the rest of the segment");
                segment.unread = 0;
                Ok(None)
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
            let body = &batch.body;
            data.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
            data.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
            data.extend_from_slice(body);
        }
        let mut file = OpenOptions::new()
            .mode(0o600)
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(io_err(&path))?;
        file.write_all(&data).map_err(io_err(&path))?;
        file.sync_data().map_err(io_err(&path))?;
        Ok(())
    }

    /// Flushes the open segment to disk.
    pub fn sync(&mut self) {
        if let Some(w) = &self.writer {
            let _ignored = w.sync_data();
        }
    }
}

fn frame_header(header: &[u8; FRAME_HEADER]) -> (usize, u32) {
    let [a, b, c, d, e, f, g, h] = *header;
    (
        usize::try_from(u32::from_le_bytes([a, b, c, d])).unwrap_or(usize::MAX),
        u32::from_le_bytes([e, f, g, h]),
    )
}

/// The body length when `body` matches its frame header (length within bounds, checksum).
fn checked_len(header: &[u8; FRAME_HEADER], body: &[u8]) -> Option<usize> {
    let (len, crc) = frame_header(header);
    (len <= MAX_FRAME && body.len() == len && crc32fast::hash(body) == crc).then_some(len)
}

/// Reads one frame at the start of `data` (recovery): the batch's sequence and record count
/// (checked, read from its top-level fields, not copied or decoded) and the frame's length.
fn frame_at(data: &[u8]) -> Option<(u64, u64, usize)> {
    let header: [u8; FRAME_HEADER] = data.get(..FRAME_HEADER)?.try_into().ok()?;
    let (len, _) = frame_header(&header);
    let body = data.get(FRAME_HEADER..FRAME_HEADER.checked_add(len)?)?;
    checked_len(&header, body)?;
    let (sequence, records) = crate::export::encoded::header(body)?;
    Some((sequence, records, FRAME_HEADER + len))
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
}
