//! A hundred partners connected to one node at once, each publishing and each
//! receiving everyone else's bulletins; then again with one of them stalled (subscribed,
//! never reading nor acking). Everyone else still receives everything: a stalled
//! partner holds up only its own queue. Run through `renkei bench --phases partners`,
//! which fails if a reading partner misses a bulletin; the figures it prints are
//! measured in benches/README.md, not asserted here.

use crate::common;

use common::bench_report;

#[test]
fn a_hundred_partners_share_and_one_stalled_holds_up_nobody_else() {
    let tmp = tempfile::tempdir().unwrap();
    let report = bench_report(
        tmp.path(),
        &[
            "--phases",
            "partners",
            "--partners",
            "100",
            "--rate",
            "200",
            "--latency-seconds",
            "1",
            "--skip-verify",
            "--body-bytes",
            "256",
        ],
    );
    let p = &report["partners"];
    assert_eq!(p["partners"], 100);
    // Two bulletins each: every partner receives the 99 others' two.
    assert_eq!(p["all_reading"]["published"], 200);
    assert_eq!(p["all_reading"]["deliveries_measured"], 100 * 99 * 2);
    // With partner 0 stalled, the 99 others still receive all 99 others' two.
    assert_eq!(p["one_stalled"]["published"], 200);
    assert_eq!(p["one_stalled"]["deliveries_measured"], 99 * 99 * 2);
}
