//! The demo's story: what each desk publishes, who the policy lets it reach, and the
//! desks receiving it with its signature checked. Each step names the desks it must
//! reach, so the demo fails loudly if the federation does not do what it says.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use bytes::Bytes;
use tokio::task::JoinSet;

use super::setup::{desk, Federation, STIX};
use crate::bulletin::{self, BulletinId, Kind, Limits, Tlp, UnverifiedBulletin};
use crate::client::Client;
use crate::identity::{Keyring, PartnerId, PublicKey};
use crate::proto::{self, PublishStatus};
use crate::timestamp::Timestamp;
use crate::transport::Timers;

/// How long any one step may take before the demo gives up.
pub(super) const PATIENCE: Duration = Duration::from_secs(30);

/// One bulletin of the story.
pub(super) struct Step {
    pub by: &'static str,
    pub tlp: Tlp,
    pub kind: Kind,
    pub title: &'static str,
    pub audience: &'static [&'static str],
    pub stix: bool,
    /// The desks it must reach.
    pub reaches: &'static [&'static str],
}

/// Published while every node runs.
pub(super) const WHILE_UP: &[Step] = &[
    Step {
        by: "jp-cdc",
        tlp: Tlp::Green,
        kind: Kind::Indicator,
        title: "Phishing domain imitating exercise scheduling (STIX 2.1)",
        audience: &[],
        stix: true,
        reaches: &["vn-mod", "ee-mod", "uk-mod", "au-dod", "us-cybercom"],
    },
    Step {
        by: "au-dod",
        tlp: Tlp::Red,
        kind: Kind::Incident,
        title: "Intrusion at a shared logistics contractor",
        audience: &["jp-cdc"],
        stix: false,
        reaches: &["jp-cdc"],
    },
    Step {
        by: "uk-mod",
        tlp: Tlp::Amber,
        kind: Kind::Advisory,
        title: "VPN appliance exploitation against NATO members",
        audience: &["group:nato"],
        stix: false,
        reaches: &["ee-mod"],
    },
    Step {
        by: "us-cybercom",
        tlp: Tlp::Amber,
        kind: Kind::Consultation,
        title: "Record of trilateral cyber defence staff talks",
        audience: &["jp-cdc", "au-dod"],
        stix: false,
        reaches: &["jp-cdc", "au-dod"],
    },
];

/// Published while Tallinn's node is down.
pub(super) const WHILE_DOWN: Step = Step {
    by: "jp-cdc",
    tlp: Tlp::Green,
    kind: Kind::Exercise,
    title: "Japan-NATO cyber exercise: planning conference dates",
    audience: &[],
    stix: false,
    reaches: &["vn-mod", "ee-mod", "uk-mod", "au-dod", "us-cybercom"],
};

fn sign(fed: &Federation, origin: &str, step: &Step) -> anyhow::Result<proto::SignedBulletin> {
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
    let now = Timestamp::now();
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
    let key = fed.keys.get(step.by).context("the desk's key")?;
    Ok(bulletin::sign(&b, key, &Limits::default())?)
}

/// `id`'s connection to `node`, with its certificate from the demo's PKI.
pub(super) async fn connect(
    dir: &Path,
    id: &str,
    node: &str,
    fed: &Federation,
) -> anyhow::Result<Client> {
    let timers = Timers {
        keep_alive: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(15),
    };
    let node_id: PartnerId = node.parse()?;
    let addr = fed.addrs[node];
    Ok(Client::connect_from_pki(&dir.join("certs"), id, addr, &node_id, timers).await?)
}

