//! The wire types generated from `proto/renkei/v1/*.proto` by prost at build time.
//!
//! Nothing here is written by hand: change the `.proto` files instead. `bytes`
//! fields are `bytes::Bytes`, so decoding a frame slices it instead of copying.

#![allow(missing_docs, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/renkei.v1.rs"));
