//! A node whose wall clock jumps, as an NTP step or an operator can make it: a day
//! forward, then back to an hour behind true time, then a restart while it is behind.
//! Throughout, it accepts and delivers; its records' times never go back (a record
//! made while the clock is behind carries the newest time already recorded); every
//! checkpoint it hands out is larger than the one before and the whole log verifies;
//! and the year's figures count each bulletin on the day its record says.
//!
//! The node runs under Debian's libfaketime (`.ci/run` installs it) with only the wall clock
//! moved: timers run on the monotonic clock, which an NTP step leaves alone.

use crate::common;

use std::path::{Path, PathBuf};

use common::configs::node_toml;
use common::federation::{connect_as, sign_as, PATIENCE};
use common::pki;
use common::served::{serve_with_env, Served};
use prost::Message as _;
use renkei::bulletin::{Kind, Tlp};
use renkei::client::Client;
use renkei::identity::PartnerId;
use renkei::proto::{self, AuditEvent, PublishStatus};

/// Where Debian's libfaketime puts the library, by architecture.
const LIBFAKETIME: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
];

/// The library's path, if installed.
fn libfaketime() -> Option<&'static str> {
    LIBFAKETIME.into_iter().find(|p| Path::new(p).exists())
}

/// Bulletins the US desk publishes at each step.
const EACH: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_clock_jumps_keeps_its_log_in_order_and_its_promises() {
    common::debian::ensure("libfaketime", "clock", || libfaketime().is_some());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut hub = Hub::start(dir);
    let mut desks = Desks::connect(dir, &hub.addr).await;
    let mut sizes = Vec::new();

    for offset in ["+0", "+1d", "-1h"] {
        hub.set_clock(offset);
        sizes.push(desks.publish_receive_and_checkpoint(offset).await);
    }
    // Restarted while an hour behind: the log's newest time is read back from disk.
    desks.close().await;
    hub.restart();
    let mut desks = Desks::connect(dir, &hub.addr).await;
    sizes.push(desks.publish_receive_and_checkpoint("-1h, restarted").await);
    assert!(
        sizes.windows(2).all(|w| w[0] < w[1]),
        "every checkpoint larger than the one before: {sizes:?}"
    );

    let accepted = desks.accepted_records(4 * EACH).await;
    records_never_go_back(&accepted);
    desks.each_day_counts_what_its_records_say(&accepted).await;
    desks.close().await;
    hub.stop();
    // Every record in order, every checkpoint consistent with the log.
    common::log_verifies_offline(dir, "data", "jp-mod");
}

/// The node, its address, and the directory of the file libfaketime reads its clock's
/// offset from.
struct Hub {
    dir: PathBuf,
    served: Option<Served>,
    addr: std::net::SocketAddr,
}

impl Hub {
    fn start(dir: &Path) -> Hub {
        // Certificates start an hour before they are made (pki::BACKDATE), so a node an
        // hour behind true time still finds them valid.
        pki(dir, "jp-mod,us-dod,au-dod,audit-office");
        // Bulletins stamped by the desks' true clocks look an hour ahead to a node an
        // hour behind: the skew allowed covers it, so what is tested is the node.
        node_toml("jp-mod")
            .with(&format!(
                "[limits]\nmax_clock_skew_secs = 7200\n[audit]\ncheckpoint_every = 5\n\n\
                 [[partner]]\nid = \"us-dod\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{{ public = \"{}\" }}]\n\n\
                 [[partner]]\nid = \"au-dod\"\nrole = \"liaison\"\nclearance = \"red\"\n\n\
                 [[partner]]\nid = \"audit-office\"\nrole = \"auditor\"\n",
                common::public_key(dir, "us-dod"),
            ))
            .write(dir, "hub.toml");
        std::fs::write(dir.join("faketime"), "+0").unwrap();
        let (served, addr) = serve_faked(dir);
        Hub {
            dir: dir.to_owned(),
            served: Some(served),
            addr: addr.parse().unwrap(),
        }
    }

    /// Moves the node's wall clock to true time plus `offset` (libfaketime's syntax),
    /// at once: the file is replaced whole, so no clock read sees it half written.
    fn set_clock(&mut self, offset: &str) {
        let next = self.dir.join("faketime.next");
        std::fs::write(&next, offset).unwrap();
        std::fs::rename(next, self.dir.join("faketime")).unwrap();
    }

    fn restart(&mut self) {
        self.stop();
        let (served, addr) = serve_faked(&self.dir);
        self.served = Some(served);
        self.addr = addr.parse().unwrap();
    }

    fn stop(&mut self) {
        let served = self.served.take().expect("the node runs");
        assert!(served.stop(PATIENCE).success());
    }
}

/// `renkei serve` on `dir/hub.toml` with its wall clock read through libfaketime.
fn serve_faked(dir: &Path) -> (Served, String) {
    let clock = dir.join("faketime");
    let env = [
        ("LD_PRELOAD", libfaketime().expect("libfaketime")),
        ("FAKETIME_TIMESTAMP_FILE", clock.to_str().unwrap()),
        // Read the file at every clock read, so a jump takes effect at once.
        ("FAKETIME_NO_CACHE", "1"),
        ("DONT_FAKE_MONOTONIC", "1"),
    ];
    serve_with_env(dir, "hub.toml", &env)
}

