//! `renkei subscribe`: a desk receives what its node holds for it, verifies every
//! signature itself, and acknowledges a bulletin only once it is handled (saved,
//! printed, or accepted by `--exec`), with a receipt signed by the desk's key when its
//! configuration names one. What does not verify is never acknowledged.
//!
//! The decisions (verify, dedupe, save, quarantine) are the library's [`crate::inbox`];
//! this file moves deliveries between the node, the inbox and the command.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;
use tokio::signal::unix::{signal, SignalKind};

use crate::bulletin::{Limits, VerifiedBulletin};
use crate::client::{Client, Subscription};
use crate::config::ClientConfig;
use crate::identity::Keyring;
use crate::inbox::{sidecar, Arrival, Inbox, QuarantineReason};
use crate::proto;
use crate::timestamp::Timestamp;

/// What `renkei subscribe` was asked to do.
#[derive(Debug, clap::Args)]
pub struct SubscribeArgs {
    /// The client configuration file.
    #[arg(long)]
    pub config: PathBuf,
    /// Stop after this many bulletins (received or held back).
    #[arg(long)]
    pub count: Option<usize>,
    /// Stop after this many seconds without a delivery.
    #[arg(long)]
    pub idle_timeout: Option<u64>,
    /// Save each verified bulletin in DIR/ORIGIN/ID/ (envelope, body, JSON sidecar),
    /// remember what was handled in DIR/received.log, and keep bulletins that do not
    /// verify in DIR/quarantine/.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print each bulletin as one JSON line with every field and its body (text when it
    /// is UTF-8, base64 otherwise) instead of a line for people.
    #[arg(long)]
    pub json: bool,
    /// Hand each verified bulletin to this shell command (its JSON on stdin, RENKEI_*
    /// variables in the environment); it is acknowledged only if the command succeeds.
    #[arg(long, value_name = "COMMAND")]
    pub exec: Option<String>,
    /// Run as a desk's inbox service: reconnect when the node goes away, re-read the
    /// config on SIGHUP and try held-back bulletins again, stop on SIGINT/SIGTERM.
    #[arg(long, conflicts_with_all = ["count", "idle_timeout"])]
    pub follow: bool,
    /// Give up connecting after this many seconds (default: the config's [transport]
    /// handshake_timeout_secs, 10, or --idle-timeout if that is shorter).
    #[arg(long, value_name = "SECONDS")]
    pub connect_timeout: Option<u64>,
    /// Keep a MISP feed of what is received in DIR (one event per bulletin,
    /// manifest.json, hashes.csv), which a MISP instance can add as a feed.
    #[arg(long, value_name = "DIR")]
    pub misp_feed: Option<PathBuf>,
    /// In --follow, how often held-back bulletins are tried again (seconds).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub retry_every: u64,
}

/// The desk's state across subscriptions: its config, its keys and its inbox.
struct Desk {
    args: SubscribeArgs,
    cfg: ClientConfig,
    keys: Keyring,
    limits: Limits,
    inbox: Inbox,
    /// The MISP feed kept of what is received, if asked for.
    feed: Option<super::misp_feed::Feed>,
    /// Deliveries handled or held back in this run (what `--count` counts).
    seen: usize,
    /// Deliveries left unacknowledged in the current subscription.
    held: usize,
    /// The desk's signing key, which signs its receipts (none: unsigned acks).
    signer: Option<ed25519_dalek::SigningKey>,
    /// Whether the node said it takes batch receipts (`Welcome.takes_batch_receipts`):
    /// then what is acknowledged together is signed for with one signature.
    batch_receipts: bool,
}

/// What becomes of a delivery.
enum Taken {
    /// Handled: acknowledged, with the receipt of its bulletin when the desk signs.
    Ack(Option<crate::receipt::Receipt>),
    /// Held back: not acknowledged, so it comes again.
    Held,
}

impl Desk {
    fn new(args: SubscribeArgs) -> anyhow::Result<Desk> {
        let cfg = Self::load(&args)?;
        let inbox = match &args.out {
            Some(dir) => Inbox::open(dir)?,
            None => Inbox::in_memory(),
        };
        let feed = args.misp_feed.as_deref().map(super::misp_feed::Feed::open);
        Ok(Desk {
            signer: signer(&cfg)?,
            feed: feed.transpose()?,
            keys: cfg.keyring(),
            limits: cfg.limits.delivery_limits(),
            cfg,
            args,
            inbox,
            seen: 0,
            held: 0,
            batch_receipts: false,
        })
    }

