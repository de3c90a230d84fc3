use super::period::{date_of, day_number};
use super::*;
use crate::proto::AuditRecord;
use time::{Date, Month};

fn record(event: AuditEvent, partner: &str, day: u32) -> AuditRecord {
    AuditRecord {
        event: event as i32,
        partner: partner.into(),
        time_unix_ms: u64::from(day) * DAY_MS + 5,
        ..Default::default()
    }
}

fn accepted(from: &str, kind: Kind, shared: &[&str], withheld: &[&str], day: u32) -> AuditRecord {
    let mut r = record(AuditEvent::BulletinAccepted, from, day);
    r.kind = kind.to_proto() as i32;
    for p in shared {
        r.decisions.push(proto::Decision {
            partner: (*p).into(),
            shared: true,
            ..Default::default()
        });
    }
    for p in withheld {
        r.decisions.push(proto::Decision {
            partner: (*p).into(),
            shared: false,
            reason: proto::WithholdReason::AboveClearance as i32,
            detail: String::new(),
            ..Default::default()
        });
    }
    r
}

fn figure(report: &proto::MetricsReport, partner: &str, name: &str) -> (u64, u64) {
    report
        .partners
        .iter()
        .find(|p| p.partner == partner)
        .and_then(|p| p.figures.iter().find(|f| f.name == name))
        .map_or((0, 0), |f| (f.value, f.previous))
}

#[test]
fn each_record_moves_the_counters_a_reader_expects() {
    let r = accepted("us-dod", Kind::Consultation, &["uk-mod"], &["ee-mod"], 3);
    let names: Vec<_> = count(&r)
        .into_iter()
        .filter(|c| !c.name.starts_with(BY_AFFILIATION))
        .map(|c| (c.partner, c.name))
        .collect();
    assert_eq!(
        names,
        [
            ("us-dod", "received.consultation".into()),
            ("uk-mod", "shared.consultation".into()),
            ("ee-mod", "withheld.above_clearance".into()),
        ]
    );
    let mut r = record(AuditEvent::BulletinRejected, "", 3);
    r.error = proto::ErrorCode::BadSignature as i32;
    assert_eq!(count(&r)[0].name, "rejected.bad_signature");
    assert_eq!(count(&r)[0].partner, UNNAMED);
    let mut r = record(AuditEvent::Acked, "uk-mod", 3);
    r.bulletin_seqs = vec![1, 2, 3];
    r.latencies_ms = vec![0, 3, 1_000_000_000];
    let c = count(&r);
    assert_eq!((c[0].name.as_ref(), c[0].by), ("acked", 3));
    let buckets: Vec<_> = c[1..].iter().map(|c| c.name.as_ref()).collect();
    assert_eq!(
        buckets,
        [
            "latency.le_1",
            "latency.le_5",
            "latency.le_inf",
            "latency.sum_ms"
        ]
    );
    assert_eq!(c[4].by, 1_000_000_003);
}

#[test]
fn codes_this_build_does_not_know_still_get_a_counter_of_their_own() {
    // Within the table of names formatted once, and beyond it.
    for (kind, reason, error) in [(40, 41, 42), (999, 1_000, -1)] {
        let mut r = accepted("us-dod", Kind::Consultation, &["uk-mod"], &["ee-mod"], 3);
        r.kind = kind;
        r.decisions[1].reason = reason;
        let names: Vec<String> = count(&r).into_iter().map(|c| c.name.into()).collect();
        assert_eq!(
            names,
            [
                format!("received.kind_{kind}"),
                format!("shared.kind_{kind}"),
                format!("withheld.reason_{reason}"),
                format!("country.events.kind_{kind}"),
                format!("country.received.kind_{kind}"),
                format!("country.shared.kind_{kind}"),
                format!("country.took_part.kind_{kind}"),
            ]
        );
        let mut r = record(AuditEvent::BulletinRejected, "uk-mod", 3);
        r.error = error;
        assert_eq!(count(&r)[0].name, format!("rejected.code_{error}"));
    }
}

