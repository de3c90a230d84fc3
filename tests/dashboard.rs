//! An auditor opens the dashboard in a browser: headless Chromium loads each page from
//! `renkei dashboard`, which asks the node as the auditor. What a person would see is
//! checked: the outputs table holds the numbers `renkei metrics` gives, the chart is
//! drawn, a search of the log finds a bulletin and says who it was withheld from and
//! why, a record's inclusion proof verifies, and every table downloads as CSV. A
//! screenshot of each page is left in `target/dashboard-screenshots/` for review.
//!
//! `.ci/run` installs Chromium (Debian's `chromium`); run as root without it, the test
//! installs it, and otherwise says what to install.

use crate::common;

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::configs::{client_toml, node_toml};
use common::federation::{connect_as, sign_as, PATIENCE};
use common::served::serve;
use common::{pki, renkei_ok};
use renkei::bulletin::{Kind, Tlp};
use renkei::proto::PublishStatus;
use serde_json::Value;

/// Chromium, installed if missing and this is root (as `.ci/run` would).
fn chromium() -> PathBuf {
    let found = || {
        ["chromium", "chromium-browser"].iter().find_map(|c| {
            let out = Command::new("which").arg(c).output().ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
    };
    common::debian::ensure("chromium", "dashboard", || found().is_some());
    found().expect("chromium after installing it")
}

fn chromium_args(chromium: &Path) -> Command {
    let mut c = Command::new(chromium);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1280,1000",
    ]);
    c.stderr(Stdio::null());
    c
}

/// The page at `url` as the browser rendered it (its DOM).
fn dom(chromium: &Path, url: &str) -> String {
    let out = chromium_args(chromium)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "chromium failed on {url}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A screenshot of `url` at `png`.
fn screenshot(chromium: &Path, url: &str, png: &Path) {
    let status = chromium_args(chromium)
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        fs::metadata(png).unwrap().len() > 10_000,
        "an empty screenshot of {url}"
    );
}

/// The text of the cell of column `col` in the row of `table` whose first cell holds
/// `first` (cells carry `data-col`).
fn cell(dom: &str, table: &str, first: &str, col: &str) -> String {
    let start = dom
        .find(&format!("<table id=\"{table}\""))
        .expect("the table");
    let table = &dom[start..start + dom[start..].find("</table>").unwrap()];
    let row = table
        .split("<tr>")
        .find(|r| {
            r.split("<td")
                .nth(1)
                .is_some_and(|td| td.contains(&format!(">{first}</td>")))
        })
        .unwrap_or_else(|| panic!("no row {first} in {table}"));
    let at = row
        .find(&format!("data-col=\"{col}\""))
        .unwrap_or_else(|| panic!("no column {col}"));
    let text = &row[at..];
    let text = &text[text.find('>').unwrap() + 1..];
    text[..text.find("</td>").unwrap()].to_owned()
}

/// A plain GET of `path` from the dashboard; the head and the body.
fn get(addr: &str, path: &str) -> (String, String) {
    get_as(addr, addr, path, "Sec-Fetch-Site: same-origin\r\n")
}