    /// The config, with the connection patience the command line asks for.
    fn load(args: &SubscribeArgs) -> anyhow::Result<ClientConfig> {
        let mut cfg = ClientConfig::load(&args.config)?;
        let t = &mut cfg.transport;
        if let Some(secs) = args.connect_timeout {
            t.handshake_timeout_secs = secs;
        } else if let Some(idle) = args.idle_timeout {
            t.handshake_timeout_secs = t.handshake_timeout_secs.min(idle);
        }
        Ok(cfg)
    }

    /// Re-reads the config for its keys; a broken file leaves the old keys in force.
    fn reload(&mut self) {
        match Self::load(&self.args) {
            Ok(cfg) => {
                match signer(&cfg) {
                    Ok(key) => self.signer = key,
                    Err(e) => eprintln!("renkei subscribe: {e:#}; the signing key in force stays"),
                }
                self.keys = cfg.keyring();
                self.limits = cfg.limits.delivery_limits();
                self.cfg = cfg;
                eprintln!("renkei subscribe: configuration re-read");
            }
            Err(e) => eprintln!("renkei subscribe: {e:#}; the keys in force stay"),
        }
    }

    fn done(&self) -> bool {
        self.args.count.is_some_and(|n| self.seen >= n)
    }

    /// Says whether the node behind `client` takes batch receipts, if the desk signs.
    async fn hear_node(&mut self, client: &Client) {
        self.batch_receipts = match self.signer {
            Some(_) => client.hello().await.is_ok_and(|w| w.takes_batch_receipts),
            None => false,
        };
    }

    /// The desk's receipt of `v`, received `now`, if it signs.
    fn receipt(&self, v: &VerifiedBulletin, now: Timestamp) -> Option<crate::receipt::Receipt> {
        self.signer.as_ref()?;
        let c = &self.cfg.client;
        Some(crate::receipt::Receipt::of(&c.id, &c.server_name, v, now))
    }

    /// The receipts of what is acknowledged together, signed: with one signature when
    /// the node takes batch receipts, each alone otherwise.
    fn signed(&self, receipts: Vec<(u64, crate::receipt::Receipt)>) -> Vec<proto::Receipted> {
        match self.signer.as_ref() {
            Some(key) => crate::receipt::Receipt::sign_for_ack(receipts, key, self.batch_receipts),
            None => Vec::new(),
        }
    }

    /// Handles one delivery, received `now`: acknowledged (with a receipt) or held back.
    async fn take(&mut self, delivery: proto::Delivery, now: Timestamp) -> anyhow::Result<Taken> {
        let seq = delivery.seq;
        let Some(signed) = delivery.bulletin else {
            bail!("delivery {seq} carries no bulletin");
        };
        let arrival = self
            .inbox
            .classify(signed.clone(), &self.keys, now, &self.limits);
        let receipt = match &arrival {
            Arrival::New(v) | Arrival::Duplicate(v) => self.receipt(v, now),
            _ => None,
        };
        Ok(
            match self
                .handle(seq, signed, arrival, &delivery.path, now)
                .await?
            {
                true => Taken::Ack(receipt),
                false => Taken::Held,
            },
        )
    }

    /// Handles one classified delivery; true when it may be acknowledged.
    async fn handle(
        &mut self,
        seq: u64,
        signed: proto::SignedBulletin,
        arrival: Arrival,
        path: &[String],
        now: Timestamp,
    ) -> anyhow::Result<bool> {
        match arrival {
            Arrival::New(v) => self.receive(seq, &v, path, now).await,
            Arrival::Duplicate(_) => Ok(true),
            Arrival::Conflict(v, first) => {
                let h = v.header();
                eprintln!(
                    "renkei subscribe: seq {seq}: {} sent another bulletin under id {} (digest {}, the first had {first}); the first one stands",
                    h.origin, h.id, v.digest()
                );
                Ok(true)
            }
            Arrival::Unverified(e) => {
                let reason = QuarantineReason::new(&e, &self.args.config);
                let kept = self.inbox.quarantine(seq, &signed, &reason, now)?;
                self.report_held(seq, &reason, kept.as_deref());
                self.seen += 1;
                Ok(false)
            }
        }
    }

