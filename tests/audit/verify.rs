//! Offline, with the `renkei` binary: export, verify, and every kind of tampering caught and located.

use super::*;

/// A hub that worked one day and stopped cleanly (signing a last checkpoint), with its
/// log exported by `renkei audit export` to `log.export` in the federation's directory.
pub(super) async fn exported_day() -> (Federation, Vec<proto::PublishResult>) {
    let mut fed = hub().start().await;
    let monday = working_day(&fed, "Monday").await;
    fed.halt().await;
    let dir = fed.dir.path();
    let out = renkei_ok(
        dir,
        &[
            "audit",
            "export",
            "--data-dir",
            "data",
            "--out",
            "log.export",
        ],
    );
    let summary = json(&out.stdout);
    assert_eq!(summary["file"], "log.export");
    assert!(summary["checkpoints"].as_u64().unwrap() >= 1);
    (fed, monday)
}

pub(super) fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub(super) fn read_export(path: &Path) -> Export {
    export::parse(Bytes::from(fs::read(path).unwrap())).expect("the export parses")
}

/// An export with these records and checkpoints; the header announces `announced`.
pub(super) fn rebuilt(
    base: &Export,
    records: &[Bytes],
    checkpoints: &[String],
    announced: usize,
) -> Export {
    let mut header = base.header.clone();
    header.records = announced as u64;
    Export {
        header,
        records: records.to_vec(),
        checkpoints: checkpoints.to_vec(),
    }
}

/// The same change, with the header telling the truth about the number of records.
pub(super) fn edited(base: &Export, records: &[Bytes], checkpoints: &[String]) -> Export {
    rebuilt(base, records, checkpoints, records.len())
}

/// The file form of an export.
pub(super) fn encode(e: &Export) -> Vec<u8> {
    let mut out = Vec::new();
    export::write_item(&mut out, Item::Header(e.header.clone()));
    for r in &e.records {
        export::write_item(&mut out, Item::Record(r.clone()));
    }
    for c in &e.checkpoints {
        export::write_item(&mut out, Item::Checkpoint(c.clone()));
    }
    out
}

/// What the hub's key holder could make: these records, one checkpoint over all of them
/// signed with the hub's real key.
pub(super) fn resigned(base: &Export, records: &[Bytes], key: &SigningKey) -> Export {
    let mut tree = MemoryTree::new();
    for r in records {
        tree.push(r).unwrap();
    }
    let size = tree.size();
    let signer = CheckpointSigner::new(&base.header.origin, key.clone()).unwrap();
    let note = signer.sign(size, tree.root(size).unwrap()).unwrap();
    edited(base, records, &[note])
}

pub(super) fn failure(e: &Export, key: &VerifyingKey) -> VerifyError {
    match export::verify(e, key, None) {
        Ok(s) => panic!("a tampered export verified: {s:?}"),
        Err(err) => err,
    }
}

/// The sizes of an export's checkpoints, in order.
pub(super) fn checkpoint_sizes(e: &Export, key: &VerifyingKey) -> Vec<u64> {
    e.checkpoints
        .iter()
        .map(|c| checkpoint::verify(c, &e.header.origin, key).unwrap().size)
        .collect()
}

