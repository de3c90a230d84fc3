//! `renkei demo`: a local federation on embedded defaults. A hub node run by Japan's
//! defence ministry (`jp-mod`) and six partner desks on 127.0.0.1, each with its own
//! certificate and signing key, play a short scenario drawn from real cooperation
//! programmes. Everything is real: QUIC + mutual TLS, Ed25519 signatures, sled on disk.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use tokio::task::JoinSet;

use crate::bulletin::{self, BulletinId, Kind, Limits, Tlp, UnverifiedBulletin};
use crate::client::Client;
use crate::config::NodeConfig;
use crate::identity::{self, Keyring, PartnerId, PublicKey, Validity};
use crate::node;
use crate::proto::{self, PublishStatus};
use crate::timestamp::Timestamp;
use crate::transport::{Timers, TlsIdentity};

const HUB: &str = "jp-mod";
/// A partner desk: id, role, clearance, groups, kinds (empty = all).
type Desk = (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

const DESKS: &[Desk] = &[
    ("us-dod", "liaison", "red", &["five-eyes"], &[]),
    ("au-dod", "liaison", "red", &["five-eyes"], &[]),
    ("uk-mod", "liaison", "red", &["five-eyes", "nato"], &[]),
    ("nato-ccdcoe", "relay", "amber+strict", &["nato"], &[]),
    ("ee-mod", "liaison", "amber", &["nato"], &[]),
    (
        "vn-mod",
        "liaison",
        "green",
        &[],
        &["indicator", "advisory", "exercise", "consultation"],
    ),
];
/// The hub's auditor (the tour's `auditor.toml`).
const AUDITOR: &str = "jp-audit";
/// The desk that is offline while bulletins are published.
const OFFLINE: &str = "ee-mod";
/// How long any step may take before the demo gives up.
const PATIENCE: Duration = Duration::from_secs(30);

const STIX: &str = r#"{"type":"bundle","id":"bundle--6f1d2c3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f","objects":[{"type":"indicator","spec_version":"2.1","id":"indicator--0b6f8a2c-1d3e-4f5a-9b7c-8d9e0f1a2b3c","created":"2026-04-01T09:00:00.000Z","modified":"2026-04-01T09:00:00.000Z","pattern":"[domain-name:value = 'exercise-schedule.example']","pattern_type":"stix","valid_from":"2026-04-01T09:00:00Z","object_marking_refs":["marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"]}]}"#;

struct Step {
    by: &'static str,
    tlp: Tlp,
    kind: Kind,
    title: &'static str,
    audience: &'static [&'static str],
    stix: bool,
}

const SCENARIO: &[Step] = &[
    Step {
        by: "nato-ccdcoe",
        tlp: Tlp::Green,
        kind: Kind::Exercise,
        title: "Locked Shields 2027: planning conference dates",
        audience: &[],
        stix: false,
    },
    Step {
        by: "au-dod",
        tlp: Tlp::Amber,
        kind: Kind::Consultation,
        title: "Record of bilateral cyber defence staff talks (AU-US)",
        audience: &["us-dod"],
        stix: false,
    },
    Step {
        by: "au-dod",
        tlp: Tlp::Green,
        kind: Kind::Indicator,
        title: "Phishing domain imitating exercise scheduling (STIX 2.1)",
        audience: &[],
        stix: true,
    },
    Step {
        by: "uk-mod",
        tlp: Tlp::Amber,
        kind: Kind::Advisory,
        title: "Advisory: VPN appliance exploitation against NATO members",
        audience: &["group:nato"],
        stix: false,
    },
    Step {
        by: "us-dod",
        tlp: Tlp::Red,
        kind: Kind::Incident,
        title: "Intrusion at a shared logistics contractor",
        audience: &["au-dod"],
        stix: false,
    },
    Step {
        by: "uk-mod",
        tlp: Tlp::Green,
        kind: Kind::Exercise,
        title: "Cyber Coalition 2027: call for participation",
        audience: &[],
        stix: false,
    },
];

fn pid(s: &str) -> anyhow::Result<PartnerId> {
    Ok(s.parse()?)
}

