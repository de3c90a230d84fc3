//! Reading an export's items: from bytes held whole ([`parse`]), or from a stream in
//! two passes that keep no record ([`outline`], then [`records`]), with one set of
//! rules for their order and their damage.
//!
//! Pure: bytes or a reader in, items out; it checks no signature or hash.

use bytes::{Buf, Bytes};
use ed25519_dalek::VerifyingKey;
use prost::Message as _;

use super::{header_key, VerifyError, FORMAT};
use crate::proto::{self, export_item::Item};

/// A parsed export: the header, records and checkpoints, in file order.
pub struct Export {
    /// The header.
    pub header: proto::ExportHeader,
    /// Encoded records.
    pub records: Vec<Bytes>,
    /// Signed checkpoint notes.
    pub checkpoints: Vec<String>,
}

/// Splits an export file into its items.
pub fn parse(bytes: Bytes) -> Result<Export, VerifyError> {
    let mut items = ItemReader::new(bytes.reader());
    let header = items.header()?;
    let (mut records, mut checkpoints) = (Vec::new(), Vec::new());
    for item in items {
        match item? {
            Body::Record(r) => records.push(r),
            Body::Checkpoint(c) => checkpoints.push(c),
        }
    }
    Ok(Export {
        header,
        records,
        checkpoints,
    })
}

/// What an export holds besides its records, read in one pass that keeps no record:
/// what a check needs before it replays them.
pub struct Outline {
    /// The header.
    pub header: proto::ExportHeader,
    /// Signed checkpoint notes.
    pub checkpoints: Vec<String>,
    /// The key a verifier given none starts from: the one the log's first key rotation
    /// rotates from, or the key its header names.
    pub starting_key: VerifyingKey,
}

/// Reads the [`Outline`] of the export `r` holds.
pub fn outline(r: impl std::io::BufRead) -> Result<Outline, VerifyError> {
    let mut items = ItemReader::new(r);
    let header = items.header()?;
    let (mut first_key, mut checkpoints) = (None, Vec::new());
    for item in items {
        match item? {
            Body::Record(bytes) if first_key.is_none() => first_key = rotated_from(&bytes)?,
            Body::Record(_) => {}
            Body::Checkpoint(c) => checkpoints.push(c),
        }
    }
    let starting_key = match first_key {
        Some(key) => key,
        None => header_key(&header)?,
    };
    Ok(Outline {
        header,
        checkpoints,
        starting_key,
    })
}

/// The records of the export `r` holds, one at a time.
pub fn records(r: impl std::io::BufRead) -> impl Iterator<Item = Result<Bytes, VerifyError>> {
    let mut items = ItemReader::new(r);
    let header = items.header().err();
    header
        .map(Err)
        .into_iter()
        .chain(items.map_while(|item| match item {
            Ok(Body::Record(r)) => Some(Ok(r)),
            Ok(Body::Checkpoint(_)) => None,
            Err(e) => Some(Err(e)),
        }))
}

/// The key the record `bytes` rotates from, if it is a key rotation.
fn rotated_from(bytes: &Bytes) -> Result<Option<VerifyingKey>, VerifyError> {
    let r = proto::AuditRecord::decode(bytes.clone())
        .map_err(|e| VerifyError::Format(e.to_string()))?;
    Ok(crate::audit::rotation::first_key(std::slice::from_ref(&r)))
}

/// An item after the header: a record, or (once the records end) a checkpoint.
enum Body {
    Record(Bytes),
    Checkpoint(String),
}

/// Largest item read: far above any record a node writes, and a bound on what a
/// damaged length makes a reader hold.
const MAX_ITEM_BYTES: u64 = 64 << 20;

/// An export's items read one at a time, in the order a file must hold them: the
/// header, the records, then the checkpoints.
struct ItemReader<R> {
    r: R,
    records: usize,
    checkpoints: usize,
}

impl<R: std::io::BufRead> ItemReader<R> {
    fn new(r: R) -> Self {
        ItemReader {
            r,
            records: 0,
            checkpoints: 0,
        }
    }

    /// The number of the item being read, counted as the messages about it count.
    fn item_number(&self) -> usize {
        self.records + self.checkpoints + 1
    }

    /// The header, which must come first and name this format.
    fn header(&mut self) -> Result<proto::ExportHeader, VerifyError> {
        let header = match self.next_item()? {
            Some(Item::Header(h)) => h,
            None => return Err(VerifyError::Format("no header".into())),
            Some(other) => return Err(self.unexpected(Some(other))),
        };
        if header.format != FORMAT {
            return Err(VerifyError::Format(format!(
                "format {:?}, expected {FORMAT:?}",
                header.format
            )));
        }
        Ok(header)
    }

    fn unexpected(&self, item: Option<Item>) -> VerifyError {
        VerifyError::Format(format!(
            "unexpected item after {} records and {} checkpoints: {:?}",
            self.records,
            self.checkpoints,
            item.map(|i| match i {
                Item::Header(_) => "header",
                Item::Record(_) => "record",
                Item::Checkpoint(_) => "checkpoint",
            })
        ))
    }

