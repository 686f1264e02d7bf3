//! The on-disk encoding of the transaction log (pure: bytes in, bytes out).
//!
//! A log is a directory of segment files named `log.<first zxid as 16 hex digits>`, so
//! names sort in zxid order. All integers are big-endian; checksums are CRC-32C.
//!
//! ```text
//! segment  = header batch* zero*
//! header   = magic "CORRALOG" (8) | version u32 | window u32 | first_zxid i64
//!            | prev_zxid i64 | crc32c u32 (over the 32 bytes before it)       = 36 bytes
//! batch    = payload_len u32 | payload_crc u32 | header_crc u32 (over the 8 bytes before
//!            it) | payload                                                    = 12 + len
//! payload  = record+
//! record   = len u32 | zxid i64 | bytes[len]                                  = 12 + len
//! ```
//!
//! - `prev_zxid` is the last zxid of the previous segment (0 for the very first), so a
//!   missing segment is detected by a chain check at open and named.
//! - `window` is the most bytes the writer ever had unsynced in this segment. Recovery
//!   uses the value in the header, not the current configuration, to tell a torn tail
//!   from corruption (see [`crate::file`]).
//! - A batch is what one write call puts on disk; its own header checksum lets recovery
//!   trust `payload_len` before reading the payload, so a torn length cannot send it
//!   reading garbage as records.
//! - The space after the last batch is preallocated and reads as zeros; a zero batch
//!   header is never valid (a batch holds at least one record), which marks the end.

use crate::Record;

/// First bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CORRALOG";
/// The version of this format, in every segment header.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes in a segment header; the first batch starts here.
pub const SEGMENT_HEADER_LEN: usize = 36;
/// Bytes in a batch header.
pub const BATCH_HEADER_LEN: usize = 12;
/// Bytes in a record header (before its payload).
pub const RECORD_HEADER_LEN: usize = 12;

/// File name prefix of segments.
const SEGMENT_PREFIX: &str = "log.";

/// The fixed header at the start of every segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The most bytes the writer of this segment let stand unsynced (the torn-tail window).
    pub window: u32,
    /// The zxid of the segment's first record (also in its file name).
    pub first_zxid: i64,
    /// The last zxid of the segment before this one, 0 if there was none.
    pub prev_zxid: i64,
}

impl SegmentHeader {
    /// The header as it is written.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut buf = [0u8; SEGMENT_HEADER_LEN];
        buf[0..8].copy_from_slice(&SEGMENT_MAGIC);
        buf[8..12].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        buf[12..16].copy_from_slice(&self.window.to_be_bytes());
        buf[16..24].copy_from_slice(&self.first_zxid.to_be_bytes());
        buf[24..32].copy_from_slice(&self.prev_zxid.to_be_bytes());
        let crc = crc32c::crc32c(&buf[..32]);
        buf[32..36].copy_from_slice(&crc.to_be_bytes());
        buf
    }

    /// Parses and verifies a header; the error says why it does not verify.
    pub fn decode(buf: &[u8; SEGMENT_HEADER_LEN]) -> Result<Self, String> {
        if buf[0..8] != SEGMENT_MAGIC {
            return Err("not a Corral log segment (bad magic)".to_string());
        }
        let crc = be_u32(&buf[32..36]);
        if crc != crc32c::crc32c(&buf[..32]) {
            return Err("segment header checksum mismatch".to_string());
        }
        let version = be_u32(&buf[8..12]);
        if version != FORMAT_VERSION {
            return Err(format!(
                "unsupported log format version {version} (this build reads {FORMAT_VERSION})"
            ));
        }
        let header = SegmentHeader {
            window: be_u32(&buf[12..16]),
            first_zxid: be_i64(&buf[16..24]),
            prev_zxid: be_i64(&buf[24..32]),
        };
        if (header.window as usize) < BATCH_HEADER_LEN + RECORD_HEADER_LEN {
            return Err(format!("unsync window {} too small", header.window));
        }
        if header.first_zxid <= header.prev_zxid || header.prev_zxid < 0 {
            return Err(format!(
                "first zxid {:#x} does not follow previous zxid {:#x}",
                header.first_zxid, header.prev_zxid
            ));
        }
        Ok(header)
    }
}

/// The file name of the segment whose first record is `first_zxid`.
pub fn segment_file_name(first_zxid: i64) -> String {
    assert!(first_zxid > 0, "zxid {first_zxid} is not a transaction");
    format!("{SEGMENT_PREFIX}{first_zxid:016x}")
}

