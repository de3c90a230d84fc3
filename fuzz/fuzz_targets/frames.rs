//! Bytes a peer sends on a stream: length-prefixed ClientFrames, taken one by one as the
//! node takes them, each Publish's bulletin checked as the node checks it. Nothing may
//! panic, and a frame over the limit is refused before it is buffered.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use renkei::bulletin::{Limits, UnverifiedBulletin};
use renkei::proto::{client_frame::Frame, ClientFrame};

const MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    let limits = Limits::default();
    while let Ok(Some(body)) = renkei::transport::take_frame(&mut buf, MAX) {
        assert!(body.len() <= MAX);
        let Ok(frame) = ClientFrame::decode(body) else { break };
        if let Some(Frame::Publish(p)) = frame.frame {
            if let Some(signed) = p.bulletin {
                let _ = UnverifiedBulletin::from_signed(signed, &limits);
            }
        }
    }
});
