use super::*;
use crate::identity::generate_signing_key;

fn pk() -> String {
    PublicKey::of(&generate_signing_key()).to_string()
}

const NODE: &str = r#"
[node]
id = "mod-jp"
listen = "127.0.0.1:4433"
data_dir = "data"
ca_cert = "certs/ca.crt"
tls_cert = "certs/mod-jp/tls.crt"
tls_key = "certs/mod-jp/tls.key"
signing_key = "certs/mod-jp/signing.key"
"#;

fn parse(extra: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::parse(&format!("{NODE}{extra}"), Path::new("node.toml"))
}

fn invalid_field(extra: &str) -> (String, String) {
    match parse(extra) {
        Err(ConfigError::Invalid { field, problem, .. }) => (field, problem),
        other => panic!("expected an Invalid error, got {other:?}"),
    }
}

#[test]
fn the_shipped_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/node.toml");
    let cfg = NodeConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.partners.len() >= 3);
    assert!(cfg.partners.iter().any(|p| p.role == Role::Auditor));
    assert!(!cfg.revoked.is_empty());
    assert_eq!(cfg.node.data_dir, Path::new("/var/lib/renkei"));
}

#[test]
fn relative_paths_resolve_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.toml");
    std::fs::write(&path, NODE).unwrap();
    let cfg = NodeConfig::load(&path).unwrap();
    assert_eq!(cfg.node.data_dir, dir.path().join("data"));
    assert_eq!(cfg.node.tls_key, dir.path().join("certs/mod-jp/tls.key"));
}

#[test]
fn a_full_partner_parses_with_defaults() {
    let key = pk();
    let cfg = parse(&format!(
        r#"
[[partner]]
id = "nato-ccdcoe"
role = "relay"
clearance = "amber+strict"
kinds = ["indicator", "advisory"]
deny_tags = ["national-only"]
groups = ["nato"]
keys = [{{ public = "{key}", not_before = 2026-01-01T00:00:00Z, not_after = "2027-01-01T00:00:00Z" }}]

[[partner]]
id = "auditor-1"
role = "auditor"
"#
    ))
    .unwrap();
    let p = &cfg.partners[0];
    assert_eq!(p.clearance, Some(Tlp::AmberStrict));
    assert!(p.shares_kind(Kind::Advisory) && !p.shares_kind(Kind::Exercise));
    assert!(
        cfg.partners[1].shares_kind(Kind::Exercise),
        "all kinds when absent"
    );
    assert_eq!(cfg.limits, LimitsSection::default());
    let public: PublicKey = key.parse().unwrap();
    let ring = cfg.keyring();
    let at = |s: &str| s.parse::<Timestamp>().unwrap();
    assert!(ring
        .lookup(&p.id, &public.key_id(), at("2026-06-01T00:00:00Z"))
        .is_ok());
    assert!(ring
        .lookup(&p.id, &public.key_id(), at("2027-06-01T00:00:00Z"))
        .is_err());
}

#[test]
fn unknown_fields_are_errors_naming_the_line() {
    let err = parse(
        "\n[[partner]]\nid = \"a\"\nrole = \"liaison\"\nclearance = \"red\"\nclearence = \"red\"\n",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("node.toml:15:"), "{text}");
    assert!(text.contains("clearence"), "{text}");
}