#[test]
fn fiscal_years_start_in_the_configured_month() {
    let fy = Period::fiscal_year(2026, 4).unwrap();
    assert_eq!(fy.label, "FY2026 (2026-04-01 to 2027-03-31)");
    assert_eq!(date_of(fy.since).to_string(), "2026-04-01");
    assert_eq!(date_of(fy.until).to_string(), "2027-04-01");
    assert_eq!(date_of(fy.previous.0).to_string(), "2025-04-01");
    assert_eq!(fy.spans(3).len(), 4);
    assert_eq!(fy.spans(1).len(), 12);
    assert_eq!(fy.spans(1)[0].2, "2026-04");
    // 2027-02-10 is still in FY2026; 2027-04-01 starts FY2027.
    let feb = day_number(Date::from_calendar_date(2027, Month::February, 10).unwrap()).unwrap();
    assert_eq!(Period::fiscal_year_of(feb, 4).unwrap(), fy);
    assert_eq!(
        Period::fiscal_year_of(fy.until, 4).unwrap().label,
        "FY2027 (2027-04-01 to 2028-03-31)"
    );
    assert_eq!(
        Period::fiscal_year(2026, 1).unwrap().label,
        "FY2026 (2026-01-01 to 2026-12-31)"
    );
    assert!(Period::fiscal_year(2026, 13).is_err());
    assert!(Period::days(10, 10).is_err());
    assert!(Period::days(1, u32::MAX).is_err(), "at most ten years");
    assert!(
        Period::days(u32::MAX - 10, u32::MAX).is_err(),
        "no such dates"
    );
}

/// The records of the report test: long `before`, `last_year`, `this_year` and just
/// after the fiscal year `fy`.
fn two_years_of_records(
    fy: &Period,
    before: u32,
    last_year: u32,
    this_year: u32,
) -> Vec<AuditRecord> {
    let mut records = vec![
        // Long before: uk-mod exchanged both ways once.
        accepted("uk-mod", Kind::Advisory, &["us-dod"], &[], before),
        accepted("us-dod", Kind::Advisory, &["uk-mod"], &[], before),
        // Last year: one consultation from us-dod, shared with uk-mod.
        accepted("us-dod", Kind::Consultation, &["uk-mod"], &[], last_year),
    ];
    // This year: two consultations and an exercise from us-dod; uk-mod answers once.
    for kind in [Kind::Consultation, Kind::Consultation, Kind::Exercise] {
        records.push(accepted(
            "us-dod",
            kind,
            &["uk-mod", "au-dod"],
            &["ee-mod"],
            this_year,
        ));
    }
    records.push(accepted(
        "uk-mod",
        Kind::Consultation,
        &["us-dod"],
        &[],
        this_year,
    ));
    let mut ack = record(AuditEvent::Acked, "uk-mod", this_year);
    ack.bulletin_seqs = (0..20).collect();
    ack.latencies_ms = (0..20).map(|i| if i < 19 { 4 } else { 900 }).collect();
    records.push(ack);
    // After the period: ignored.
    records.push(accepted(
        "us-dod",
        Kind::Exercise,
        &["uk-mod"],
        &[],
        fy.until + 1,
    ));
    records
}

#[test]
fn the_report_gives_outputs_growth_engagement_and_latency() {
    let fy = Period::fiscal_year(2026, 4).unwrap();
    let (before, last_year, this_year) = (fy.previous.0 - 30, fy.previous.0 + 3, fy.since + 40);
    let records = two_years_of_records(&fy, before, last_year, this_year);

    let rows = aggregate(&records)
        .into_iter()
        .map(|((d, p, n), v)| (d, p, n, v));
    let report = report("jp-mod", &fy, rows);
    assert_eq!(figure(&report, "us-dod", "received.consultation"), (2, 1));
    assert_eq!(figure(&report, "us-dod", "received.exercise"), (1, 0));
    assert_eq!(figure(&report, "uk-mod", "shared.consultation"), (2, 1));
    assert_eq!(
        figure(&report, "ee-mod", "withheld.above_clearance"),
        (3, 0)
    );
    // Engaged both ways this year: us-dod and uk-mod; au-dod only received.
    assert_eq!(report.engaged, ["uk-mod", "us-dod"]);
    assert_eq!(
        report.newly_engaged,
        Vec::<String>::new(),
        "both exchanged before"
    );
    assert_eq!(
        report.engaged_previous, 0,
        "last year nobody sent both ways"
    );
    let uk = report
        .partners
        .iter()
        .find(|p| p.partner == "uk-mod")
        .unwrap();
    let latency = uk.latency.unwrap();
    assert_eq!((latency.acked, latency.p50_ms, latency.p95_ms), (20, 5, 5));
    assert!(uk.figures.iter().all(|f| !f.name.starts_with("latency.")));
    // Roll-ups: the month of `this_year` holds every figure of the year.
    let month = report
        .months
        .iter()
        .find(|m| (m.since_day..m.until_day).contains(&this_year))
        .unwrap();
    let consultations = month
        .figures
        .iter()
        .find(|f| f.name == "received.consultation")
        .unwrap();
    assert_eq!(consultations.value, 3);
    assert_eq!(report.quarters.len(), 4);
    assert_eq!(report.quarters[0].label, "Q1 from 2026-04");
}