/// [`get`] naming `host` in the request, with the `headers` given (each line ended).
fn get_as(addr: &str, host: &str, path: &str, headers: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

struct Dashboard(Child);

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The fiscal year (April to March) the test runs in.
fn this_fiscal_year() -> i32 {
    let today = renkei::metrics::day_of(renkei::timestamp::Timestamp::now().unix_ms());
    renkei::metrics::fiscal_year_containing(today, 4)
}

/// The node and its auditor's client file; returns the node's address.
fn setup(dir: &Path) -> (common::served::Served, String) {
    pki(dir, "jp-mod,us-dod,au-dod,jp-audit");
    let hub = node_toml("jp-mod").with(&format!(
        "country = \"JP\"\n\n\
         [[partner]]\nid = \"us-dod\"\ncountry = \"US\"\nrole = \"liaison\"\nclearance = \"amber\"\nkeys = [{{ public = \"{}\" }}]\n\n\
         [[partner]]\nid = \"au-dod\"\ncountry = \"AU\"\nrole = \"liaison\"\nclearance = \"green\"\n\n\
         [[partner]]\nid = \"jp-audit\"\nrole = \"auditor\"\n\n\
         [[target]]\nfiscal_year = {}\nconsultations = 4\n",
        common::public_key(dir, "us-dod"),
        this_fiscal_year()
    ));
    hub.write(dir, "hub.toml");
    let (served, addr) = serve(dir, "hub.toml");
    client_toml("jp-audit", &addr, "jp-mod").write(dir, "jp-audit.toml");
    (served, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_reads_the_dashboard_in_a_browser() {
    let chromium = chromium();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (served, addr) = setup(dir);
    let amber_id = the_us_desks_year(dir, &addr).await;

    // What `renkei metrics` says, as the logic model counts it.
    let metrics = renkei_ok(
        dir,
        &["metrics", "--config", "jp-audit.toml", "--format", "json"],
    );
    let report: Value = serde_json::from_str(&metrics.stdout).unwrap();
    assert_eq!(outputs(&report, "US"), [2, 1, 4]);
    assert_eq!(outputs(&report, "AU"), [2, 1, 3], "not the AMBER indicator");
    // The review sheet in JSON, this year's consultations against 4.
    let fy = this_fiscal_year();
    let consultations = report["indicators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["fiscal_year"] == fy && i["indicator"] == "consultations")
        .unwrap();
    assert_eq!(consultations["target"], 4);
    assert_eq!(consultations["actual"], 2);
    assert_eq!(consultations["achievement_pct"], 50.0);
    assert!(report["computed_from"]["log_size"].as_u64().unwrap() > 0);

    // The dashboard, and the browser: the first page shows the same figures.
    let (dashboard, url) = start_dashboard(dir);
    let web = url.trim_start_matches("http://").to_owned();
    the_first_page_shows_the_figures(&dom(&chromium, &format!("{url}/")), &report);

    // A search for the AMBER indicator finds it, and why au-dod did not get it.
    let found = dom(&chromium, &format!("{url}/log?bulletin={amber_id}"));
    assert!(
        found.contains(&amber_id),
        "the search did not find {amber_id}"
    );
    assert!(found.contains("au-dod (above_clearance)"), "{found}");

    // The checkpoint, and record 3's inclusion proof checked by the dashboard.
    let proof = dom(&chromium, &format!("{url}/checkpoint?seq=3"));
    assert!(
        proof.contains("Verified: record 3 is in the log"),
        "{proof}"
    );

    // Every table as CSV.
    let (head, csv) = get(&web, "/?csv=outputs");
    assert!(head.contains("text/csv"), "{head}");
    assert!(
        csv.starts_with("country or organisation,consultations,previous,change,%,exercises"),
        "{csv}"
    );
    assert!(csv.contains("US,2,0,+2,new,1,0,+1,new,4,0,+4,new"), "{csv}");
    let (_, records) = get(&web, &format!("/log?bulletin={amber_id}&csv=records"));
    assert!(
        records.lines().count() >= 2 && records.contains(&amber_id),
        "{records}"
    );
    only_its_own_pages_are_answered(&web);
    screenshots(&chromium, &url);
    drop(dashboard);
    assert!(served.stop(PATIENCE).success());
}

/// The US desk's year: two consultations, an exercise, three indicators, and an AMBER
/// indicator the Australian desk is not cleared for (its id).
async fn the_us_desks_year(dir: &Path, addr: &str) -> String {
    let key = common::signing_key(dir, "us-dod");
    let hub = "jp-mod".parse().unwrap();
    let us = connect_as(&dir.join("certs"), "us-dod", addr.parse().unwrap(), &hub)
        .await
        .unwrap();
    let mut amber_id = String::new();
    for (i, (tlp, kind)) in [
        (Tlp::Green, Kind::Consultation),
        (Tlp::Green, Kind::Consultation),
        (Tlp::Green, Kind::Exercise),
        (Tlp::Green, Kind::Indicator),
        (Tlp::Green, Kind::Indicator),
        (Tlp::Green, Kind::Indicator),
        (Tlp::Amber, Kind::Indicator),
    ]
    .into_iter()
    .enumerate()
    {
        let b = sign_as(&key, "us-dod", tlp, kind, &format!("note {i}"), &[], &[]);
        let r = us.publish(b).await.unwrap();
        assert_eq!(r.status, PublishStatus::Accepted as i32, "{}", r.message);
        amber_id = r.bulletin_id;
    }
    us.close().await;
    amber_id
}

/// A country's consultations, exercises and threat exchanges in `report` (by country:
/// the bulletins it took part in, each once).
fn outputs(report: &Value, country: &str) -> [u64; 3] {
    let p = report["partners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["partner"] == country)
        .unwrap();
    let mut o = [0; 3];
    for f in p["figures"].as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let Some(kind) = name.strip_prefix("took_part.") else {
            continue;
        };
        let slot = match kind {
            "consultation" => 0,
            "exercise" => 1,
            _ => 2,
        };
        o[slot] += f["value"].as_u64().unwrap();
    }
    o
}

/// `renkei dashboard` for the auditor in `dir`, on a port the OS picks; its URL.
fn start_dashboard(dir: &Path) -> (Dashboard, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_renkei"))
        .args([
            "dashboard",
            "--config",
            "jp-audit.toml",
            "--listen",
            "127.0.0.1:0",
        ])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let dashboard = Dashboard(child);
    assert!(
        line.starts_with("renkei dashboard of node jp-mod on http://127.0.0.1:"),
        "{line:?}"
    );
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_end_matches('/');
    (dashboard, url.to_owned())
}

/// The first page as the browser shows it: the outputs per country as `renkei metrics`
/// reported them, the chart, the countries engaged, the log the figures were computed
/// from, and the review sheet: this year's consultations against 4.
fn the_first_page_shows_the_figures(page: &str, report: &Value) {
    for partner in ["US", "AU"] {
        let [c, e, t] = outputs(report, partner);
        let shown = |col: &str| cell(page, "outputs", partner, col);
        assert_eq!(shown("consultations"), c.to_string(), "{partner}");
        assert_eq!(shown("exercises"), e.to_string(), "{partner}");
        assert_eq!(shown("threat exchanges"), t.to_string(), "{partner}");
    }
    assert!(page.contains("<svg class=\"chart\""), "no chart");
    assert!(
        page.matches("class=\"bar\"").count() >= 3,
        "the chart has no bars"
    );
    assert!(page.contains("id=\"engaged\""));
    let computed = page.split("id=\"computed\"").nth(1).expect("the log named");
    assert!(
        computed.contains(" records of the signed log, Merkle root <code>"),
        "{computed}"
    );
    let fy = this_fiscal_year();
    let achieved = cell(
        page,
        "indicators",
        "consultations",
        &format!("FY{fy} achievement"),
    );
    assert_eq!(achieved, "50%");
    assert_eq!(
        cell(page, "outputs", "all (each event once)", "consultations"),
        "2"
    );
}

/// The dashboard at `web` answers only its own pages: not a page that names another
/// host (DNS rebinding through the auditor's browser), not another site's request
/// (each page is a recorded query; the checkpoint page has the node sign),
/// and a browser that says neither is asked to carry a SameSite=Strict cookie first
/// (another site's request never carries it), the node not asked before.
fn only_its_own_pages_are_answered(web: &str) {
    let (head, _) = get_as(web, "attacker.example:80", "/log", "");
    assert!(head.starts_with("HTTP/1.1 421"), "{head}");
    for header in [
        "Sec-Fetch-Site: cross-site\r\n",
        "Origin: https://attacker.example\r\n",
    ] {
        let (head, _) = get_as(web, web, "/checkpoint", header);
        assert!(head.starts_with("HTTP/1.1 403"), "{header}: {head}");
    }
    let (head, body) = get_as(web, web, "/checkpoint?seq=3", "");
    assert!(
        body.contains("id=\"introduce\"") && !body.contains("Verified"),
        "{body}"
    );
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .expect("a cookie");
    assert!(head.to_lowercase().contains("samesite=strict"), "{head}");
    let with_cookie = format!("Cookie: {cookie}\r\n");
    let (_, body) = get_as(web, web, "/checkpoint?seq=3", &with_cookie);
    assert!(body.contains("Verified: record 3 is in the log"), "{body}");
    let forged = "Cookie: renkei_dashboard=0123456789abcdef0123456789abcdef\r\n";
    let (_, body) = get_as(web, web, "/checkpoint?seq=3", forged);
    assert!(body.contains("id=\"introduce\""), "{body}");
}

/// A screenshot of each page, for a person to look at.
fn screenshots(chromium: &Path, url: &str) {
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../dashboard-screenshots");
    fs::create_dir_all(&shots).unwrap();
    for (name, path) in [
        ("metrics", "/"),
        ("log", "/log?partner=au-dod"),
        ("checkpoint", "/checkpoint?seq=3"),
        ("links", "/links"),
    ] {
        screenshot(
            chromium,
            &format!("{url}{path}"),
            &shots.join(format!("{name}.png")),
        );
    }
}
