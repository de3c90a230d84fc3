//! `renkei publish`: a desk signs a bulletin (or takes a signed file), publishes it to
//! its node, and says plainly who got it: for people by default, one JSON line with
//! `--json`. A bulletin shared with nobody is an error for scripts unless allowed.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use prost::Message as _;
use serde_json::{json, Value};

use super::BulletinFields;
use crate::bulletin;
use crate::client::Client;
use crate::config::ClientConfig;
use crate::files;
use crate::identity;
use crate::proto::{self, PublishStatus};
use crate::timestamp::Timestamp;

fn enum_name<E: TryFrom<i32>>(n: i32, name: fn(E) -> &'static str) -> String {
    E::try_from(n).map_or_else(|_| n.to_string(), |e| name(e).to_owned())
}

/// A PublishResult as one JSON object.
pub(crate) fn result_json(r: &proto::PublishResult) -> Value {
    let status = enum_name::<PublishStatus>(r.status, |s| s.as_str_name());
    let mut v = json!({
        "request_id": r.request_id,
        "status": status.trim_start_matches("PUBLISH_STATUS_").to_ascii_lowercase(),
        "bulletin_id": r.bulletin_id,
        "origin": r.origin,
        "digest": hex::encode(&r.digest),
        "shared_with": r.shared_with,
        "withheld": r.withheld.iter().map(|w| json!({
            "partner": w.partner,
            "reason": enum_name::<proto::WithholdReason>(w.reason, |r| r.as_str_name()),
            "detail": w.detail,
        })).collect::<Vec<_>>(),
    });
    if r.status == PublishStatus::Rejected as i32 {
        v["error"] = json!(enum_name::<proto::ErrorCode>(r.error, |e| e.as_str_name()));
        v["message"] = json!(r.message);
    }
    v
}

/// What `renkei publish` was asked to do.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The client configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// An already signed bulletin to publish instead of the fields below.
    #[arg(long, conflicts_with_all = ["origin", "tlp", "kind", "title"])]
    pub file: Option<PathBuf>,
    /// A MISP event (JSON) to publish as a bulletin of this desk: its tlp: and
    /// renkei:kind tags, its info and its sharing group stand in for the fields not
    /// given; `distribution` 0 (your organisation only) is refused.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["file", "body_file", "content_type"])]
    pub misp_event: Option<PathBuf>,
    /// How a MISP event travels: as a STIX 2.1 bundle, or as its MISP JSON.
    #[arg(long, value_enum, default_value_t = super::misp_in::MispBody::Stix, requires = "misp_event")]
    pub misp_body: super::misp_in::MispBody,
    #[command(flatten)]
    pub fields: BulletinFields,
    /// Print the node's answer as one JSON line instead of sentences for people.
    #[arg(long)]
    pub json: bool,
    /// Publish even if an audience entry names no partner or group the node knows
    /// (otherwise the node refuses it: a typo would share it with nobody).
    #[arg(long)]
    pub allow_unknown_audience: bool,
    /// Exit 0 even when the bulletin is shared with nobody.
    #[arg(long)]
    pub allow_no_recipients: bool,
    /// Give up connecting after this many seconds (default: the config's [transport]
    /// handshake_timeout_secs, 10).
    #[arg(long, value_name = "SECONDS")]
    pub connect_timeout: Option<u64>,
}

fn signed_bulletin(
    args: &mut PublishArgs,
    cfg: &ClientConfig,
) -> anyhow::Result<proto::SignedBulletin> {
    if let Some(path) = &args.file {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return proto::SignedBulletin::decode(Bytes::from(bytes))
            .with_context(|| format!("{} is not a SignedBulletin", path.display()));
    }
    let key_path = cfg
        .client
        .signing_key
        .as_ref()
        .context("client.signing_key is needed to sign a bulletin")?;
    let key = identity::signing_key_from_pem(&files::read_text(key_path)?)
        .with_context(|| key_path.display().to_string())?;
    let fields = std::mem::take(&mut args.fields);
    let draft = match &args.misp_event {
        Some(event) => super::misp_in::draft(event, fields, cfg, args.misp_body, Timestamp::now())?,
        None => super::bulletin::from_fields(fields, Some(&cfg.client.id), Timestamp::now())?,
    };
    bulletin::sign(&draft, &key, &cfg.limits.bulletin_limits()).context("the bulletin is not valid")
}

/// `renkei publish`.
pub(super) async fn publish(mut args: PublishArgs) -> anyhow::Result<()> {
    let mut cfg = ClientConfig::load(&args.config)?;
    if let Some(secs) = args.connect_timeout {
        cfg.transport.handshake_timeout_secs = secs;
    }
    let signed = signed_bulletin(&mut args, &cfg)?;
    let client = Client::connect(&cfg).await?;
    let result = client
        .publish_frame(proto::Publish {
            request_id: 1,
            bulletin: Some(signed),
            allow_unknown_audience: args.allow_unknown_audience,
            path: Vec::new(),
        })
        .await;
    client.close().await;
    let result = result?;
    if args.json {
        println!("{}", result_json(&result));
    } else {
        println!("{}", sentences(&result));
    }
    let status = PublishStatus::try_from(result.status).unwrap_or(PublishStatus::Unspecified);
    match status {
        PublishStatus::Rejected => {
            let code = enum_name::<proto::ErrorCode>(result.error, |e| e.as_str_name());
            bail!(
                "rejected ({}): {}",
                code.trim_start_matches("ERROR_CODE_"),
                result.message
            )
        }
        PublishStatus::Accepted if result.shared_with.is_empty() && !args.allow_no_recipients => {
            // The reasons are in the answer only when the node discloses them.
            let why = if result.withheld.is_empty() {
                "the node does not disclose why ([disclosure] withheld is off): its auditor finds each partner's reason in the BULLETIN_ACCEPTED record"
            } else if args.json {
                "each partner's reason is in `withheld` above"
            } else {
                "each partner's reason is above"
            };
            bail!(
                "nobody receives this bulletin under the node's rules: {why}; pass --allow-no-recipients if that is meant"
            )
        }
        _ => Ok(()),
    }
}

/// The node's answer in sentences: what was decided, and who gets the bulletin.
fn sentences(r: &proto::PublishResult) -> String {
    let what = format!("{}/{}", r.origin, r.bulletin_id);
    let status = PublishStatus::try_from(r.status).unwrap_or(PublishStatus::Unspecified);
    let mut text = match status {
        PublishStatus::Accepted if r.shared_with.is_empty() => {
            format!("accepted {what}: shared with nobody")
        }
        PublishStatus::Accepted => {
            format!("accepted {what}: shared with {}", r.shared_with.join(", "))
        }
        PublishStatus::Duplicate => {
            format!("{what} was accepted before: it is shared as it was then, not again")
        }
        PublishStatus::Rejected => format!("rejected {what}"),
        PublishStatus::Unspecified => format!("the node gave no status for {what}"),
    };
    for w in &r.withheld {
        let reason = enum_name::<proto::WithholdReason>(w.reason, |r| r.as_str_name());
        let reason = reason
            .trim_start_matches("WITHHOLD_REASON_")
            .to_ascii_lowercase();
        text += &format!(
            "\n  withheld from {}: {}",
            w.partner,
            reason.replace('_', " ")
        );
        if !w.detail.is_empty() {
            text += &format!(" ({})", w.detail);
        }
    }
    text
}
