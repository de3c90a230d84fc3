//! `renkei dashboard --config auditor.toml [--listen 127.0.0.1:8080]`: the pages an
//! auditor hands to a ministry, served over HTTP on (by default) loopback, each built
//! from what the node answers the auditor's role over QUIC, so every query is on the
//! node's record. Metrics per fiscal year as the logic model (consultations, exercises
//! and threat exchanges per partner, countries engaged, growth) with a monthly chart;
//! the audit log searchable by partner, bulletin, event and period, with the withheld
//! reasons; the latest signed checkpoint and an inclusion proof checked on demand; the
//! peer links from the log. Every table downloads as CSV.
//!
//! This module is the shell: it asks the node and serves pages. What the pages show is
//! written by `views`, the HTML by `html`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::Mutex;

use crate::client::Client;
use crate::config::ClientConfig;

pub(super) mod html;
mod views;

/// What the pages share: the auditor's configuration and its connection to the node.
struct Dash {
    cfg: ClientConfig,
    node: String,
    client: Mutex<Option<Client>>,
}

impl Dash {
    /// Runs `ask` on the connection to the node, connecting (again) first if need be;
    /// a failed question drops the connection so the next one starts afresh.
    async fn ask<T>(
        &self,
        ask: impl AsyncFnOnce(&Client) -> Result<T, crate::client::ClientError>,
    ) -> anyhow::Result<T> {
        let mut held = self.client.lock().await;
        if held.is_none() {
            *held = Some(
                Client::connect(&self.cfg)
                    .await
                    .context("connecting to the node")?,
            );
        }
        let client = held.as_ref().context("no connection")?;
        match ask(client).await {
            Ok(v) => Ok(v),
            Err(e) => {
                *held = None;
                Err(anyhow::Error::new(e).context("asking the node"))
            }
        }
    }
}