fn node_config(keys: &BTreeMap<String, SigningKey>) -> String {
    let mut text = format!(
        "[node]\nid = \"{HUB}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"hub-data\"\nca_cert = \"certs/ca.crt\"\n\
         tls_cert = \"certs/{HUB}/tls.crt\"\ntls_key = \"certs/{HUB}/tls.key\"\nsigning_key = \"certs/{HUB}/signing.key\"\n\
         \n# The demo's desks all belong to one operator: tell publishers who did not get a\n\
         # bulletin and why (off by default, since it reveals clearances).\n[disclosure]\nwithheld = true\n"
    );
    for (id, role, clearance, groups, kinds) in DESKS {
        let public = PublicKey::of(&keys[*id]);
        text.push_str(&format!(
            "\n[[partner]]\nid = \"{id}\"\nrole = \"{role}\"\nclearance = \"{clearance}\"\ngroups = {groups:?}\nkeys = [{{ public = \"{public}\" }}]\n"
        ));
        if !kinds.is_empty() {
            text.push_str(&format!("kinds = {kinds:?}\n"));
        }
    }
    text.push_str(&format!(
        "\n# The audit office reads the log; auditors receive no bulletins.\n[[partner]]\nid = \"{AUDITOR}\"\nrole = \"auditor\"\n"
    ));
    text
}

/// A desk's (or the auditor's) client config: the hub at `addr`, and the keys of every
/// other member, whose bulletins it verifies.
fn client_config(
    id: &str,
    addr: std::net::SocketAddr,
    keys: &BTreeMap<String, SigningKey>,
) -> String {
    let mut text = format!(
        "# {id}'s client of the hub {HUB}, made by `renkei demo`.\n[client]\nid = \"{id}\"\nserver = \"{addr}\"\n\
         server_name = \"{HUB}\"\nca_cert = \"certs/ca.crt\"\ntls_cert = \"certs/{id}/tls.crt\"\ntls_key = \"certs/{id}/tls.key\"\n"
    );
    if id != AUDITOR {
        text.push_str(&format!("signing_key = \"certs/{id}/signing.key\"\n"));
        for (other, key) in keys.iter().filter(|(o, _)| *o != id && *o != AUDITOR) {
            text.push_str(&format!(
                "\n[[partner]]\nid = \"{other}\"\nkeys = [{{ public = \"{}\" }}]\n",
                PublicKey::of(key)
            ));
        }
    }
    text
}

/// Leaves the worked setup of the README's tour in `dir`: the hub's config listening
/// where the demo's hub did, one client config per desk, the auditor's, and a STIX
/// bundle to publish.
fn write_worked_setup(
    dir: &Path,
    addr: std::net::SocketAddr,
    keys: &BTreeMap<String, SigningKey>,
) -> anyhow::Result<Vec<String>> {
    use crate::files::{write, Access};
    let hub =
        node_config(keys).replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{addr}\""));
    write(&dir.join("hub.toml"), hub.as_bytes(), Access::Public, true)?;
    let mut written = vec!["hub.toml".to_owned()];
    for id in DESKS.iter().map(|d| d.0).chain([AUDITOR]) {
        let name = if id == AUDITOR {
            "auditor.toml".to_owned()
        } else {
            format!("{id}.toml")
        };
        write(
            &dir.join(&name),
            client_config(id, addr, keys).as_bytes(),
            Access::Public,
            true,
        )?;
        written.push(name);
    }
    write(
        &dir.join("bundle.json"),
        STIX.as_bytes(),
        Access::Public,
        true,
    )?;
    written.push("bundle.json".into());
    Ok(written)
}

fn sign(
    key: &SigningKey,
    origin: &str,
    step: &Step,
    now: Timestamp,
) -> anyhow::Result<proto::SignedBulletin> {
    let (content_type, body) = if step.stix {
        (
            bulletin::STIX_CONTENT_TYPE,
            Bytes::from_static(STIX.as_bytes()),
        )
    } else {
        (
            "text/plain; charset=utf-8",
            Bytes::from_static(b"See the attached notes."),
        )
    };
    let b = proto::Bulletin {
        id: BulletinId::new_v7(now).to_string(),
        origin: origin.into(),
        created_unix_ms: now.unix_ms(),
        tlp: step.tlp.to_proto() as i32,
        kind: step.kind.to_proto() as i32,
        title: step.title.into(),
        summary: String::new(),
        tags: vec![],
        audience: step.audience.iter().map(|a| a.to_string()).collect(),
        content_type: content_type.into(),
        body,
        references: vec![],
    };
    Ok(bulletin::sign(&b, key, &Limits::default())?)
}