#[test]
fn bad_values_name_the_value_and_line() {
    for (extra, needle) in [
        ("[[partner]]\nid = \"MOD_FR\"\nrole = \"liaison\"\nclearance = \"red\"\n", "not a valid partner id"),
        ("[[partner]]\nid = \"a\"\nrole = \"boss\"\nclearance = \"red\"\n", "boss"),
        ("[[partner]]\nid = \"a\"\nrole = \"liaison\"\nclearance = \"purple\"\n", "not a TLP level"),
        ("[[partner]]\nid = \"a\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{ public = \"AAAA\" }]\n", "ed25519:"),
        ("[[partner]]\nid = \"a\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{ public = \"KEY\", not_before = \"soon\" }]\n", "not an RFC 3339 time"),
        ("[[partner]]\nid = \"a\"\nrole = \"liaison\"\nclearance = \"red\"\ngroups = [\"NATO\"]\n", "not a valid group name"),
        ("[[revoked]]\nreason = \"lost\"\n", "needs `key = "),
        ("[[revoked]]\nkey = \"KEY\"\ncertificate = \"sha256:00\"\n", "sha256"),
        ("[[revoked]]\nkey = \"KEY\"\ncertificate = \"sha256:0000000000000000000000000000000000000000000000000000000000000000\"\n", "not both"),
    ] {
        let err = parse(&extra.replace("KEY", &pk())).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    let err = NodeConfig::parse("[node]\nid = \"x\"\n", Path::new("n.toml")).unwrap_err();
    assert!(err.to_string().contains("missing field `listen`"), "{err}");
}

#[test]
fn semantic_rules_name_the_field() {
    let key = pk();
    let cases = [
        ("[[partner]]\nid = \"mod-jp\"\nrole = \"liaison\"\nclearance = \"red\"\n".to_string(), "partner[0].id", "own id"),
        (
            "[[partner]]\nid = \"a\"\nrole = \"liaison\"\nclearance = \"red\"\n[[partner]]\nid = \"a\"\nrole = \"relay\"\nclearance = \"red\"\n".to_string(),
            "partner[1].id",
            "already configured as partner[0]",
        ),
        ("[[partner]]\nid = \"a\"\nrole = \"liaison\"\n".to_string(), "partner[0].clearance", "needs a clearance"),
        (
            format!("[[partner]]\nid = \"a\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{{ public = \"{key}\" }}]\n[[partner]]\nid = \"b\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{{ public = \"{key}\" }}]\n"),
            "partner[1].keys[0].public",
            "already a key of partner a",
        ),
        (
            format!("[[partner]]\nid = \"a\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{{ public = \"{key}\", not_before = 2027-01-01T00:00:00Z, not_after = 2026-01-01T00:00:00Z }}]\n"),
            "partner[0].keys[0].not_after",
            "is not after",
        ),
        ("[[partner]]\nid = \"a\"\nrole = \"liaison\"\nclearance = \"red\"\ndeny_tags = [\" \"]\n".to_string(), "partner[0].deny_tags[0]", "empty"),
        ("[[partner]]\nid = \"a\"\nrole = \"liaison\"\nclearance = \"red\"\ndeny_tags = [\"x\\u200By\"]\n".to_string(), "partner[0].deny_tags[0]", "invisible"),
        ("[limits]\nmax_body_bytes = 2000000\n".to_string(), "limits.max_body_bytes", "between 1 and"),
        ("[limits]\nmax_frame_bytes = 1000\n".to_string(), "limits.max_frame_bytes", "at least"),
        ("[limits]\nstream_in_flight_mib = 1\n".to_string(), "limits.stream_in_flight_mib", "the largest frame"),
        ("[limits]\npartner_in_flight_mib = 8\n".to_string(), "limits.partner_in_flight_mib", "at least 16 MiB"),
        ("[limits]\nnode_in_flight_mib = 32\n".to_string(), "limits.node_in_flight_mib", "at least 64 MiB"),
        ("[limits]\npartner_mib_per_sec = 0\n".to_string(), "limits.partner_mib_per_sec", "at least 1 MiB"),
        ("[limits]\npartner_publishes_per_sec = 0\n".to_string(), "limits.partner_publishes_per_sec", "at least 1 publish"),
        ("[transport]\ncommit_target_ms = 0\n".to_string(), "transport.commit_target_ms", "greater than 0"),
        ("[taxii]\nindex_objects = 10\n".to_string(), "taxii.index_objects", "at least 1000"),
    ];
    for (extra, field, problem_part) in cases {
        let (f, p) = invalid_field(&extra);
        assert_eq!(f, field);
        assert!(p.contains(problem_part), "{field}: {p}");
    }
}

#[test]
fn revoked_keys_enter_the_keyring() {
    let key = pk();
    let cfg = parse(&format!(
        "[[partner]]\nid = \"a\"\nrole = \"liaison\"\nclearance = \"red\"\nkeys = [{{ public = \"{key}\" }}]\n[[revoked]]\nkey = \"{key}\"\nreason = \"laptop lost\"\n"
    ))
    .unwrap();
    let public: PublicKey = key.parse().unwrap();
    assert!(cfg.keyring().is_revoked(&public));
}

#[test]
fn missing_file_is_a_read_error_naming_it() {
    let err = NodeConfig::load(Path::new("/nonexistent/renkei.toml")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/renkei.toml: cannot read"),
        "{err}"
    );
}

#[test]
fn the_shipped_client_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/examples/client.toml");
    let cfg = ClientConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.client.server_name.as_str(), "jp-mod");
    assert_eq!(cfg.partners.len(), 2);
    assert!(cfg.client.signing_key.is_some());
}

#[test]
fn client_config_errors_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[client]\nid = \"a\"\nserver = \"not an address\"\n").unwrap();
    let err = ClientConfig::load(&path).unwrap_err().to_string();
    assert!(err.contains("c.toml:3:"), "{err}");
    let key = pk();
    std::fs::write(
        &path,
        format!("[client]\nid = \"a\"\nserver = \"127.0.0.1:1\"\nserver_name = \"hub\"\nca_cert = \"ca\"\ntls_cert = \"c\"\ntls_key = \"k\"\n[[partner]]\nid = \"b\"\nkeys = [{{ public = \"{key}\" }}, {{ public = \"{key}\" }}]\n"),
    )
    .unwrap();
    let err = ClientConfig::load(&path).unwrap_err().to_string();
    assert!(err.contains("partner[0].keys[1].public"), "{err}");
}

