//! check-config's checks without a disk: files and a configuration in, findings out.

use super::*;
use crate::identity::{self, PartnerId};
use crate::pki::Ca;

const DAY: u64 = 86_400_000;

fn now() -> Timestamp {
    Timestamp::from_unix_ms(1_790_000_000_000)
}

fn id(s: &str) -> PartnerId {
    s.parse().unwrap()
}

fn config(partners: &str) -> NodeConfig {
    let text = format!(
        "[node]\nid = \"jp-mod\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\nca_cert = \"ca.crt\"\n\
         tls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\nsigning_key = \"signing.key\"\ncountry = \"JP\"\n{partners}"
    );
    NodeConfig::parse(&text, Path::new("node.toml")).unwrap()
}

fn read(text: &str, mode: u32) -> FileRead {
    FileRead::Read {
        bytes: text.as_bytes().to_vec(),
        mode: Some(mode),
    }
}

/// A CA and the files of a node `jp-mod` it issued, all as `certs init` writes them.
struct Pki {
    ca: Ca,
    files: NodeFiles,
}

fn pki() -> Pki {
    let ca = Ca::generate(now()).unwrap();
    let tls = ca.issue(&id("jp-mod"), now()).unwrap();
    let signing = identity::signing_key_to_pem(&identity::generate_signing_key()).unwrap();
    let files = NodeFiles {
        ca_cert: read(ca.cert_pem(), 0o644),
        tls_cert: read(&tls.cert_pem, 0o644),
        tls_key: read(&tls.key_pem, 0o600),
        signing_key: read(&signing, 0o600),
        data_free: Some(1 << 40),
    };
    Pki { ca, files }
}

fn fields(findings: &[Finding], severity: Severity) -> Vec<&str> {
    findings
        .iter()
        .filter(|f| f.severity == severity)
        .map(|f| f.field.as_str())
        .collect()
}

#[test]
fn files_as_certs_init_writes_them_pass() {
    let p = pki();
    let findings = check(&config(""), &p.files, now());
    assert!(findings.is_empty(), "{findings:?}");
}

#[test]
fn missing_and_unparsable_files_name_their_field() {
    let mut p = pki();
    p.files.tls_key = FileRead::Missing;
    p.files.signing_key = read("not a key", 0o600);
    p.files.ca_cert = FileRead::Unreadable("permission denied".into());
    let findings = check(&config(""), &p.files, now());
    assert_eq!(
        fields(&findings, Severity::Error),
        ["node.ca_cert", "node.tls_key", "node.signing_key"],
        "{findings:#?}"
    );
    assert!(findings[0].problem.contains("permission denied"));
    assert!(findings[1].problem.contains("tls.key does not exist"));
    assert!(
        findings[2].problem.contains("PKCS#8"),
        "{}",
        findings[2].problem
    );
}

#[test]
fn private_key_modes_0600_expected_group_read_only_warned() {
    for (mode, expected) in [
        (0o600, None),
        (0o400, None),
        (0o640, Some(Severity::Warning)),
        (0o440, Some(Severity::Warning)),
        (0o644, Some(Severity::Error)),
        (0o660, Some(Severity::Error)),
        (0o604, Some(Severity::Error)),
        (0o666, Some(Severity::Error)),
    ] {
        let mut p = pki();
        if let FileRead::Read { mode: m, .. } = &mut p.files.signing_key {
            *m = Some(mode);
        }
        let findings = check(&config(""), &p.files, now());
        assert_eq!(
            findings.first().map(|f| f.severity),
            expected,
            "{mode:o}: {findings:?}"
        );
        if let Some(f) = findings.first() {
            assert_eq!(f.field, "node.signing_key");
            assert!(
                f.problem.contains(&format!("mode {mode:04o}")),
                "{}",
                f.problem
            );
            assert!(f.problem.contains("0600"), "{}", f.problem);
        }
        if expected == Some(Severity::Warning) {
            assert!(findings[0].problem.contains("fsGroup"));
        }
    }
}

#[test]
fn a_certificate_of_another_ca_is_an_error() {
    let mut p = pki();
    let other = Ca::generate(now()).unwrap();
    let tls = other.issue(&id("jp-mod"), now()).unwrap();
    p.files.tls_cert = read(&tls.cert_pem, 0o644);
    p.files.tls_key = read(&tls.key_pem, 0o600);
    let findings = check(&config(""), &p.files, now());
    assert_eq!(
        fields(&findings, Severity::Error),
        ["node.tls_cert"],
        "{findings:#?}"
    );
    assert!(
        findings[0].problem.contains("another CA"),
        "{}",
        findings[0].problem
    );
}

#[test]
fn a_certificate_for_another_id_or_with_another_key_is_an_error() {
    let mut p = pki();
    let tls = p.ca.issue(&id("mod-fr"), now()).unwrap();
    p.files.tls_cert = read(&tls.cert_pem, 0o644);
    let findings = check(&config(""), &p.files, now());
    assert_eq!(
        fields(&findings, Severity::Error),
        ["node.tls_cert", "node.tls_key"],
        "{findings:#?}"
    );
    assert!(findings[0]
        .problem
        .contains("names mod-fr, not node.id jp-mod"));
    assert!(findings[1]
        .problem
        .contains("is not the key of the certificate"));
}