/// Serves the dashboard until interrupted.
pub(super) async fn run(config: &Path, listen: SocketAddr) -> anyhow::Result<()> {
    let cfg = ClientConfig::load(config)?;
    let client = Client::connect(&cfg)
        .await
        .context("connecting to the node as its auditor")?;
    let node = client.hello().await?.node_id;
    let dash = Arc::new(Dash {
        cfg,
        node: node.clone(),
        client: Mutex::new(Some(client)),
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let bound = listener.local_addr()?;
    emitln!("renkei dashboard of node {node} on http://{bound}/");
    if !bound.ip().is_loopback() {
        eprintln!("renkei dashboard: warning: {bound} is not loopback; anyone who reaches it reads the audit log as this auditor");
    }
    let mut app = Router::new()
        .route("/", get(metrics))
        .route("/log", get(log))
        .route("/checkpoint", get(checkpoint))
        .route("/links", get(links))
        .with_state(dash);
    let guard = Arc::new(Guard {
        node: node.clone(),
        token: fresh_token(),
    });
    app = app.layer(axum::middleware::from_fn_with_state(
        guard,
        same_origin_only,
    ));
    if bound.ip().is_loopback() {
        app = app.layer(axum::middleware::from_fn(loopback_host));
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The cookie a browser that does not send `Sec-Fetch-Site` carries instead.
const COOKIE: &str = "renkei_dashboard";

/// What the request guard knows: the node's name (for its page) and this run's cookie.
struct Guard {
    node: String,
    token: String,
}

/// What becomes of a request, by where it comes from.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// From the dashboard's own pages or the address bar: answered.
    Serve,
    /// Made by another site: refused.
    Refuse,
    /// A browser that says nothing of where it comes from and has no cookie yet: it is
    /// given the cookie and a link, and the node is not asked.
    Introduce,
}

/// Who made a request. Browsers since 2020 to 2023 say it in `Sec-Fetch-Site`, and in
/// `Origin` on scripted requests; an older one says neither, so it must carry this
/// run's cookie, which is `SameSite=Strict`: sent from the dashboard's own pages, never
/// on a request another site makes.
fn judge(site: Option<&str>, foreign_origin: bool, has_cookie: bool) -> Verdict {
    match site {
        _ if foreign_origin => Verdict::Refuse,
        Some("same-origin" | "none") => Verdict::Serve,
        Some(_) => Verdict::Refuse,
        None if has_cookie => Verdict::Serve,
        None => Verdict::Introduce,
    }
}

/// Only requests the auditor makes from the dashboard itself or the address bar: every
/// page asks the node (which records the query) and the checkpoint page has it sign,
/// so another site must not make the auditor's browser ask (`<img src=…>`).
async fn same_origin_only(
    State(guard): State<Arc<Guard>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|h| h.to_str().ok());
    let host = text("host");
    let foreign_origin = text("origin")
        .is_some_and(|o| Some(o.split_once("://").map_or(o, |(_, rest)| rest)) != host);
    let has_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .any(|c| c.trim().split_once('=') == Some((COOKIE, guard.token.as_str())));
    match judge(text("sec-fetch-site"), foreign_origin, has_cookie) {
        Verdict::Serve => next.run(request).await,
        Verdict::Refuse => (
            StatusCode::FORBIDDEN,
            "this dashboard answers only its own pages, not requests another site makes\n",
        )
            .into_response(),
        Verdict::Introduce => introduce(&guard, request.uri()),
    }
}

/// The page a browser that does not say where its requests come from gets first: the
/// cookie, and a link to what it asked for.
fn introduce(guard: &Guard, uri: &axum::http::Uri) -> Response {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let body = format!(
        "<p id=\"introduce\">This browser does not say which site a request comes from, so the dashboard asks it to carry a cookie instead: pages other sites make it request are then refused. <a href=\"{}\">Continue</a>.</p>",
        html::escape(target)
    );
    let page = html::page(&guard.node, "Open the dashboard", &body);
    let mut r = axum::response::Html(page).into_response();
    let cookie = format!(
        "{COOKIE}={}; SameSite=Strict; HttpOnly; Path=/",
        guard.token
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// On loopback, only requests that name a loopback host: a web page the auditor visits
/// cannot point another name at 127.0.0.1 (DNS rebinding) and read the log through the
/// auditor's browser.
async fn loopback_host(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if matches!(
        crate::transport::host_name(host),
        "localhost" | "127.0.0.1" | "[::1]"
    ) {
        next.run(request).await
    } else {
        (
            StatusCode::MISDIRECTED_REQUEST,
            "this dashboard answers only to a loopback host name\n",
        )
            .into_response()
    }
}

/// A value no other run of the dashboard and no other site can guess.
fn fresh_token() -> String {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    hex::encode(bytes)
}

type Params = Query<std::collections::HashMap<String, String>>;

/// What a view makes: a page, or a CSV table.
pub(super) enum Shown {
    Page { title: String, body: String },
    Csv { name: String, text: String },
}

fn respond(dash: &Dash, shown: anyhow::Result<Shown>) -> Response {
    match shown {
        Ok(Shown::Page { title, body }) => {
            axum::response::Html(html::page(&dash.node, &title, &body)).into_response()
        }
        Ok(Shown::Csv { name, text }) => {
            let mut r = text.into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.csv\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Err(e) => {
            let body = format!("<p class=\"bad\">{}</p>", html::escape(&format!("{e:#}")));
            let page = html::page(&dash.node, "The node could not answer", &body);
            (StatusCode::BAD_GATEWAY, axum::response::Html(page)).into_response()
        }
    }
}

async fn metrics(State(d): State<Arc<Dash>>, Query(p): Params) -> Response {
    respond(&d, views::metrics(&d, &p).await)
}

async fn log(State(d): State<Arc<Dash>>, Query(p): Params) -> Response {
    respond(&d, views::log(&d, &p).await)
}

async fn checkpoint(State(d): State<Arc<Dash>>, Query(p): Params) -> Response {
    respond(&d, views::checkpoint(&d, &p).await)
}

async fn links(State(d): State<Arc<Dash>>, Query(p): Params) -> Response {
    respond(&d, views::links(&d, &p).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_served_only_when_the_browser_shows_it_comes_from_the_dashboard() {
        use Verdict::*;
        let cases = [
            (Some("same-origin"), false, false, Serve),
            (Some("none"), false, false, Serve),
            (Some("cross-site"), false, true, Refuse),
            (Some("same-site"), false, false, Refuse),
            (Some("same-origin"), true, true, Refuse),
            (None, true, true, Refuse),
            (None, false, true, Serve),
            (None, false, false, Introduce),
        ];
        for (site, foreign, cookie, verdict) in cases {
            assert_eq!(
                judge(site, foreign, cookie),
                verdict,
                "{site:?} {foreign} {cookie}"
            );
        }
    }
}