#[test]
fn a_pinned_certificate_fingerprint_parses_enters_the_digest_and_is_unique() {
    let fp = crate::identity::CertFingerprint::of_der(b"a certificate");
    let colons = fp
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let partner = "[[partner]]\nid = \"a\"\nrole = \"liaison\"\nclearance = \"red\"\n";
    let unpinned = parse(partner).unwrap();
    let pinned = parse(&format!("{partner}tls_fingerprint = \"{fp}\"\n")).unwrap();
    assert_eq!(pinned.partners[0].tls_fingerprint, Some(fp));
    let same = parse(&format!("{partner}tls_fingerprint = \"{colons}\"\n")).unwrap();
    assert_eq!(same.partners[0].tls_fingerprint, Some(fp));
    assert_ne!(pinned.policy_digest(), unpinned.policy_digest());
    assert_eq!(pinned.policy_digest(), same.policy_digest());

    let err = parse(&format!("{partner}tls_fingerprint = \"sha256:beef\"\n")).unwrap_err();
    assert!(
        err.to_string().contains("not a certificate fingerprint"),
        "{err}"
    );
    let (field, problem) = invalid_field(&format!(
        "{partner}tls_fingerprint = \"{fp}\"\n[[partner]]\nid = \"b\"\nrole = \"relay\"\nclearance = \"red\"\ntls_fingerprint = \"{fp}\"\n"
    ));
    assert_eq!(field, "partner[1].tls_fingerprint");
    assert!(
        problem.contains("already the certificate of partner a"),
        "{problem}"
    );
}

#[test]
fn peers_and_origins_beyond_them_are_checked() {
    let peer = r#"
[[partner]]
id = "nato-ccdcoe"
role = "relay"
clearance = "amber"
address = "ccdcoe.example:4433"
"#;
    let origin = format!("\n[[origin]]\nid = \"ee-mod\"\nvia = [\"nato-ccdcoe\"]\ngroups = [\"nato\"]\nkeys = [{{ public = \"{}\" }}]\n", pk());
    let cfg = parse(&format!("{peer}{origin}")).unwrap_or_else(|e| panic!("{e}"));
    let peers: Vec<_> = cfg
        .peers()
        .map(|(id, a)| (id.to_string(), a.to_string()))
        .collect();
    assert_eq!(
        peers,
        [("nato-ccdcoe".to_string(), "ccdcoe.example:4433".to_string())]
    );
    let key = cfg.origins[0].keys[0].public;
    let ee: PartnerId = "ee-mod".parse().unwrap();
    assert!(
        cfg.keyring()
            .lookup(&ee, &key.key_id(), Timestamp::from_unix_ms(1))
            .is_ok(),
        "the origin's key verifies its bulletins"
    );
    assert_eq!(cfg.federation.hop_limit, 4);
    let digest = cfg.policy_digest();
    assert_ne!(
        digest,
        parse(peer).unwrap().policy_digest(),
        "origins are policy"
    );

    let liaison_peer = peer.replace("relay", "liaison");
    let (field, problem) = invalid_field(&liaison_peer);
    assert_eq!(field, "partner[0].address");
    assert!(problem.contains("only a relay"), "{problem}");
    let (field, problem) = invalid_field(&format!(
        "{peer}\n[[origin]]\nid = \"ee-mod\"\nvia = [\"fi-mod\"]\n"
    ));
    assert_eq!(field, "origin[0].via[0]");
    assert!(problem.contains("not a partner"), "{problem}");
    let (field, _) = invalid_field(&format!("{peer}\n[[origin]]\nid = \"ee-mod\"\nvia = []\n"));
    assert_eq!(field, "origin[0].via");
    let (field, problem) = invalid_field(&format!(
        "{peer}\n[[origin]]\nid = \"nato-ccdcoe\"\nvia = [\"nato-ccdcoe\"]\n"
    ));
    assert_eq!(field, "origin[0].id");
    assert!(problem.contains("is a partner"), "{problem}");
    let (field, _) = invalid_field(&format!("{peer}{origin}{origin}"));
    assert_eq!(field, "origin[1].id");
    let (field, _) = invalid_field(&format!("{peer}\n[federation]\nhop_limit = 0\n"));
    assert_eq!(field, "federation.hop_limit");
    match parse(&peer.replace("ccdcoe.example:4433", "ccdcoe.example")) {
        Err(ConfigError::Syntax { message, .. }) => {
            assert!(message.contains("HOST:PORT"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}