#[test]
fn expiry_is_an_error_and_near_expiry_a_warning() {
    let mut p = pki();
    let start = Timestamp::from_unix_ms(now().unix_ms() - 400 * DAY);
    let expired =
        p.ca.issue_valid(
            &id("jp-mod"),
            start,
            Timestamp::from_unix_ms(now().unix_ms() - DAY),
        )
        .unwrap();
    p.files.tls_cert = read(&expired.cert_pem, 0o644);
    p.files.tls_key = read(&expired.key_pem, 0o600);
    let findings = check(&config(""), &p.files, now());
    assert_eq!(
        fields(&findings, Severity::Error),
        ["node.tls_cert"],
        "{findings:#?}"
    );
    assert!(
        findings[0].problem.contains("expired on"),
        "{}",
        findings[0].problem
    );

    let soon =
        p.ca.issue_valid(
            &id("jp-mod"),
            start,
            now().saturating_add(Duration::from_secs(10 * 86_400)),
        )
        .unwrap();
    p.files.tls_cert = read(&soon.cert_pem, 0o644);
    p.files.tls_key = read(&soon.key_pem, 0o600);
    let findings = check(&config(""), &p.files, now());
    assert_eq!(
        fields(&findings, Severity::Warning),
        ["node.tls_cert"],
        "{findings:#?}"
    );
    assert!(
        findings[0].problem.contains("in 10 days"),
        "{}",
        findings[0].problem
    );
    assert!(!has_errors(&findings));

    // The CA itself, ten years on.
    let later = now().saturating_add(Duration::from_secs(11 * 365 * 86_400));
    let findings = check(&config(""), &pki().files, later);
    assert!(
        fields(&findings, Severity::Error).contains(&"node.ca_cert"),
        "{findings:#?}"
    );
}

#[test]
fn partners_that_could_not_publish_are_warned_about() {
    let p = pki();
    let cfg = config(
        "[[partner]]\nid = \"a\"\nrole = \"auditor\"\n\
         [[partner]]\nid = \"b\"\nrole = \"liaison\"\nclearance = \"green\"\ncountry = \"VN\"\n\
         [[partner]]\nid = \"c\"\nrole = \"relay\"\nclearance = \"green\"\norganisation = \"ASEAN\"\n",
    );
    let findings = check(&cfg, &p.files, now());
    assert_eq!(
        fields(&findings, Severity::Warning),
        ["partner[1].keys", "partner[2].keys", "partner[2].address"]
    );
    assert!(findings[2].problem.contains("relay c has no address"));
    assert!(findings[0]
        .problem
        .contains("liaison b has no signing keys"));
}

#[test]
fn syntax_errors_name_the_field_at_their_place() {
    let text = "[node]\nid = \"jp-mod\"\n\n[[partner]]\nid = \"a\"\n\n[[partner]]\nid = \"b\"\nclearence = \"red\"\nkeys = [{ public = \"x\" }, { public = \"AAAA\" }]\n";
    assert_eq!(
        field_at(text, 9, 1).as_deref(),
        Some("partner[1].clearence")
    );
    assert_eq!(
        field_at(text, 10, 39).as_deref(),
        Some("partner[1].keys[1].public")
    );
    assert_eq!(field_at(text, 2, 6).as_deref(), Some("node.id"));
    assert_eq!(field_at("not = [toml", 1, 1), None);

    // The whole way from toml's error: an unknown field is named.
    let text = String::from(
        "[node]\nid = \"jp-mod\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"d\"\nca_cert = \"c\"\ntls_cert = \"t\"\n\
         tls_key = \"k\"\nsigning_key = \"s\"\n[[partner]]\nid = \"a\"\nrole = \"liaison\"\nclearance = \"red\"\n\
         [[partner]]\nid = \"b\"\nrole = \"liaison\"\nclearence = \"red\"\n"
    );
    let err = NodeConfig::parse(&text, Path::new("n.toml")).unwrap_err();
    let finding = config_error(&err, &text);
    assert_eq!(finding.field, "partner[1].clearence", "{finding}");
    assert!(
        finding.problem.contains("unknown field `clearence`"),
        "{finding}"
    );
}

#[test]
fn a_data_directory_below_the_reserve_is_a_warning() {
    let mut p = pki();
    p.files.data_free = Some(10 << 20);
    let findings = check(&config("[storage]\nreserve_mib = 64\n"), &p.files, now());
    assert_eq!(
        fields(&findings, Severity::Warning),
        ["storage.reserve_mib"]
    );
    assert!(
        findings[0]
            .problem
            .contains("10 MiB free, below the reserve of 64 MiB"),
        "{findings:?}"
    );
    // Turned off, or unmeasured: nothing to say.
    assert!(check(&config("[storage]\nreserve_mib = 0\n"), &p.files, now()).is_empty());
    p.files.data_free = None;
    assert!(check(&config(""), &p.files, now()).is_empty());
}