/// The first zxid a segment file name stands for, `None` if the name is not a segment's
/// (the directory may hold other files, e.g. snapshots).
pub fn parse_segment_file_name(name: &str) -> Option<i64> {
    let hex = name.strip_prefix(SEGMENT_PREFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let zxid = i64::try_from(u64::from_str_radix(hex, 16).ok()?).ok()?;
    (zxid > 0).then_some(zxid)
}

/// Bytes `record` takes inside a batch payload.
pub fn encoded_record_len(record: &Record) -> usize {
    RECORD_HEADER_LEN + record.payload.len()
}

/// Appends one batch holding `records` (header and payload) to `out`.
pub fn encode_batch(records: &[Record], out: &mut Vec<u8>) {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let start = out.len();
    out.extend_from_slice(&[0u8; BATCH_HEADER_LEN]);
    for record in records {
        let len = u32::try_from(record.payload.len()).expect("record payload over 4 GiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&record.zxid.to_be_bytes());
        out.extend_from_slice(&record.payload);
    }
    let payload = &out[start + BATCH_HEADER_LEN..];
    let payload_len = u32::try_from(payload.len()).expect("batch over 4 GiB");
    let payload_crc = crc32c::crc32c(payload);
    let header = &mut out[start..start + BATCH_HEADER_LEN];
    header[0..4].copy_from_slice(&payload_len.to_be_bytes());
    header[4..8].copy_from_slice(&payload_crc.to_be_bytes());
    let header_crc = crc32c::crc32c(&header[..8]);
    header[8..12].copy_from_slice(&header_crc.to_be_bytes());
}

/// A batch header whose own checksum verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Bytes of payload that follow the header.
    pub payload_len: u32,
    /// CRC-32C of the payload.
    pub payload_crc: u32,
}

/// Parses a batch header; `None` when its checksum does not verify (torn, zero or garbage).
pub fn decode_batch_header(buf: &[u8; BATCH_HEADER_LEN]) -> Option<BatchHeader> {
    let header_crc = be_u32(&buf[8..12]);
    (header_crc == crc32c::crc32c(&buf[..8])).then(|| BatchHeader {
        payload_len: be_u32(&buf[0..4]),
        payload_crc: be_u32(&buf[4..8]),
    })
}

/// Splits a verified batch payload into its records; the error says what is malformed.
///
/// Does not check zxid order: that needs the log's context, which the caller has.
pub fn decode_payload(mut payload: &[u8]) -> Result<Vec<Record>, String> {
    if payload.is_empty() {
        return Err("empty batch".to_string());
    }
    let mut records = Vec::new();
    while !payload.is_empty() {
        if payload.len() < RECORD_HEADER_LEN {
            return Err(format!(
                "{} stray bytes after the last record of a batch",
                payload.len()
            ));
        }
        let len = be_u32(&payload[0..4]) as usize;
        let zxid = be_i64(&payload[4..12]);
        let rest = &payload[RECORD_HEADER_LEN..];
        if len > rest.len() {
            return Err(format!(
                "record {zxid:#x} claims {len} bytes, batch has {} left",
                rest.len()
            ));
        }
        records.push(Record::new(zxid, &rest[..len]));
        payload = &rest[len..];
    }
    Ok(records)
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes.try_into().expect("4 bytes"))
}

fn be_i64(bytes: &[u8]) -> i64 {
    i64::from_be_bytes(bytes.try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip() {
        let records = vec![
            Record::new(1, b"one".to_vec()),
            Record::new(2, Vec::new()),
            Record::new(0x1_0000_0001, vec![7u8; 1000]),
        ];
        let mut buf = b"prefix".to_vec();
        encode_batch(&records, &mut buf);
        let batch = &buf[6..];
        let header = decode_batch_header(batch[..BATCH_HEADER_LEN].try_into().unwrap()).unwrap();
        let payload = &batch[BATCH_HEADER_LEN..];
        assert_eq!(header.payload_len as usize, payload.len());
        assert_eq!(
            payload.len(),
            records.iter().map(encoded_record_len).sum::<usize>()
        );
        assert_eq!(header.payload_crc, crc32c::crc32c(payload));
        assert_eq!(decode_payload(payload).unwrap(), records);
    }

    #[test]
    fn batch_layout_is_big_endian() {
        let mut buf = Vec::new();
        encode_batch(&[Record::new(0x0102_0304_0506_0708, vec![0xaa])], &mut buf);
        assert_eq!(&buf[0..4], &13u32.to_be_bytes());
        assert_eq!(&buf[12..16], &1u32.to_be_bytes());
        assert_eq!(&buf[16..24], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(buf[24], 0xaa);
    }

    #[test]
    fn zero_and_flipped_batch_headers_do_not_verify() {
        assert_eq!(decode_batch_header(&[0; BATCH_HEADER_LEN]), None);
        let mut buf = Vec::new();
        encode_batch(&[Record::new(1, b"x".to_vec())], &mut buf);
        for bit in 0..BATCH_HEADER_LEN * 8 {
            let mut header: [u8; BATCH_HEADER_LEN] = buf[..BATCH_HEADER_LEN].try_into().unwrap();
            header[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_batch_header(&header), None, "bit {bit}");
        }
    }

    #[test]
    fn malformed_payloads_are_rejected() {
        assert!(decode_payload(&[]).is_err());
        assert!(decode_payload(&[0; 5]).is_err());
        let mut record = Vec::new();
        record.extend_from_slice(&10u32.to_be_bytes());
        record.extend_from_slice(&1i64.to_be_bytes());
        record.extend_from_slice(b"short");
        assert!(decode_payload(&record).is_err());
    }

    #[test]
    fn segment_header_round_trip_and_checks() {
        let header = SegmentHeader {
            window: 1 << 20,
            first_zxid: 0x5_0000_0001,
            prev_zxid: 0x4_0000_0009,
        };
        let buf = header.encode();
        assert_eq!(&buf[..8], b"CORRALOG");
        assert_eq!(SegmentHeader::decode(&buf), Ok(header));
        let mut flipped = buf;
        flipped[20] ^= 0x10;
        assert!(SegmentHeader::decode(&flipped)
            .unwrap_err()
            .contains("checksum"));
        assert!(SegmentHeader::decode(&[0; SEGMENT_HEADER_LEN]).is_err());
    }

    #[test]
    fn segment_names_sort_by_zxid_and_parse_back() {
        let a = segment_file_name(0xff);
        let b = segment_file_name(0x1_0000_0000);
        assert_eq!(a, "log.00000000000000ff");
        assert!(a < b);
        assert_eq!(parse_segment_file_name(&b), Some(0x1_0000_0000));
        for bad in [
            "log.ff",
            "log.00000000000000fg",
            "snapshot.0000000000000001",
            "log.0000000000000000",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
        assert_eq!(parse_segment_file_name("log.0000000000000001.tmp"), None);
    }
}