/// The US desk publishing, the Australian desk receiving and the audit office.
struct Desks {
    dir: PathBuf,
    us: Client,
    au: Client,
    office: Client,
}

impl Desks {
    async fn connect(dir: &Path, addr: &std::net::SocketAddr) -> Desks {
        let hub: PartnerId = "jp-mod".parse().unwrap();
        let certs = dir.join("certs");
        let connect = async |id| connect_as(&certs, id, *addr, &hub).await.unwrap();
        Desks {
            dir: dir.to_owned(),
            us: connect("us-dod").await,
            au: connect("au-dod").await,
            office: connect("audit-office").await,
        }
    }

    /// The US desk publishes EACH bulletins, all accepted; the Australian desk
    /// receives each once and acknowledges it; returns the size of a checkpoint the
    /// audit office asks for then.
    async fn publish_receive_and_checkpoint(&mut self, step: &str) -> u64 {
        let key = common::signing_key(&self.dir, "us-dod");
        let mut ids = Vec::new();
        for n in 0..EACH {
            let title = format!("advisory {n} at {step}");
            let b = sign_as(
                &key,
                "us-dod",
                Tlp::Green,
                Kind::Indicator,
                &title,
                &[],
                &[],
            );
            let r = tokio::time::timeout(PATIENCE, self.us.publish(b))
                .await
                .expect("answered in time")
                .unwrap();
            assert_eq!(
                r.status,
                PublishStatus::Accepted as i32,
                "{step}: {}",
                r.message
            );
            ids.push(r.bulletin_id);
        }
        self.au_receives(&ids, step).await;
        // A C2SP checkpoint's second line is the tree's size.
        let checkpoint = self.office.checkpoint().await.unwrap();
        checkpoint.note.lines().nth(1).unwrap().parse().unwrap()
    }

    /// The Australian desk receives exactly `ids`, in order, and acknowledges them.
    async fn au_receives(&self, ids: &[String], step: &str) {
        let mut sub = self.au.subscribe(16).await.unwrap();
        let mut got = Vec::new();
        while got.len() < ids.len() {
            let d = tokio::time::timeout(PATIENCE, sub.next())
                .await
                .unwrap_or_else(|_| panic!("{step}: deliveries stopped after {got:?}"))
                .unwrap()
                .expect("a delivery");
            let signed = d.bulletin.expect("a bulletin");
            let b = proto::Bulletin::decode(signed.bulletin).unwrap();
            got.push(b.id);
            sub.ack(vec![d.seq]).await.unwrap();
        }
        assert_eq!(got, ids, "{step}: each delivered once, in order");
        sub.close().await.unwrap();
    }

    /// Every BULLETIN_ACCEPTED record, as the audit office reads them: `published`.
    async fn accepted_records(&self, published: usize) -> Vec<proto::AuditRecord> {
        let q = proto::AuditQuery {
            event: AuditEvent::BulletinAccepted as u32,
            limit: 1000,
            ..Default::default()
        };
        let page = self.office.audit_query(q).await.unwrap();
        let records: Vec<_> = page
            .records
            .iter()
            .map(|r| proto::AuditRecord::decode(r.clone()).unwrap())
            .collect();
        assert_eq!(records.len(), published, "every publish recorded");
        records
    }

    /// For each day the records name, the fiscal counting of that day holds exactly
    /// the bulletins recorded on it.
    async fn each_day_counts_what_its_records_say(&self, records: &[proto::AuditRecord]) {
        let mut days = std::collections::BTreeMap::<u32, u64>::new();
        for r in records {
            *days
                .entry(renkei::metrics::day_of(r.time_unix_ms))
                .or_default() += 1;
        }
        for (day, expected) in days {
            let report = self
                .office
                .metrics(proto::MetricsRequest {
                    since_day: day,
                    until_day: day + 1,
                    ..Default::default()
                })
                .await
                .unwrap();
            let counted = received_from_us(&report);
            assert_eq!(counted, expected, "day {day}: {report:?}");
        }
    }

    async fn close(self) {
        for c in [self.us, self.au, self.office] {
            c.close().await;
        }
    }
}

/// The US desk's `received.indicator` figure in `report`.
fn received_from_us(report: &proto::MetricsReport) -> u64 {
    report
        .partners
        .iter()
        .filter(|p| p.partner == "us-dod")
        .flat_map(|p| &p.figures)
        .filter(|f| f.name == "received.indicator")
        .map(|f| f.value)
        .sum()
}

/// Record times never go back, and what was recorded once the clock was behind
/// carries the time recorded while it was a day ahead.
fn records_never_go_back(records: &[proto::AuditRecord]) {
    let times: Vec<u64> = records.iter().map(|r| r.time_unix_ms).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "record times in log order: {times:?}"
    );
    let day_ahead = times[EACH..2 * EACH].iter().max().unwrap();
    let behind = &times[2 * EACH..];
    assert!(
        behind.iter().all(|t| t >= day_ahead),
        "records made an hour behind kept the day-ahead time {day_ahead}: {behind:?}"
    );
    let true_now = renkei::timestamp::Timestamp::now().unix_ms();
    assert!(
        *day_ahead > true_now + 20 * 3600 * 1000,
        "the node's clock was a day ahead when it recorded {day_ahead} (true time {true_now})"
    );
}
