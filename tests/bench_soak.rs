//! The soak in a minute: `renkei bench --phases soak` runs three nodes in a line at a
//! paced rate while four desks connect anew at the last node, and fails unless every
//! desk receives every bulletin of its minute. The hour it is meant to run, with its
//! figures, is in benches/README.md; here the minute must pass and its samples must
//! describe three live nodes.
//!
//! Named to sort early: libtest starts tests in name order, and this minute-long one
//! would otherwise be the suite's tail.

use crate::common;

use common::bench_report;

#[test]
fn a_minute_through_three_nodes_delivers_everything_to_desks_that_come_and_go() {
    let tmp = tempfile::tempdir().unwrap();
    let report = bench_report(
        tmp.path(),
        &[
            "--phases",
            "soak",
            "--soak-minutes",
            "1",
            "--soak-rate",
            "100",
            "--body-bytes",
            "256",
        ],
    );
    let soak = &report["soak"];
    assert_eq!(soak["bulletins_per_minute"], 6000);
    let nodes = soak["samples"][0]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        let at = |key: &str| n[key].as_u64().unwrap_or(0);
        assert!(at("rss_bytes") > 0 && at("open_files") > 0, "{n}");
        // Every node stored the minute's bulletins, in its value files.
        assert!(at("value_file_bytes") > 6000 * 256, "{n}");
        // And its database, beside them.
        assert!(at("engine_bytes") > 0, "{n}");
        assert_eq!(
            at("database_bytes"),
            at("value_file_bytes") + at("engine_bytes")
        );
    }
}