/// Does the error name record `i` (its position or seq) or a checkpoint covering it?
pub(super) fn locates(err: &VerifyError, i: u64) -> bool {
    let text = err.to_string();
    match *err {
        VerifyError::Undecodable { position, .. } => {
            position == i && text.starts_with(&format!("record at position {i} "))
        }
        VerifyError::OutOfSequence { position, .. } => {
            position == i && text.starts_with(&format!("record at position {i} says"))
        }
        // A changed time shows as this record older than the one before, or the next
        // one older than this.
        VerifyError::TimeReversed { seq } => {
            (seq == i || seq == i + 1) && text.starts_with(&format!("record {seq} is older"))
        }
        VerifyError::RootMismatch {
            index, size, from, ..
        } => {
            (from..size).contains(&i)
                && text.starts_with(&format!("checkpoint {index} (size {size}) does not match"))
                && text.contains(&format!("one of records {from}..{size}"))
        }
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_hubs_log_is_exported_queried_proved_and_verified_with_the_cli() {
    let (fed, monday) = exported_day().await;
    let dir = fed.dir.path();
    let n = the_export_verifies_on_its_own(dir);

    // Every record, as the database lists it: seqs 0..n, in order.
    let query = ["audit", "query", "--data-dir", "data", "--format", "json"];
    let all = renkei_ok(dir, &[&query[..], &["--limit", "1000"]].concat());
    let seqs: Vec<u64> = all
        .stdout
        .lines()
        .map(|l| json(l)["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..n).collect::<Vec<_>>());

    // Pinned to the hub's key it verifies; pinned to the US key it is refused.
    let pinned_to = |key: &SigningKey| {
        let key = PublicKey::of(key).to_string();
        renkei(
            dir,
            &["audit", "verify", "--json", "log.export", "--key", &key],
        )
    };
    let pinned = pinned_to(fed.key(HUB));
    assert!(
        pinned.ok && json(&pinned.stdout)["verified"] == true,
        "{}",
        pinned.stdout
    );
    let refused = pinned_to(fed.key("us-dod"));
    assert!(!refused.ok, "verified with another key: {}", refused.stdout);
    let why = "signed by another key than --key";
    assert!(refused.stderr.contains(why), "{}", refused.stderr);
    assert!(refused.stdout.is_empty());

    vn_mods_records_say_what_was_decided_for_it(dir, &monday);

    // Record 1 is proved against the latest checkpoint, and the proof is checked.
    let prove = ["audit", "prove", "--data-dir", "data", "--seq"];
    let proof = json(&renkei_ok(dir, &[&prove[..], &["1"]].concat()).stdout);
    assert_eq!(proof["verified"], true);
    assert_eq!(proof["seq"], 1);
    assert_eq!(proof["tree_size"], n);
    assert_eq!(proof["record"]["seq"], 1);
    let beyond = renkei(dir, &[&prove[..], &[n.to_string().as_str()]].concat());
    assert!(!beyond.ok);
    assert!(beyond.stderr.contains("not covered"), "{}", beyond.stderr);

    // The metrics report: who received and was given what.
    let metrics = [
        "metrics",
        "--data-dir",
        "data",
        "--format",
        "json",
        "--by",
        "partner",
    ];
    let m = json(&renkei_ok(dir, &metrics).stdout);
    assert_eq!(m["node_id"], HUB);
    let partners = m["partners"].as_array().expect("a partners array");
    let figure = |partner: &str, name: &str| {
        partners
            .iter()
            .find(|p| p["partner"] == partner)
            .and_then(|p| p["figures"].as_array())
            .and_then(|fs| fs.iter().find(|f| f["name"] == name))
            .map_or(0, |f| f["value"].as_u64().unwrap())
    };
    assert_eq!(figure("us-dod", "received.advisory"), 1);
    assert_eq!(figure("uk-mod", "shared.consultation"), 1);
    assert_eq!(figure("vn-mod", "shared.exercise"), 1);
    assert_eq!(figure("vn-mod", "acked"), 1);
    fed.stop().await;
}

/// The export in `dir` verifies on its own, every record under the checkpoint signed at
/// stop, but is not called verified: nothing the auditor holds vouched for it. Its
/// number of records.
fn the_export_verifies_on_its_own(dir: &Path) -> u64 {
    let verify = [
        "audit",
        "verify",
        "--json",
        "log.export",
        "--self-signed-ok",
    ];
    let v = json(&renkei_ok(dir, &verify).stdout);
    assert_eq!(
        v["verified"], false,
        "nothing the auditor holds vouched for it"
    );
    assert_eq!(v["internally_consistent"], true);
    assert_eq!(v["node_id"], HUB);
    assert_eq!(v["origin"], origin());
    let n = v["records"].as_u64().unwrap();
    assert!(n >= 10, "a day's worth of records: {v}");
    assert_eq!(v["covered_by_checkpoints"], n);
    assert_eq!(v["covered_by_checkpoints"], v["records"]);
    assert_eq!(read_export(&dir.join("log.export")).records.len() as u64, n);
    n
}

/// vn-mod's records: its connection, delivery and ack, the exercise notice shared with
/// it, and the advisory it was not cleared for, with the reason; every bulletin of
/// `monday` decided for it, shared or not.
fn vn_mods_records_say_what_was_decided_for_it(dir: &Path, monday: &[proto::PublishResult]) {
    let query = ["audit", "query", "--data-dir", "data", "--format", "json"];
    let vn = renkei_ok(dir, &[&query[..], &["--partner", "vn-mod"]].concat());
    let lines: Vec<Value> = vn.stdout.lines().map(json).collect();
    let vn_decision = |l: &Value| -> Option<Value> {
        let decisions = l["decisions"].as_array()?;
        decisions.iter().find(|d| d["partner"] == "vn-mod").cloned()
    };
    for l in &lines {
        assert!(l["partner"] == "vn-mod" || vn_decision(l).is_some(), "{l}");
    }
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    for e in [
        "connection_accepted",
        "bulletin_accepted",
        "delivered",
        "acked",
    ] {
        assert!(events.contains(&e), "no {e} in {events:?}");
    }
    let accepted: Vec<&Value> = lines
        .iter()
        .filter(|l| l["event"] == "bulletin_accepted")
        .collect();
    let ids: Vec<&str> = accepted
        .iter()
        .filter_map(|l| l["bulletin_id"].as_str())
        .collect();
    let all: Vec<&str> = monday.iter().map(|r| r.bulletin_id.as_str()).collect();
    assert_eq!(ids, all, "every bulletin decided for vn-mod, shared or not");
    assert_eq!(vn_decision(accepted[0]).unwrap_or_default()["shared"], true);
    let second = vn_decision(accepted[1]).unwrap_or_default();
    assert_eq!(second["reason"], "above_clearance");
    assert_eq!(accepted[0]["tlp"], "green");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_flipped_byte_and_every_edit_of_an_export_is_caught_and_located() {
    let (fed, _) = exported_day().await;
    let genuine = read_export(&fed.dir.path().join("log.export"));
    let key = export::header_key(&genuine.header).unwrap();
    assert_eq!(key, fed.key(HUB).verifying_key());
    let summary = export::verify(&genuine, &key, None).expect("the genuine export verifies");
    let n = genuine.records.len();
    assert_eq!(summary.covered, n as u64, "the stop checkpoint covers all");

    every_flipped_byte_is_located(&genuine, &key);
    deleted_and_swapped_records_are_located(&genuine, &key);
    records_cut_off_are_caught(&genuine, &key);
    an_edited_checkpoint_is_caught(&genuine, &key);
    a_foreign_checkpoint_is_caught(&genuine, &key);
    fed.stop().await;
}

/// Bit 0 of every byte of every record of `genuine`, flipped one at a time, is caught
/// at that record.
fn every_flipped_byte_is_located(genuine: &Export, key: &VerifyingKey) {
    let (records, checkpoints) = (&genuine.records, &genuine.checkpoints);
    let n = records.len();
    // Every bit 0 of every byte of every record, flipped one at a time.
    let mut flips = 0;
    for (i, record) in records.iter().enumerate() {
        for j in 0..record.len() {
            let mut bytes = record.to_vec();
            bytes[j] ^= 0x01;
            let mut altered = records.clone();
            altered[i] = Bytes::from(bytes);
            let err = failure(&edited(genuine, &altered, checkpoints), key);
            assert!(
                locates(&err, i as u64),
                "byte {j} of record {i} flipped: {err}"
            );
            flips += 1;
        }
    }
    assert!(flips >= 500, "only {flips} bytes in {n} records");
}

/// A record deleted (in the middle or at the end) or two records swapped are caught,
/// and where they can be, located.
fn deleted_and_swapped_records_are_located(genuine: &Export, key: &VerifyingKey) {
    let (records, checkpoints) = (&genuine.records, &genuine.checkpoints);
    let n = records.len();
    // A record deleted.
    let mut fewer = records.clone();
    fewer.remove(3);
    let err = failure(&edited(genuine, &fewer, checkpoints), key);
    assert_eq!(
        err.to_string(),
        "record at position 3 says it is record 4: a record is missing, added or out of order there"
    );
    // The last record deleted, the header adjusted: the checkpoint covers it.
    let err = failure(&edited(genuine, &records[..n - 1], checkpoints), key);
    assert!(matches!(err, VerifyError::Truncated { .. }), "{err}");

    // Two records swapped.
    let mut swapped = records.clone();
    swapped.swap(2, 5);
    let err = failure(&edited(genuine, &swapped, checkpoints), key);
    assert!(
        err.to_string()
            .starts_with("record at position 2 says it is record 5"),
        "{err}"
    );
}

/// The last three records cut off are caught by the header's count, or if the header
/// was adjusted, by the first checkpoint that covers them.
fn records_cut_off_are_caught(genuine: &Export, key: &VerifyingKey) {
    let (records, checkpoints) = (&genuine.records, &genuine.checkpoints);
    let n = records.len();
    // The last records cut off, the checkpoints kept: if the header still announces them,
    // the count says so; if it was adjusted, the first checkpoint that covers them does.
    let kept = n - 3;
    let err = failure(&rebuilt(genuine, &records[..kept], checkpoints, n), key);
    assert_eq!(
        err.to_string(),
        format!("the header announces {n} records but the file holds {kept}: the log was truncated or extended")
    );
    let err = failure(&edited(genuine, &records[..kept], checkpoints), key);
    let index = checkpoint_sizes(genuine, key)
        .iter()
        .position(|&s| s > kept as u64)
        .unwrap();
    let covers = checkpoint_sizes(genuine, key)[index];
    assert_eq!(
        err.to_string(),
        format!("checkpoint {index} covers {covers} records but the log holds only {kept}: records after {kept} were removed")
    );
}

/// The last checkpoint's text edited to claim one record fewer no longer verifies.
fn an_edited_checkpoint_is_caught(genuine: &Export, key: &VerifyingKey) {
    let (records, checkpoints) = (&genuine.records, &genuine.checkpoints);
    let last = checkpoints.len() - 1;
    // A checkpoint's text edited: it claims one record fewer.
    let mut notes = checkpoints.clone();
    let size = checkpoint_sizes(genuine, key)[last];
    notes[last] = notes[last].replacen(&format!("\n{size}\n"), &format!("\n{}\n", size - 1), 1);
    assert_ne!(notes[last], checkpoints[last]);
    let err = failure(&edited(genuine, records, &notes), key);
    assert!(
        err.to_string().starts_with(&format!(
            "checkpoint {last} is not valid: the checkpoint is not signed by {}'s key",
            origin()
        )),
        "{err}"
    );
}

/// A checkpoint of the right size and root signed by a stranger is caught, in place of
/// the last one or added after them, and the genuine export fails with the stranger's key.
fn a_foreign_checkpoint_is_caught(genuine: &Export, key: &VerifyingKey) {
    let (records, checkpoints) = (&genuine.records, &genuine.checkpoints);
    let n = records.len();
    let last = checkpoints.len() - 1;
    // A checkpoint of the right size and root, signed by another key.
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let mut tree = MemoryTree::new();
    for r in records {
        tree.push(r).unwrap();
    }
    let foreign = CheckpointSigner::new(&origin(), stranger.clone())
        .unwrap()
        .sign(n as u64, tree.root(n as u64).unwrap())
        .unwrap();
    let mut notes = checkpoints.clone();
    notes[last] = foreign.clone();
    let err = failure(&edited(genuine, records, &notes), key);
    assert!(
        err.to_string().starts_with(&format!(
            "checkpoint {last} is not valid: the checkpoint is not signed by"
        )),
        "{err}"
    );
    // Added after the genuine ones, it is named by its own index.
    let mut notes = checkpoints.clone();
    notes.push(foreign);
    let err = failure(&edited(genuine, records, &notes), key);
    assert!(
        err.to_string()
            .starts_with(&format!("checkpoint {} is not valid", last + 1)),
        "{err}"
    );
    // And the genuine export does not verify with the stranger's key.
    let err = export::verify(genuine, &stranger.verifying_key(), None).unwrap_err();
    assert!(
        err.to_string().starts_with("checkpoint 0 is not valid"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_refuses_a_tampered_export_and_says_where() {
    let (fed, monday) = exported_day().await;
    let dir = fed.dir.path();
    let genuine = read_export(&dir.join("log.export"));
    let key = export::header_key(&genuine.header).unwrap();
    let records = &genuine.records;
    let n = records.len();

    // Each file fails `renkei audit verify` with the library's verdict on one line.
    let refuses = |name: &str, e: &Export, says: &str| {
        fs::write(dir.join(name), encode(e)).unwrap();
        let run = renkei(dir, &["audit", "verify", "--json", name]);
        assert!(!run.ok, "{name} verified: {}", run.stdout);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        let verdict = failure(e, &key).to_string();
        assert!(run.stderr.contains(&verdict), "{name}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{name}: {}", run.stderr);
    };

    // Someone alters one byte of the digest of Monday's exercise notice in its record.
    let at = records
        .iter()
        .position(|r| {
            let r = proto::AuditRecord::decode(r.clone()).unwrap();
            r.event == AuditEvent::BulletinAccepted as i32 && r.bulletin_id == monday[0].bulletin_id
        })
        .unwrap();
    let digest = &monday[0].digest;
    let offset = records[at]
        .windows(digest.len())
        .position(|w| w == digest.as_ref())
        .expect("the record holds the digest");
    let mut bytes = records[at].to_vec();
    bytes[offset] ^= 0x01;
    let mut flipped = records.clone();
    flipped[at] = Bytes::from(bytes);
    refuses(
        "flipped.export",
        &edited(&genuine, &flipped, &genuine.checkpoints),
        "does not match the records",
    );

    // A record deleted.
    let mut fewer = records.clone();
    fewer.remove(4);
    refuses(
        "deleted.export",
        &edited(&genuine, &fewer, &genuine.checkpoints),
        "record at position 4 says it is record 5",
    );

    // The last two records cut off, the header adjusted.
    refuses(
        "truncated.export",
        &edited(&genuine, &records[..n - 2], &genuine.checkpoints),
        &format!("records but the log holds only {}", n - 2),
    );

    // The file itself cut short, in the middle of its last item.
    let whole = fs::read(dir.join("log.export")).unwrap();
    fs::write(dir.join("cut.export"), &whole[..whole.len() - 10]).unwrap();
    let run = renkei(dir, &["audit", "verify", "--json", "cut.export"]);
    assert!(!run.ok);
    assert!(
        run.stderr.contains("not a renkei audit export") && run.stderr.contains("cut short"),
        "{}",
        run.stderr
    );
    fed.stop().await;
}