    async fn receive(
        &mut self,
        seq: u64,
        v: &VerifiedBulletin,
        path: &[String],
        now: Timestamp,
    ) -> anyhow::Result<bool> {
        let saved = self.inbox.save(seq, v, now)?;
        if let Some(feed) = &self.feed {
            feed.add(&crate::misp::event(v, path))?;
        }
        let full = sidecar(seq, v, now);
        self.seen += 1;
        println!("{}", self.line(&full, saved.as_deref()));
        if let Some(command) = &self.args.exec {
            if let Err(why) = run_command(command, &full, saved.as_deref()).await {
                eprintln!(
                    "renkei subscribe: seq {seq}: {why}; not acknowledged, it comes again on the next subscription"
                );
                return Ok(false);
            }
        }
        self.inbox.handled(seq, v)?;
        Ok(true)
    }

    /// One line per bulletin: every field for scripts, the essentials for people.
    fn line(&self, full: &Value, saved: Option<&Path>) -> String {
        if self.args.json {
            let mut full = full.clone();
            if let Some(dir) = saved {
                full["saved"] = json!(dir);
            }
            return full.to_string();
        }
        let text = |k: &str| full[k].as_str().unwrap_or_default().to_owned();
        let mut line = format!(
            "received {}/{} (seq {}): {} {} {:?}, signature verified",
            text("origin"),
            text("id"),
            full["seq"],
            text("tlp").to_uppercase(),
            text("kind"),
            text("title"),
        );
        if let Some(dir) = saved {
            line += &format!(", saved in {}", dir.display());
        }
        line
    }

    fn report_held(&self, seq: u64, reason: &QuarantineReason, kept: Option<&Path>) {
        let place = match kept {
            Some(dir) => format!("kept in {}; ", dir.display()),
            None => String::new(),
        };
        eprintln!(
            "renkei subscribe: seq {seq} does not verify: {}. Not acknowledged: {place}the node keeps it and sends it again. To fix: {}",
            reason.error, reason.advice
        );
        if self.args.json {
            let mut line = json!({"seq": seq, "verified": false, "error": reason.error, "advice": reason.advice});
            if let Some(dir) = kept {
                line["quarantine"] = json!(dir);
            }
            println!("{line}");
        }
    }

    /// `first` and the deliveries that arrived with it, as many as `--count` still
    /// takes and at most [`TOGETHER`].
    fn with_arrived(
        &self,
        sub: &mut Subscription<'_>,
        first: proto::Delivery,
    ) -> anyhow::Result<Vec<proto::Delivery>> {
        let left = self
            .args
            .count
            .map_or(TOGETHER, |n| n.saturating_sub(self.seen));
        let mut arrived = vec![first];
        while arrived.len() < left.min(TOGETHER) {
            match sub.buffered()? {
                Some(d) => arrived.push(d),
                None => break,
            }
        }
        Ok(arrived)
    }

    /// Receives on one subscription until it ends, the node goes idle, `--count` is
    /// reached, `stop` resolves, or (with `retry`) that long after a delivery was held
    /// back, since held-back deliveries come again only on a new subscription.
    async fn session(
        &mut self,
        sub: &mut Subscription<'_>,
        stop: impl std::future::Future<Output = ()>,
        retry: Option<Duration>,
    ) -> anyhow::Result<()> {
        tokio::pin!(stop);
        let idle = self.args.idle_timeout.map(Duration::from_secs);
        let mut again = None;
        while !self.done() {
            let next = tokio::select! {
                () = &mut stop => return Ok(()),
                () = sleep_until(again) => return Ok(()),
                next = next_within(sub, idle) => next?,
            };
            let Some(delivery) = next else { return Ok(()) };
            // What arrived together is handled, acknowledged and signed for together.
            let (now, mut acked, mut receipts) = (Timestamp::now(), Vec::new(), Vec::new());
            for delivery in self.with_arrived(sub, delivery)? {
                let seq = delivery.seq;
                match self.take(delivery, now).await? {
                    Taken::Ack(receipt) => {
                        acked.push(seq);
                        receipts.extend(receipt.map(|r| (seq, r)));
                    }
                    Taken::Held => {
                        self.held += 1;
                        again = again.or(retry.map(|d| tokio::time::Instant::now() + d));
                    }
                }
            }
            if !acked.is_empty() {
                let receipted = self.signed(receipts);
                sub.ack_with_receipts(acked, receipted).await?;
            }
        }
        Ok(())
    }
}

/// Deliveries handled and acknowledged together at most.
const TOGETHER: usize = 64;

/// The desk's signing key, if its configuration names one (`client.signing_key`):
/// what signs its receipts.
fn signer(cfg: &ClientConfig) -> anyhow::Result<Option<ed25519_dalek::SigningKey>> {
    let Some(path) = &cfg.client.signing_key else {
        return Ok(None);
    };
    let pem = crate::files::read_text(path)?;
    let key = crate::identity::signing_key_from_pem(&pem)
        .with_context(|| format!("client.signing_key {}", path.display()))?;
    Ok(Some(key))
}