/// Publishes `step` from its desk at its node; prints who the node shares it with and
/// who not, and why. Returns the bulletin's id.
pub(super) async fn publish(fed: &Federation, step: &Step) -> anyhow::Result<String> {
    let d = desk(step.by)?;
    let client = connect(&fed.dir, d.id, d.node, fed).await?;
    let result = client.publish(sign(fed, d.id, step)?).await?;
    client.close().await;
    ensure!(
        result.status == PublishStatus::Accepted as i32,
        "{} was not accepted: {}",
        step.title,
        result.message
    );
    println!(
        "  {} at {}: {} {} \"{}\"{}",
        d.id,
        d.node,
        step.tlp.to_string().to_uppercase(),
        step.kind,
        step.title,
        if step.audience.is_empty() {
            String::new()
        } else {
            format!(" for {}", step.audience.join(", "))
        }
    );
    let shared = if result.shared_with.is_empty() {
        "nobody".into()
    } else {
        result.shared_with.join(", ")
    };
    println!("      {} shares it with {shared}", d.node);
    let origin = crate::proto::WithholdReason::Origin as i32;
    for w in result.withheld.iter().filter(|w| w.reason != origin) {
        println!("      withheld from {}: {}", w.partner, w.detail);
    }
    Ok(result.bulletin_id)
}

/// Viet Nam's desk signs with its own key but claims Tokyo's desk as origin and key.
pub(super) async fn forge(fed: &Federation) -> anyhow::Result<()> {
    let vn = connect(&fed.dir, "vn-mod", "jp-mod", fed).await?;
    let mut forged = sign(
        fed,
        "jp-cdc",
        &Step {
            by: "vn-mod",
            ..WHILE_DOWN
        },
    )?;
    let claimed = fed.keys.get("jp-cdc").context("jp-cdc's key")?;
    forged.key_id = Bytes::copy_from_slice(PublicKey::of(claimed).key_id().as_bytes());
    let r = vn.publish(forged).await?;
    vn.close().await;
    if r.status != PublishStatus::Rejected as i32 {
        bail!("the forged bulletin was not rejected");
    }
    println!(
        "  vn-mod tries to pass off a forged jp-cdc bulletin: rejected ({})",
        r.message
    );
    Ok(())
}

/// How many bulletins each desk must receive from `steps`.
pub(super) fn expected<'a>(
    steps: impl IntoIterator<Item = &'a Step>,
) -> BTreeMap<&'static str, usize> {
    let mut n = BTreeMap::new();
    for s in steps {
        for d in s.reaches {
            *n.entry(*d).or_default() += 1;
        }
    }
    n
}

/// A desk's receiving loop: verify each delivery against the origins' keys, ack it;
/// one line per bulletin, with the nodes it crossed.
async fn receive(client: Client, keys: Arc<Keyring>, n: usize) -> anyhow::Result<Vec<String>> {
    let limits = Limits::default();
    let mut sub = client.subscribe(0).await?;
    let mut lines = Vec::new();
    for _ in 0..n {
        let d = tokio::time::timeout(PATIENCE, sub.next())
            .await
            .context("waited too long for a delivery")??
            .context("the node ended the subscription")?;
        let signed = d.bulletin.context("a delivery without a bulletin")?;
        let v = UnverifiedBulletin::from_signed(signed, &limits)?.verify(
            &keys,
            Timestamp::now(),
            &limits,
        )?;
        lines.push(format!(
            "{:<6} {:<12} from {:<11} via {}",
            v.header().tlp.to_string().to_uppercase(),
            v.header().kind,
            v.header().origin,
            d.path.join(" -> "),
        ));
        sub.ack(vec![d.seq]).await?;
    }
    sub.close().await?;
    client.close().await;
    Ok(lines)
}

/// Every desk receives what it must, verifying each signature itself.
pub(super) async fn deliver_all(
    fed: &Federation,
    expected: &BTreeMap<&'static str, usize>,
) -> anyhow::Result<()> {
    let mut tasks = JoinSet::new();
    for d in super::setup::DESKS {
        let client = connect(&fed.dir, d.id, d.node, fed).await?;
        let n = expected.get(d.id).copied().unwrap_or(0);
        let keys = fed.keyring.clone();
        tasks.spawn(async move { (d, receive(client, keys, n).await) });
    }
    let mut got = BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (d, lines) = done?;
        got.insert(
            d.id,
            (
                d.node,
                lines.with_context(|| format!("{}'s deliveries", d.id))?,
            ),
        );
    }
    for (id, (node, lines)) in got {
        println!(
            "  {id} at {node}: {} bulletin(s), each origin signature verified by the desk:",
            lines.len()
        );
        for l in lines {
            println!("      {l}");
        }
    }
    Ok(())
}