async fn connect(dir: &Path, id: &str, addr: std::net::SocketAddr) -> anyhow::Result<Client> {
    let certs = dir.join("certs");
    let identity = TlsIdentity::load(
        &certs.join("ca.crt"),
        &certs.join(id).join("tls.crt"),
        &certs.join(id).join("tls.key"),
    )?;
    let timers = Timers {
        keep_alive: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(15),
    };
    Ok(Client::connect_with(&identity, timers, addr, &pid(HUB)?, 2 << 20).await?)
}

type Inbox = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

/// A desk's receiving loop: verify each delivery against the origins' keys, ack it,
/// stop after `expected` bulletins.
async fn receive(
    client: Client,
    id: String,
    keys: Arc<Keyring>,
    expected: usize,
    inbox: Inbox,
) -> anyhow::Result<()> {
    let limits = Limits::default();
    let mut sub = client.subscribe(0).await?;
    for _ in 0..expected {
        let d = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .with_context(|| format!("{id} waited too long"))??
            .with_context(|| format!("{id}: the node ended the subscription"))?;
        let signed = d.bulletin.context("a delivery without a bulletin")?;
        let v = UnverifiedBulletin::from_signed(signed, &limits)?.verify(
            &keys,
            Timestamp::now(),
            &limits,
        )?;
        let line = format!(
            "{:<13} {:<12} {}",
            v.header().tlp.to_string().to_uppercase(),
            v.header().origin,
            v.bulletin().title
        );
        inbox
            .lock()
            .map_err(|_| anyhow::anyhow!("inbox lock"))?
            .entry(id.clone())
            .or_default()
            .push(line);
        sub.ack(vec![d.seq]).await?;
    }
    sub.close().await?;
    client.close().await;
    Ok(())
}

fn print_inbox(inbox: &Inbox, ids: &[&str]) -> anyhow::Result<()> {
    let inbox = inbox.lock().map_err(|_| anyhow::anyhow!("inbox lock"))?;
    for id in ids {
        let got = inbox.get(*id).map(Vec::as_slice).unwrap_or_default();
        println!(
            "  {id} received {} bulletin(s), each signature verified:",
            got.len()
        );
        for line in got {
            println!("      {line}");
        }
    }
    Ok(())
}

/// Every member's signing key by id, and a keyring of their public keys.
struct Members {
    keys: BTreeMap<String, SigningKey>,
    keyring: Arc<Keyring>,
}

/// The federation's PKI in `dir/certs` (made, or kept from an earlier run) and its keys.
fn prepare(dir: &Path) -> anyhow::Result<Members> {
    // Each run starts a fresh log; the PKI of an earlier run is kept, so the files of the
    // worked setup stay valid.
    let data = dir.join("hub-data");
    if data.exists() {
        std::fs::remove_dir_all(&data)
            .with_context(|| format!("removing the previous run's {}", data.display()))?;
    }
    let mut ids: Vec<PartnerId> = DESKS
        .iter()
        .map(|d| pid(d.0))
        .collect::<anyhow::Result<_>>()?;
    ids.push(pid(HUB)?);
    ids.push(pid(AUDITOR)?);
    let certs = dir.join("certs");
    let report = crate::pki::init(
        &certs,
        &ids,
        crate::pki::Replace::default(),
        Timestamp::now(),
    )?;
    println!("renkei demo: a local federation in {}", dir.display());
    println!(
        "  federation CA {}…, {} nodes with TLS certificates and Ed25519 keys",
        &report.ca_fingerprint[..23],
        report.nodes.len()
    );
    let mut keys = BTreeMap::new();
    let mut keyring = Keyring::new();
    for id in &ids {
        let key = identity::signing_key_from_pem(&crate::files::read_text(
            &certs.join(id.as_str()).join("signing.key"),
        )?)?;
        keyring.insert(id.clone(), PublicKey::of(&key), Validity::default());
        keys.insert(id.to_string(), key);
    }
    Ok(Members {
        keys,
        keyring: Arc::new(keyring),
    })
}