/// Waits until `at`, or forever when there is no `at`.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next delivery; `None` at the end of the stream or after `idle` without one.
async fn next_within(
    sub: &mut Subscription<'_>,
    idle: Option<Duration>,
) -> anyhow::Result<Option<proto::Delivery>> {
    Ok(match idle {
        Some(d) => match tokio::time::timeout(d, sub.next()).await {
            Ok(r) => r?,
            Err(_) => None,
        },
        None => sub.next().await?,
    })
}

/// Runs `command` with the bulletin's JSON on stdin; Err says how it failed.
async fn run_command(command: &str, full: &Value, saved: Option<&Path>) -> anyhow::Result<()> {
    let text = |k: &str| full[k].as_str().unwrap_or_default().to_owned();
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .env("RENKEI_SEQ", full["seq"].to_string())
        .env("RENKEI_ORIGIN", text("origin"))
        .env("RENKEI_ID", text("id"))
        .env("RENKEI_TLP", text("tlp"))
        .env("RENKEI_KIND", text("kind"))
        .env("RENKEI_DIGEST", text("digest"))
        .stdin(Stdio::piped())
        // Our stdout carries one line per bulletin; the command's output goes to stderr.
        .stdout(std::io::stderr());
    if let Some(dir) = saved {
        cmd.env("RENKEI_DIR", dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("--exec could not start `sh`: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let line = format!("{full}\n");
        // A command that does not read its input is its own business.
        let _ = stdin.write_all(line.as_bytes()).await;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| anyhow::anyhow!("--exec: waiting for the command: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        anyhow::bail!("--exec command failed ({status})")
    }
}

/// `renkei subscribe`.
pub(super) async fn subscribe(args: SubscribeArgs) -> anyhow::Result<()> {
    let follow = args.follow;
    let mut desk = Desk::new(args)?;
    if follow {
        return follow_forever(&mut desk).await;
    }
    let client = Client::connect(&desk.cfg).await?;
    desk.hear_node(&client).await;
    let mut sub = client.subscribe(0).await?;
    let started = std::time::Instant::now();
    let result = desk.session(&mut sub, std::future::pending(), None).await;
    if result.is_ok() && desk.seen == 0 {
        // Silence would read as "it worked"; say what was waited for, and for how long.
        eprintln!(
            "renkei subscribe: nothing arrived in {:.1} s: the node has nothing queued for this desk (what the node refused or withheld is on its audit log)",
            started.elapsed().as_secs_f64()
        );
    }
    if result.is_ok() {
        sub.close().await?;
    }
    client.close().await;
    result?;
    if desk.held > 0 {
        bail!(
            "{} bulletin(s) were not acknowledged; the node keeps them and sends them again on the next subscription",
            desk.held
        );
    }
    Ok(())
}

/// The inbox service: subscribe, and subscribe again after a lost connection (with
/// backoff), a SIGHUP, or a while after something was held back.
async fn follow_forever(desk: &mut Desk) -> anyhow::Result<()> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut backoff = Duration::from_secs(1);
    loop {
        let client = tokio::select! {
            c = Client::connect(&desk.cfg) => c,
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "renkei subscribe: cannot reach the node: {e}; trying again in {backoff:?}"
                );
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = term.recv() => return Ok(()),
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        desk.hear_node(&client).await;
        let result = follow_connection(desk, &client, &mut hup, &mut term).await;
        client.close().await;
        match result {
            Ok(()) => return Ok(()),
            Err(e) => eprintln!("renkei subscribe: {e:#}; reconnecting"),
        }
    }
}

/// Subscriptions on one connection until the service stops (Ok) or the connection
/// fails (Err).
async fn follow_connection(
    desk: &mut Desk,
    client: &Client,
    hup: &mut tokio::signal::unix::Signal,
    term: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<()> {
    let retry = Duration::from_secs(desk.args.retry_every.max(1));
    loop {
        desk.held = 0;
        let mut sub = client.subscribe(0).await?;
        let mut stopping = false;
        let mut reread = false;
        let stop = async {
            tokio::select! {
                _ = term.recv() => stopping = true,
                _ = tokio::signal::ctrl_c() => stopping = true,
                _ = hup.recv() => reread = true,
            }
        };
        desk.session(&mut sub, stop, Some(retry)).await?;
        sub.close().await?;
        if stopping {
            return Ok(());
        }
        if reread || desk.held > 0 {
            desk.reload();
        }
    }
}
