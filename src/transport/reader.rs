//! Reading a stream's frames through one buffer: a chunk read from QUIC may carry many
//! pipelined frames, and every frame already received can be taken without waiting,
//! which is what lets the node verify a stream's publishes as a batch.
//!
//! Reading a length prefix byte by byte from quinn locks the connection for each byte;
//! here one read takes whatever has arrived. Waiting ([`FrameReader::next`]) is cancel
//! safe: bytes move into the buffer only when a read completes.

use std::sync::atomic::Ordering;

use bytes::{Buf as _, Bytes, BytesMut};
use prost::Message;

use std::sync::Arc;

use super::{FrameCounts, FrameError};

/// Most bytes taken from quinn in one read.
const READ_CHUNK: usize = 64 * 1024;

/// The frames of one receiving stream.
pub struct FrameReader {
    recv: quinn::RecvStream,
    buf: BytesMut,
    max: usize,
    finished: bool,
    counts: Arc<FrameCounts>,
}

/// What the buffer holds at its front.
enum Parsed {
    /// A whole frame of this many bytes after a prefix of that many.
    Frame { prefix: usize, len: usize },
    /// Not yet a whole frame; its length, once the prefix is whole.
    Partial(Option<usize>),
}

impl FrameReader {
    /// Reads frames of at most `max` bytes from `recv`.
    pub fn new(recv: quinn::RecvStream, max: usize, counts: Arc<FrameCounts>) -> FrameReader {
        FrameReader {
            recv,
            buf: BytesMut::new(),
            max,
            finished: false,
            counts,
        }
    }

    /// Changes the frame limit for the frames still to come.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// The stream, e.g. to stop it with an error code.
    pub fn stream(&mut self) -> &mut quinn::RecvStream {
        &mut self.recv
    }

    /// The next frame; `None` when the stream ended cleanly between frames.
    pub async fn next<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        loop {
            if let Some(m) = self.buffered()? {
                return Ok(Some(m));
            }
            if self.finished {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
            self.fill().await?;
        }
    }

    /// The length of the next frame, once its prefix has arrived: what a reader must
    /// find room for before it takes the frame. `None` when the stream ended cleanly
    /// between frames. Reads ahead at most one chunk past the prefix.
    pub async fn next_len(&mut self) -> Result<Option<usize>, FrameError> {
        loop {
            if let Parsed::Frame { len, .. } | Parsed::Partial(Some(len)) =
                parse_prefix(&self.buf, self.max).inspect_err(|_| self.refused())?
            {
                return Ok(Some(len));
            }
            if self.finished {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    self.refused();
                    Err(FrameError::Truncated)
                };
            }
            self.fill().await?;
        }
    }

    fn refused(&self) {
        self.counts.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads whatever has arrived into the buffer.
    async fn fill(&mut self) -> Result<(), FrameError> {
        match self.recv.read_chunk(READ_CHUNK, true).await? {
            Some(chunk) => self.buf.extend_from_slice(&chunk.bytes),
            None => self.finished = true,
        }
        Ok(())
    }

    /// A frame already received in full, without waiting; `None` if there is none yet.
    pub fn buffered<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        let result = self.take();
        let counter = match &result {
            Ok(Some(_)) => &self.counts.read,
            Err(_) => &self.counts.refused,
            Ok(None) => return result,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn take<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        match take_frame(&mut self.buf, self.max)? {
            Some(body) => Ok(Some(M::decode(body)?)),
            None => Ok(None),
        }
    }
}

/// Takes the whole frame at the front of `buf`, if there is one, as bytes of its own:
/// a slice of the read buffer would keep all of it (64 KiB, or a large refused frame
/// read with it) alive for as long as anything decoded from the frame lives, e.g. a
/// bulletin waiting for its commit. Copying also leaves the buffer unshared, so it is
/// reused rather than reallocated.
pub fn take_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, FrameError> {
    match parse_prefix(buf, max)? {
        Parsed::Partial(_) => Ok(None),
        Parsed::Frame { prefix, len } => {
            buf.advance(prefix);
            let body = Bytes::copy_from_slice(buf.get(..len).unwrap_or_default());
            buf.advance(len);
            Ok(Some(body))
        }
    }
}