/// Publishes the scenario; returns how many bulletins each desk should receive, as the
/// node's answers say.
async fn publish_scenario(
    dir: &Path,
    addr: std::net::SocketAddr,
    keys: &BTreeMap<String, SigningKey>,
) -> anyhow::Result<BTreeMap<String, usize>> {
    println!("Publishing ({OFFLINE} is offline):");
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for step in SCENARIO {
        let client = connect(dir, step.by, addr).await?;
        let result = client
            .publish(sign(&keys[step.by], step.by, step, Timestamp::now())?)
            .await?;
        client.close().await;
        ensure!(
            result.status == PublishStatus::Accepted as i32,
            "{} was not accepted: {}",
            step.title,
            result.message
        );
        println!(
            "  {} {} {}: \"{}\"",
            step.by,
            step.tlp.to_string().to_uppercase(),
            step.kind,
            step.title
        );
        println!(
            "      shared with {}",
            if result.shared_with.is_empty() {
                "nobody".into()
            } else {
                result.shared_with.join(", ")
            }
        );
        for w in &result.withheld {
            println!("      withheld from {}: {}", w.partner, w.detail);
        }
        for p in &result.shared_with {
            *expected.entry(p.clone()).or_default() += 1;
        }
    }
    Ok(expected)
}

/// Viet Nam's desk signs with its own key but claims the US origin and key id.
async fn forge(
    dir: &Path,
    addr: std::net::SocketAddr,
    keys: &BTreeMap<String, SigningKey>,
) -> anyhow::Result<()> {
    let vn = connect(dir, "vn-mod", addr).await?;
    let mut forged = sign(&keys["vn-mod"], "us-dod", &SCENARIO[4], Timestamp::now())?;
    forged.key_id = Bytes::copy_from_slice(PublicKey::of(&keys["us-dod"]).key_id().as_bytes());
    let r = vn.publish(forged).await?;
    vn.close().await;
    if r.status != PublishStatus::Rejected as i32 {
        bail!("the forged bulletin was not rejected");
    }
    println!(
        "  vn-mod tries to pass off a forged US bulletin: rejected ({})\n",
        r.message
    );
    Ok(())
}

/// The online desks receive their share; then the offline one comes back and catches up.
async fn deliver_all(
    dir: &Path,
    addr: std::net::SocketAddr,
    keyring: &Arc<Keyring>,
    expected: &BTreeMap<String, usize>,
) -> anyhow::Result<()> {
    let inbox: Inbox = Arc::default();
    let online: Vec<&str> = DESKS
        .iter()
        .map(|d| d.0)
        .filter(|d| *d != OFFLINE)
        .collect();
    let mut tasks = JoinSet::new();
    for id in &online {
        let client = connect(dir, id, addr).await?;
        let n = expected.get(*id).copied().unwrap_or(0);
        tasks.spawn(receive(
            client,
            id.to_string(),
            keyring.clone(),
            n,
            inbox.clone(),
        ));
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    println!("Deliveries:");
    print_inbox(&inbox, &online)?;
    let client = connect(dir, OFFLINE, addr).await?;
    let n = expected.get(OFFLINE).copied().unwrap_or(0);
    receive(
        client,
        OFFLINE.to_string(),
        keyring.clone(),
        n,
        inbox.clone(),
    )
    .await?;
    println!("\n{OFFLINE} comes back online and catches up:");
    print_inbox(&inbox, &[OFFLINE])
}

pub(super) async fn run(dir: Option<&Path>) -> anyhow::Result<()> {
    let tmp;
    let (dir, kept) = match dir {
        Some(d) => (d.to_owned(), true),
        None => {
            tmp = tempfile::tempdir().context("creating a temporary directory")?;
            (tmp.path().to_owned(), false)
        }
    };
    let Members { keys, keyring } = prepare(&dir)?;
    let config_path = dir.join("hub.toml");
    crate::files::write(
        &config_path,
        node_config(&keys).as_bytes(),
        crate::files::Access::Public,
        true,
    )?;
    let hub = node::start(NodeConfig::load(&config_path)?).await?;
    let addr = hub.local_addr();
    println!("  hub {HUB} listening on {addr} (QUIC, mutual TLS 1.3)\n");
    let expected = publish_scenario(&dir, addr, &keys).await?;
    forge(&dir, addr, &keys).await?;
    deliver_all(&dir, addr, &keyring, &expected).await?;

    hub.shutdown(Duration::from_secs(5)).await?;
    if kept {
        let written = write_worked_setup(&dir, addr, &keys)?;
        println!(
            "\nThe hub stopped cleanly; its database is in {}.",
            dir.join("hub-data").display()
        );
        println!(
            "The worked setup of the README's tour is in {}: {} (the hub listens on {addr} again when served).",
            dir.display(),
            written.join(", ")
        );
    } else {
        println!("\nThe hub stopped cleanly. (Its files were in a temporary directory, now removed: pass --dir to keep them.)");
    }
    Ok(())
}