#[test]
fn commit_durations_fall_in_their_buckets() {
    use super::prometheus::{DurationHistogram, COMMIT_BOUNDS_US};
    let h = DurationHistogram::default();
    for us in [100, 250, 251, 3_000, 5_000_000] {
        h.observe(us);
    }
    let s = h.snapshot();
    assert_eq!(s.buckets.len(), COMMIT_BOUNDS_US.len() + 1);
    assert_eq!(s.buckets[0], 2, "250 µs is at most the first bound");
    assert_eq!(s.buckets[1], 1);
    assert_eq!(s.buckets[4], 1, "3 ms is in the 5 ms bucket");
    assert_eq!(s.buckets[COMMIT_BOUNDS_US.len()], 1, "5 s overflows");
    assert_eq!(s.sum_us, 100 + 250 + 251 + 3_000 + 5_000_000);
}

/// `accepted` with whose each party was: the origin's affiliation, then the receivers'
/// (partner, affiliation), all shared.
fn accepted_from(origin: &str, kind: Kind, receivers: &[(&str, &str)]) -> AuditRecord {
    let mut r = accepted(
        "nato-ccdcoe",
        kind,
        &receivers.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        &[],
        3,
    );
    r.affiliation = origin.into();
    for (d, (_, a)) in r.decisions.iter_mut().zip(receivers) {
        d.affiliation = (*a).into();
    }
    r
}

fn by_affiliation(r: &AuditRecord) -> Vec<(String, String, u64)> {
    let mut out: Vec<_> = count(r)
        .into_iter()
        .filter(|c| c.name.starts_with(BY_AFFILIATION))
        .map(|c| (c.partner.to_owned(), c.name.into_owned(), c.by))
        .collect();
    out.sort();
    out
}

#[test]
fn a_relayed_bulletin_counts_for_its_origins_country_not_the_relay() {
    // Estonia's desk published at the NATO node, which handed it to this one.
    let r = accepted_from("EE", Kind::Advisory, &[("jp-cdc", "JP")]);
    let t = |p: &str, n: &str| (p.to_owned(), format!("country.{n}.advisory"), 1);
    assert_eq!(
        by_affiliation(&r),
        [
            t("*", "events"),
            t("EE", "received"),
            t("EE", "took_part"),
            t("JP", "shared"),
            t("JP", "took_part"),
        ],
        "nothing for NATO-CCDCOE, the relay"
    );
}

#[test]
fn a_consultation_shared_with_three_countries_is_one_event_and_each_takes_part_once() {
    let r = accepted_from(
        "JP",
        Kind::Consultation,
        &[
            ("us-dod", "US"),
            ("au-dod", "AU"),
            ("au-cert", "AU"),
            ("uk-mod", "GB"),
            ("x", ""),
        ],
    );
    let counts = by_affiliation(&r);
    let named = |n: &str| -> Vec<&str> {
        counts
            .iter()
            .filter(|(_, name, _)| name == &format!("country.{n}.consultation"))
            .map(|(p, _, by)| {
                assert_eq!(*by, 1, "{p}: once however many of its partners");
                p.as_str()
            })
            .collect()
    };
    assert_eq!(named("events"), ["*"]);
    assert_eq!(named("shared"), ["?", "AU", "GB", "US"]);
    assert_eq!(named("took_part"), ["?", "AU", "GB", "JP", "US"]);
    assert_eq!(named("received"), ["JP"]);
    // Old records name nobody's affiliation: they count as unknown.
    let old = accepted("nato-ccdcoe", Kind::Consultation, &["jp-cdc"], &[], 3);
    assert!(by_affiliation(&old).contains(&(
        "?".into(),
        "country.received.consultation".into(),
        1
    )));
}
