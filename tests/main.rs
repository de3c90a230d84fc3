//! renkei's scenario tests, in one binary: each module is a story told against real
//! `renkei` processes or a node in this process (start a federation, publish, assert who
//! got what). One binary links tokio, quinn and sled once; `cargo test --test scenarios
//! MODULE::` runs one story.

mod common;

mod audit;
mod backup;
mod bench_soak;
mod budget;
mod check_config;
mod cli;
mod cli_broker;
mod clock;
mod crash;
mod dashboard;
mod delivery;
mod demo;
mod deploy;
mod desk;
mod federation;
mod full_disk;
mod hostile;
mod interop;
mod keys;
mod layering;
mod lossy;
mod metrics;
mod misp;
mod monitoring;
mod onboarding;
mod partition;
mod partners;
mod policy_explain;
mod rates;
mod receipts;
mod rejections;
mod reload;
mod runbook;
mod secrets;
mod sharing;
mod taxii;
mod tour;
mod withdraw;
mod witness;