    /// The next item, or `None` at the end of the file.
    fn next_item(&mut self) -> Result<Option<Item>, VerifyError> {
        let Some(len) = self.length()? else {
            return Ok(None);
        };
        let position = self.item_number();
        let damaged = |why: String| {
            VerifyError::Format(format!(
                "item {position} does not decode ({why}); the file is cut short or damaged"
            ))
        };
        if len > MAX_ITEM_BYTES {
            return Err(damaged(format!("it says it is {len} bytes")));
        }
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(&mut self.r, len), &mut body)
            .map_err(|e| damaged(e.to_string()))?;
        if (body.len() as u64) < len {
            return Err(damaged("the file ends inside it".into()));
        }
        let item =
            proto::ExportItem::decode(Bytes::from(body)).map_err(|e| damaged(e.to_string()))?;
        Ok(item.item)
    }

    /// The varint length before the next item, or `None` at the end of the file.
    fn length(&mut self) -> Result<Option<u64>, VerifyError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let mut byte = [0u8];
            let n = std::io::Read::read(&mut self.r, &mut byte).map_err(|e| {
                VerifyError::Format(format!("reading item {}: {e}", self.item_number()))
            })?;
            if n == 0 {
                return match shift {
                    0 => Ok(None),
                    _ => Err(VerifyError::Format(format!(
                        "item {} does not decode (the file ends inside its length); the file is cut short or damaged",
                        self.item_number()
                    ))),
                };
            }
            value |= u64::from(byte[0] & 0x7f) << shift;
            if byte[0] & 0x80 == 0 {
                return Ok(Some(value));
            }
        }
        Err(VerifyError::Format(format!(
            "item {} does not decode (its length is not a varint); the file is cut short or damaged",
            self.item_number()
        )))
    }
}

impl<R: std::io::BufRead> Iterator for ItemReader<R> {
    type Item = Result<Body, VerifyError>;

    /// Records, then checkpoints; anything else out of place is an error (and the end).
    fn next(&mut self) -> Option<Self::Item> {
        let item = match self.next_item() {
            Ok(item) => item?,
            Err(e) => return Some(Err(e)),
        };
        match item {
            Item::Record(r) if self.checkpoints == 0 => {
                self.records += 1;
                Some(Ok(Body::Record(r)))
            }
            Item::Checkpoint(c) => {
                self.checkpoints += 1;
                Some(Ok(Body::Checkpoint(c)))
            }
            other => Some(Err(self.unexpected(Some(other)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: usize, checkpoints: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let header = proto::ExportHeader {
            format: FORMAT.into(),
            node_id: "hub".into(),
            public_key: Bytes::copy_from_slice(
                ed25519_dalek::SigningKey::from_bytes(&[7; 32])
                    .verifying_key()
                    .as_bytes(),
            ),
            ..Default::default()
        };
        super::super::write_item(&mut out, Item::Header(header));
        for i in 0..records {
            let r = proto::AuditRecord {
                seq: i as u64,
                ..Default::default()
            };
            super::super::write_item(&mut out, Item::Record(r.encode_to_vec().into()));
        }
        for i in 0..checkpoints {
            super::super::write_item(&mut out, Item::Checkpoint(format!("note {i}\n")));
        }
        out
    }

    #[test]
    fn a_stream_reads_what_the_whole_file_holds() {
        let bytes = file(5, 2);
        let whole = parse(Bytes::from(bytes.clone())).unwrap();
        let o = outline(&bytes[..]).unwrap();
        assert_eq!(o.header, whole.header);
        assert_eq!(o.checkpoints, whole.checkpoints);
        let streamed: Vec<Bytes> = records(&bytes[..]).collect::<Result<_, _>>().unwrap();
        assert_eq!(streamed, whole.records);
        assert_eq!(streamed.len(), 5);
    }

    #[test]
    fn damage_is_named_the_same_way_whole_or_streamed() {
        let bytes = file(3, 1);
        let cut = &bytes[..bytes.len() - 3];
        let whole = parse(Bytes::copy_from_slice(cut))
            .err()
            .unwrap()
            .to_string();
        let streamed = outline(cut).err().unwrap().to_string();
        assert_eq!(whole, streamed);
        assert!(
            whole.contains("item 4") && whole.contains("cut short"),
            "{whole}"
        );
        // A record after a checkpoint is out of place.
        let mut late = file(1, 1);
        late.extend_from_slice(&file(1, 0)[file(0, 0).len()..]);
        let err = records(&late[..]).find_map(Result::err);
        assert!(err.is_none(), "the records end at the first checkpoint");
        let err = outline(&late[..]).err().unwrap().to_string();
        assert!(
            err.contains("unexpected item after 1 records and 1 checkpoints"),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_length_is_refused_before_anything_is_held() {
        let mut bytes = file(0, 0);
        // A varint of 2^62: no reader may try to hold that.
        bytes.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
        let err = outline(&bytes[..]).err().unwrap().to_string();
        assert!(
            err.contains("says it is 4611686018427387904 bytes"),
            "{err}"
        );
        let mut endless = file(0, 0);
        endless.extend_from_slice(&[0xff; 11]);
        let err = outline(&endless[..]).err().unwrap().to_string();
        assert!(err.contains("not a varint"), "{err}");
    }
}
