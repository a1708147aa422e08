//! The pcap / pcapng file source (`sipcapture-collector --pcap FILE`, `sipcapture import FILE`):
//! every frame goes through one [`Dissector`] and then [`Ingest::dissected`], exactly like a
//! mirror-port frame, with the packet's timestamp as the capture time.
//!
//! Link types: Ethernet (1), Linux cooked v1/v2 (113, 276) and raw IP (101, 12, 14, 228, 229);
//! frames of other link types are counted as `dropped.unsupported_link_type`. Fragment and TCP
//! timeouts follow the packet clock (the file's time, not the wall clock); at the end of the
//! file whatever is still incomplete is reported (`tcp_incomplete`, `fragment_timeout`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pcap_parser::pcapng::Block;
use pcap_parser::{PcapBlockOwned, PcapError};
use sipcapture_proto::v1::InputKind;
use tokio_util::sync::CancellationToken;

use crate::decode::flow::{DissectLimits, Dissected, Dissector, PayloadKind};
use crate::decode::frame::LinkType;
use crate::ingest::{Ingest, Outcome};

/// Reader buffer: large enough for any frame (pcap-parser needs a whole block in it).
const READ_BUFFER: usize = 1 << 20;
/// How often (packet time) fragments and TCP flows are timed out.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PcapFileError {
    /// Opening or reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not pcap / pcapng, or is corrupt at `offset`.
    #[error("{path}: not a valid pcap/pcapng file at byte {offset}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Bytes read before the bad block.
        offset: u64,
        /// What the parser said.
        message: String,
    },
}

/// One frame of a capture file.
#[derive(Debug, Clone, Copy)]
pub struct FileFrame<'a> {
    /// The pcap link-type number.
    pub linktype: i32,
    /// The packet's timestamp; `None` when the file's value is beyond 9999-12-31 (a corrupt or
    /// hostile timestamp, resolution or offset: the frame is skipped and counted, never a
    /// panic).
    pub ts: Option<SystemTime>,
    /// The captured bytes.
    pub data: &'a [u8],
    /// Bytes of the file consumed so far (for progress).
    pub position: u64,
}

/// Per-interface timestamp settings of a pcapng section.
#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: i32,
    /// Timestamp units per second.
    resolution: u64,
    /// Seconds added to every timestamp.
    offset: i64,
}

/// 9999-12-31T23:59:59Z: the last second a SQL DATETIME and a strftime `%Y` table name hold.
const MAX_UNIX_SECS: u64 = 253_402_300_799;

fn time_of(secs: u64, nanos: u64) -> Option<SystemTime> {
    let secs = secs.checked_add(nanos / 1_000_000_000)?;
    if secs > MAX_UNIX_SECS {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::new(
        secs,
        u32::try_from(nanos % 1_000_000_000).ok()?,
    ))
}