/// Reads the varint length prefix at the front of `buf` (at most 10 bytes, the tenth
/// carrying only the 64th bit) and says whether the whole frame is there.
fn parse_prefix(buf: &[u8], max: usize) -> Result<Parsed, FrameError> {
    let mut len: u64 = 0;
    for (i, byte) in buf.iter().take(10).enumerate() {
        if i == 9 && *byte > 1 {
            return Err(FrameError::BadLength);
        }
        len |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if len > max as u64 {
                return Err(FrameError::TooLarge { len, max });
            }
            let (prefix, len) = (i + 1, len as usize);
            return Ok(if buf.len() - prefix >= len {
                Parsed::Frame { prefix, len }
            } else {
                Parsed::Partial(Some(len))
            });
        }
    }
    if buf.len() >= 10 {
        Err(FrameError::BadLength)
    } else {
        Ok(Parsed::Partial(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix_of(len: u64) -> Vec<u8> {
        let mut v = Vec::new();
        prost::encoding::encode_varint(len, &mut v);
        v
    }

    #[test]
    fn frames_are_taken_one_by_one_and_do_not_share_the_read_buffer() {
        let mut buf = BytesMut::new();
        for (len, byte) in [(3usize, 1u8), (200, 2), (5, 3)] {
            buf.extend_from_slice(&prefix_of(len as u64));
            buf.extend(std::iter::repeat_n(byte, len));
        }
        buf.extend_from_slice(&prefix_of(10)[..]);
        let (start, end) = (
            buf.as_ptr() as usize,
            buf.as_ptr() as usize + buf.capacity(),
        );
        for (len, byte) in [(3usize, 1u8), (200, 2), (5, 3)] {
            let frame = take_frame(&mut buf, 1000).unwrap().unwrap();
            assert_eq!(frame, vec![byte; len]);
            let at = frame.as_ptr() as usize;
            assert!(
                at + len <= start || at >= end,
                "a copy, not a slice of the buffer"
            );
        }
        // The fourth frame's prefix is there, its body not yet.
        assert_eq!(take_frame(&mut buf, 1000).unwrap(), None);
        assert_eq!(buf.len(), 1);
    }

    #[test]
    fn a_frame_is_whole_only_when_its_last_byte_is_there() {
        let mut buf = prefix_of(300);
        assert!(matches!(
            parse_prefix(&buf, 1000),
            Ok(Parsed::Partial(Some(300)))
        ));
        buf.extend(std::iter::repeat_n(0, 299));
        assert!(matches!(
            parse_prefix(&buf, 1000),
            Ok(Parsed::Partial(Some(300)))
        ));
        buf.push(0);
        assert!(matches!(
            parse_prefix(&buf, 1000),
            Ok(Parsed::Frame {
                prefix: 2,
                len: 300
            })
        ));
        // A partial prefix is not an error yet.
        assert!(matches!(
            parse_prefix(&buf[..1], 1000),
            Ok(Parsed::Partial(None))
        ));
        assert!(matches!(parse_prefix(&[], 1000), Ok(Parsed::Partial(None))));
    }

    #[test]
    fn oversize_and_overlong_prefixes_are_refused_before_the_body_arrives() {
        assert!(matches!(
            parse_prefix(&prefix_of(1001), 1000),
            Err(FrameError::TooLarge {
                len: 1001,
                max: 1000
            })
        ));
        assert!(matches!(
            parse_prefix(&[0x80; 10], usize::MAX),
            Err(FrameError::BadLength)
        ));
        let mut tenth_too_big = vec![0xff; 9];
        tenth_too_big.push(0x02);
        assert!(matches!(
            parse_prefix(&tenth_too_big, usize::MAX),
            Err(FrameError::BadLength)
        ));
        assert_eq!(prefix_of(u64::MAX).len(), 10);
        assert!(matches!(
            parse_prefix(&prefix_of(u64::MAX), usize::MAX),
            Ok(Parsed::Partial(Some(_)))
        ));
    }
}
