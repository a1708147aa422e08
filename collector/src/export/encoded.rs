//! A sealed batch is encoded once, when it is sealed: the same bytes are kept until the
//! acknowledgement, written to the spool, read back from it and sent on every (re)send, inside
//! a `DeliverRequest` the stream's codec frames around them ([`DeliverCodec`]). Nothing is
//! cloned or re-encoded per send, nothing decoded when the spool replays, and a window of
//! unacknowledged batches holds their compact wire form instead of thousands of structs.

use bytes::Bytes;
use prost::Message as _;
use prost::encoding::{WireType, decode_varint, encode_key, encode_varint};
use sipcapture_proto::v1::{DeliverRequest, DeliverResponse, Hello, RecordBatch, deliver_request};
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_prost::ProstCodec;

/// `RecordBatch.sequence`.
const SEQUENCE_FIELD: u64 = 1;
/// `RecordBatch.records`.
const RECORDS_FIELD: u64 = 2;
/// `DeliverRequest.batch`.
const BATCH_FIELD: u32 = 2;

/// A batch in its wire form (an encoded `RecordBatch`), with what the exporter needs to know
/// about it.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedBatch {
    /// Its sequence within the stream.
    pub sequence: u64,
    /// Records it holds.
    pub records: u64,
    /// The encoded `RecordBatch`.
    pub body: Bytes,
}

impl EncodedBatch {
    /// Encodes a batch.
    pub fn encode(batch: &RecordBatch) -> Self {
        EncodedBatch {
            sequence: batch.sequence,
            records: batch.records.len() as u64,
            body: Bytes::from(batch.encode_to_vec()),
        }
    }

    /// Takes an encoded `RecordBatch` (from the spool) as it is: its sequence and record count
    /// are read from the top-level fields, the records are not decoded. `None` when the bytes
    /// are not a well-formed message.
    pub fn from_body(body: Bytes) -> Option<Self> {
        let (sequence, records) = header(&body)?;
        Some(EncodedBatch {
            sequence,
            records,
            body,
        })
    }

    /// The batch's trace context (only that field is decoded; the records are skipped).
    pub fn trace_context(&self) -> std::collections::HashMap<String, String> {
        TraceContextOnly::decode(self.body.clone())
            .map(|t| t.trace_context)
            .unwrap_or_default()
    }

    /// Decodes the batch (tests, diagnostics).
    pub fn decode(&self) -> Result<RecordBatch, prost::DecodeError> {
        RecordBatch::decode(self.body.clone())
    }
}

/// The sequence and record count of an encoded `RecordBatch`, read from its top-level fields
/// without decoding the records; `None` when the bytes are not a well-formed message.
pub fn header(body: &[u8]) -> Option<(u64, u64)> {
    let mut sequence = 0;
    let mut records = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let key = decode_varint(&mut rest).ok()?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let value = decode_varint(&mut rest).ok()?;
                if field == SEQUENCE_FIELD {
                    sequence = value;
                }
            }
            1 => rest = rest.get(8..)?,
            2 => {
                let len = usize::try_from(decode_varint(&mut rest).ok()?).ok()?;
                rest = rest.get(len..)?;
                if field == RECORDS_FIELD {
                    records += 1;
                }
            }
            5 => rest = rest.get(4..)?,
            _ => return None,
        }
    }
    Some((sequence, records))
}

/// `RecordBatch` seen through its trace context alone.
#[derive(Clone, PartialEq, prost::Message)]
struct TraceContextOnly {
    #[prost(map = "string, string", tag = "3")]
    trace_context: std::collections::HashMap<String, String>,
}

/// What a collector sends on a Deliver stream.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// The opening Hello.
    Hello(Hello),
    /// A batch, already encoded.
    Batch(Bytes),
}

/// The Deliver stream's codec: `DeliverRequest` on the way out, written around batches that
/// are already encoded; `DeliverResponse` decoded by prost on the way in.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeliverCodec;

/// The encoder half of [`DeliverCodec`].
#[derive(Debug, Default, Clone, Copy)]
pub struct OutgoingEncoder;

impl Encoder for OutgoingEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            Outgoing::Hello(hello) => DeliverRequest {
                message: Some(deliver_request::Message::Hello(hello)),
            }
            .encode(dst)
            .map_err(|e| Status::internal(format!("cannot encode the Hello: {e}"))),
            Outgoing::Batch(body) => {
                frame_batch(&body, dst);
                Ok(())
            }
        }
    }
}

/// Writes `DeliverRequest { batch }` around an encoded `RecordBatch`: the bytes prost writes
/// for that request.
fn frame_batch(body: &[u8], dst: &mut impl bytes::BufMut) {
    encode_key(BATCH_FIELD, WireType::LengthDelimited, dst);
    encode_varint(body.len() as u64, dst);
    dst.put_slice(body);
}

/// The decoder half of [`DeliverCodec`].
#[derive(Debug)]
pub struct ResponseDecoder(<ProstCodec<DeliverRequest, DeliverResponse> as Codec>::Decoder);

impl Decoder for ResponseDecoder {
    type Item = DeliverResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DeliverResponse>, Status> {
        self.0.decode(src)
    }
}

impl Codec for DeliverCodec {
    type Encode = Outgoing;
    type Decode = DeliverResponse;
    type Encoder = OutgoingEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> OutgoingEncoder {
        OutgoingEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder(ProstCodec::<DeliverRequest, DeliverResponse>::default().decoder())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcapture_proto::v1::CaptureRecord;

    fn batch(sequence: u64, n: usize) -> RecordBatch {
        RecordBatch {
            sequence,
            records: (0..n)
                .map(|i| CaptureRecord {
                    node: format!("n{i}"),
                    payload: vec![b'x'; i * 100],
                    ..Default::default()
                })
                .collect(),
            trace_context: [("traceparent".to_owned(), "00-ab-cd-01".to_owned())].into(),
        }
    }

    #[test]
    fn the_header_is_read_without_decoding_the_records() {
        for (sequence, n) in [(1, 0), (7, 1), (u64::MAX, 300)] {
            let encoded = EncodedBatch::encode(&batch(sequence, n));
            let read = EncodedBatch::from_body(encoded.body.clone()).unwrap();
            assert_eq!(read, encoded);
            assert_eq!((read.sequence, read.records), (sequence, n as u64));
            assert_eq!(read.decode().unwrap(), batch(sequence, n));
            assert_eq!(read.trace_context(), batch(sequence, n).trace_context);
        }
        assert!(EncodedBatch::from_body(Bytes::from_static(&[0x12, 0x05, 0x01])).is_none());
        assert!(EncodedBatch::from_body(Bytes::from_static(&[0x0f])).is_none());
    }

    #[test]
    fn a_framed_batch_is_what_prost_writes_for_the_request() {
        let b = batch(42, 3);
        let want = DeliverRequest {
            message: Some(deliver_request::Message::Batch(b.clone())),
        }
        .encode_to_vec();
        let body = EncodedBatch::encode(&b).body;
        let mut got = Vec::new();
        frame_batch(&body, &mut got);
        assert_eq!(got, want);
    }
}