/// Calls `on_frame` for every packet of a pcap or pcapng stream, in file order.
pub fn read_frames(
    path: &Path,
    reader: impl Read + Send,
    on_frame: &mut dyn FnMut(FileFrame<'_>) -> std::ops::ControlFlow<()>,
) -> Result<u64, PcapFileError> {
    let format = |offset: u64, message: String| PcapFileError::Format {
        path: path.to_owned(),
        offset,
        message,
    };
    let mut reader = match pcap_parser::create_reader(READ_BUFFER, reader) {
        Ok(r) => r,
        // An empty file has no frames.
        Err(PcapError::Eof) => return Ok(0),
        Err(e) => return Err(format(0, e.to_string())),
    };
    let mut position = 0u64;
    let mut frames = 0u64;
    // Legacy pcap: one link type and precision for the file.
    let mut legacy: Option<(i32, bool)> = None;
    // pcapng: interfaces of the current section.
    let mut interfaces: Vec<Interface> = Vec::new();
    loop {
        match reader.next() {
            Ok((consumed, block)) => {
                position += consumed as u64;
                let frame = match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy = Some((h.network.0, h.is_nanosecond_precision()));
                        None
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let (linktype, nanos) = legacy.unwrap_or((1, false));
                        let frac = u64::from(b.ts_usec) * if nanos { 1 } else { 1000 };
                        Some(FileFrame {
                            linktype,
                            ts: time_of(u64::from(b.ts_sec), frac),
                            data: b.data,
                            position,
                        })
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                        interfaces.clear();
                        None
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        interfaces.push(Interface {
                            linktype: idb.linktype.0,
                            resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                            offset: idb.ts_offset(),
                        });
                        None
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let iface = usize::try_from(epb.if_id)
                            .ok()
                            .and_then(|i| interfaces.get(i))
                            .copied()
                            .unwrap_or(Interface {
                                linktype: -1,
                                resolution: 1_000_000,
                                offset: 0,
                            });
                        let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                        let secs = (raw / iface.resolution).saturating_add_signed(iface.offset);
                        let frac = raw % iface.resolution;
                        let nanos = u64::try_from(
                            u128::from(frac) * 1_000_000_000 / u128::from(iface.resolution),
                        )
                        .unwrap_or(0);
                        // The block may carry padding beyond the captured length.
                        let caplen = usize::try_from(epb.caplen).unwrap_or(usize::MAX);
                        let data = epb.data.get(..caplen).unwrap_or(epb.data);
                        Some(FileFrame {
                            linktype: iface.linktype,
                            ts: time_of(secs, nanos),
                            data,
                            position,
                        })
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        // No timestamp in a simple packet block: the interface 0 link type, time 0.
                        let linktype = interfaces.first().map_or(-1, |i| i.linktype);
                        Some(FileFrame {
                            linktype,
                            ts: Some(UNIX_EPOCH),
                            data: spb.data,
                            position,
                        })
                    }
                    PcapBlockOwned::NG(_) => None,
                };
                let stop = match frame {
                    Some(f) => {
                        frames += 1;
                        on_frame(f).is_break()
                    }
                    None => false,
                };
                reader.consume(consumed);
                if stop {
                    break;
                }
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                if let Err(e) = reader.refill() {
                    return Err(format(position, e.to_string()));
                }
            }
            Err(e) => return Err(format(position, e.to_string())),
        }
    }
    Ok(frames)
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Frames read from the file.
    pub packets: u64,
    /// SIP messages queued as records (raw-captured SIP).
    pub sip_messages: u64,
    /// HEP packets found in the traffic and queued as records.
    pub hep_packets: u64,
    /// Records discarded because capture is off for the pcap input.
    pub discarded: u64,
    /// Items not queued, by reason (skips and drops alike).
    pub dropped: BTreeMap<&'static str, u64>,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "packets:      {}", self.packets)?;
        writeln!(f, "sip messages: {}", self.sip_messages)?;
        writeln!(f, "hep packets:  {}", self.hep_packets)?;
        if self.discarded > 0 {
            writeln!(f, "discarded (capture off): {}", self.discarded)?;
        }
        let total: u64 = self.dropped.values().sum();
        writeln!(f, "not stored:   {total}")?;
        for (reason, n) in &self.dropped {
            writeln!(f, "  {reason}: {n}")?;
        }
        Ok(())
    }
}

impl ImportSummary {
    fn count(&mut self, outcome: Outcome, kind: Option<PayloadKind>) {
        match (outcome, kind) {
            (Outcome::Queued, Some(PayloadKind::Hep)) => self.hep_packets += 1,
            (Outcome::Queued, _) => self.sip_messages += 1,
            (Outcome::Discarded, _) => self.discarded += 1,
            (Outcome::Dropped(reason), _) => *self.dropped.entry(reason).or_default() += 1,
            (Outcome::Closed, _) => *self.dropped.entry("shutdown").or_default() += 1,
        }
    }
}

/// Reads `path` and feeds every frame to `ingest` as input `pcap`, with a progress bar on
/// stderr when `progress` is set and stderr is a terminal. Stops early when `stop` is cancelled.
/// Runs on a blocking thread; records are queued with backpressure.
pub async fn import(
    path: PathBuf,
    ingest: Arc<Ingest>,
    limits: DissectLimits,
    progress: bool,
    stop: CancellationToken,
) -> Result<ImportSummary, PcapFileError> {
    let runtime = tokio::runtime::Handle::current();
    let joined = tokio::task::spawn_blocking(move || {
        import_blocking(&path, &ingest, limits, progress, &runtime, &stop)
    })
    .await;
    match joined {
        Ok(result) => result,
        Err(e) => Err(PcapFileError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

fn import_blocking(
    path: &Path,
    ingest: &Ingest,
    limits: DissectLimits,
    progress: bool,
    runtime: &tokio::runtime::Handle,
    stop: &CancellationToken,
) -> Result<ImportSummary, PcapFileError> {
    let io = |source| PcapFileError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let bar = (progress && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(size);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        ) {
            bar.set_style(style);
        }
        bar
    });
    let mut summary = ImportSummary::default();
    let mut dissector = Dissector::new(limits);
    let mut last_expire: Option<SystemTime> = None;
    let mut last_ts = UNIX_EPOCH;
    let all_ports = |_: u16, _: u16| true;
    let handle = |summary: &mut ImportSummary, item: Dissected<'_>| {
        let kind = match item {
            Dissected::Message(m) => Some(m.kind),
            _ => None,
        };
        let outcome = runtime.block_on(ingest.dissected(item, InputKind::Pcap, true));
        summary.count(outcome, kind);
    };
    read_frames(path, BufReader::new(file), &mut |frame| {
        if stop.is_cancelled() {
            return std::ops::ControlFlow::Break(());
        }
        summary.packets += 1;
        ingest.counters.add("pcap_frames", 1);
        let Some(ts) = frame.ts else {
            handle(&mut summary, Dissected::Skipped("bad_timestamp"));
            return std::ops::ControlFlow::Continue(());
        };
        last_ts = last_ts.max(ts);
        match last_expire {
            None => last_expire = Some(ts),
            Some(at) if ts.duration_since(at).unwrap_or_default() >= EXPIRE_EVERY => {
                dissector.expire(ts, &mut |item| handle(&mut summary, item));
                last_expire = Some(ts);
            }
            Some(_) => {}
        }
        match LinkType::from_pcap(u32::try_from(frame.linktype).unwrap_or(u32::MAX)) {
            Some(link) => dissector.frame(link, ts, frame.data, &all_ports, &mut |item| {
                handle(&mut summary, item);
            }),
            None => handle(&mut summary, Dissected::Skipped("unsupported_link_type")),
        }
        if let Some(bar) = &bar
            && summary.packets.is_multiple_of(256)
        {
            bar.set_position(frame.position);
            bar.set_message(format!("{} SIP", summary.sip_messages));
        }
        std::ops::ControlFlow::Continue(())
    })?;
    // End of file: everything still waiting is incomplete.
    let end = last_ts + Duration::from_secs(24 * 3600);
    dissector.expire(end, &mut |item| handle(&mut summary, item));
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn frames_of(bytes: &[u8]) -> Vec<(i32, SystemTime, usize)> {
        let mut v = Vec::new();
        read_frames(Path::new("test"), bytes, &mut |f| {
            v.push((f.linktype, f.ts.unwrap(), f.data.len()));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        v
    }

    #[test]
    fn reads_pcap_with_timestamps() {
        let file = include_bytes!("../../testdata/raw/gen_sip_udp_vlan100.pcap");
        let frames = frames_of(file);
        assert_eq!(frames.len(), 18);
        assert!(frames.iter().all(|(l, _, _)| *l == 1));
        let first = frames[0].1.duration_since(UNIX_EPOCH).unwrap();
        assert!(first.as_secs() > 1_600_000_000, "{first:?}");
        assert!(frames.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn empty_and_garbage_files() {
        assert_eq!(frames_of(b"").len(), 0);
        let err = read_frames(
            Path::new("x.pcap"),
            &b"this is not a capture file"[..],
            &mut |_| std::ops::ControlFlow::Continue(()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("x.pcap"), "{err}");
    }

    /// Dissects a corpus file and counts the items that become records (SIP that parses, HEP
    /// that decodes), without a pipeline: the fast check of the dissector against the corpus
    /// README (the integration test `pcap_import` checks the database rows).
    fn corpus_counts(path: &Path, capture_bad_msgs: bool) -> (u64, BTreeMap<&'static str, u64>) {
        use crate::record::{Reception, RecordBuilder};
        let mut sip = crate::sip::ExtractConfig::kamailio_defaults();
        sip.capture_bad_msgs = capture_bad_msgs;
        let builder = RecordBuilder {
            capture_node: "n".into(),
            collector_id: "c".into(),
            sip,
            max_inflated_payload: crate::config::DEFAULT_MAX_INFLATED_PAYLOAD,
        };
        let rx = Reception {
            input: InputKind::Pcap,
            peer: None,
            at: UNIX_EPOCH,
        };
        let mut records = 0;
        let mut reasons = BTreeMap::new();
        let mut d = Dissector::new(DissectLimits::default());
        let mut on = |item: Dissected<'_>| match item {
            Dissected::Message(m) => {
                let ok = match m.kind {
                    PayloadKind::Sip => builder
                        .from_raw_transport(
                            m.src,
                            m.dst,
                            m.ip_protocol,
                            m.transport.kamailio_proto(),
                            m.payload,
                            rx,
                            Some(m.ts),
                        )
                        .map_err(|e| e.reason()),
                    PayloadKind::Hep => crate::decode::hep::decode(m.payload)
                        .map_err(|e| e.reason())
                        .and_then(|p| builder.from_hep(&p, rx).map_err(|e| e.reason())),
                };
                match ok {
                    Ok(_) => records += 1,
                    Err(r) => *reasons.entry(r).or_insert(0) += 1,
                }
            }
            Dissected::Skipped(r) => *reasons.entry(r).or_insert(0) += 1,
            Dissected::Dropped(e) => *reasons.entry(e.reason()).or_insert(0) += 1,
        };
        let file = File::open(path).unwrap();
        let mut last = UNIX_EPOCH;
        read_frames(path, BufReader::new(file), &mut |f| {
            last = last.max(f.ts.unwrap());
            let link = LinkType::from_pcap(u32::try_from(f.linktype).unwrap()).unwrap();
            d.frame(link, f.ts.unwrap(), f.data, &|_, _| true, &mut on);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        d.expire(last + Duration::from_secs(86_400), &mut on);
        (records, reasons)
    }

    /// Expected SIP message counts from /work/shared/corpus/README.md (the table the
    /// `pcap_import` integration test uses too).
    fn corpus() -> impl Iterator<Item = (&'static str, u64)> {
        include_str!("../../../integration-tests/testdata/corpus/counts.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(' '))
            .map(|(name, n)| (name, n.parse().unwrap()))
    }

    #[test]
    fn shared_corpus_counts_match_the_readme() {
        let dir = Path::new("/work/shared/corpus");
        if !dir.is_dir() {
            eprintln!(
                "skipping: {} is absent (the heplify captures are AGPL and not copied)",
                dir.display()
            );
            return;
        }
        let mut failures = Vec::new();
        for (name, want) in corpus() {
            // pcpp_sip_reqs.pcap's BYE is cut inside its header block ("Content-Lengt"): Kamailio
            // keeps it only with capture_bad_msgs=1.
            let bad_msgs = name == "pcpp_sip_reqs.pcap";
            let (got, reasons) = corpus_counts(&dir.join(name), bad_msgs);
            eprintln!("{name}: {got} (want {want}) {reasons:?}");
            if got != want {
                failures.push(format!("{name}: {got} != {want} {reasons:?}"));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    /// A pcapng section with one Ethernet interface (`if_tsresol` / `if_tsoffset` options as
    /// given) and one enhanced packet block with timestamp `ts`.
    fn pcapng(options: &[(u16, Vec<u8>)], ts: u64) -> Vec<u8> {
        fn block(kind: u32, body: &[u8]) -> Vec<u8> {
            let len = u32::try_from(12 + body.len()).unwrap();
            let mut b = kind.to_le_bytes().to_vec();
            b.extend(len.to_le_bytes());
            b.extend(body);
            b.extend(len.to_le_bytes());
            b
        }
        let mut shb = 0x1A2B_3C4D_u32.to_le_bytes().to_vec();
        shb.extend(1u16.to_le_bytes());
        shb.extend(0u16.to_le_bytes());
        shb.extend((-1i64).to_le_bytes());
        let mut idb = 1u16.to_le_bytes().to_vec();
        idb.extend(0u16.to_le_bytes());
        idb.extend(65535u32.to_le_bytes());
        for (code, value) in options {
            idb.extend(code.to_le_bytes());
            idb.extend(u16::try_from(value.len()).unwrap().to_le_bytes());
            idb.extend(value);
            idb.resize(idb.len().next_multiple_of(4), 0);
        }
        idb.extend([0, 0, 0, 0]);
        let data = [0u8; 60];
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend(u32::try_from(ts >> 32).unwrap().to_le_bytes());
        epb.extend(u32::try_from(ts & 0xffff_ffff).unwrap().to_le_bytes());
        epb.extend(60u32.to_le_bytes());
        epb.extend(60u32.to_le_bytes());
        epb.extend(data);
        let mut file = block(0x0A0D_0D0A, &shb);
        file.extend(block(1, &idb));
        file.extend(block(6, &epb));
        file
    }

    fn timestamps_of(bytes: &[u8]) -> Vec<Option<SystemTime>> {
        let mut v = Vec::new();
        read_frames(Path::new("test"), bytes, &mut |f| {
            v.push(f.ts);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        v
    }

    #[test]
    fn impossible_pcapng_timestamps_are_none_not_a_panic() {
        // if_tsresol = 0: units of one second, and a timestamp of 2^64 - 1 of them.
        let seconds = pcapng(&[(9, vec![0])], u64::MAX);
        assert_eq!(timestamps_of(&seconds), [None]);
        // if_tsoffset = i64::MAX seconds added to a sane timestamp.
        let offset = pcapng(
            &[(14, i64::MAX.to_le_bytes().to_vec())],
            1_700_000_000_000_000,
        );
        assert_eq!(timestamps_of(&offset), [None]);
        // The same file with a sane timestamp and no options: microseconds.
        let sane = pcapng(&[], 1_700_000_000_123_456);
        let want = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(timestamps_of(&sane), [Some(want)]);
        assert!(time_of(MAX_UNIX_SECS, 999_999_999).is_some());
        assert_eq!(time_of(MAX_UNIX_SECS + 1, 0), None);
        assert_eq!(time_of(MAX_UNIX_SECS, 1_000_000_000), None);
    }
}
