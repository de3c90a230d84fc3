//! The benchmark's table for people: one section per phase that ran, from the JSON
//! report the phases filled (`--json` writes the same figures).

use serde_json::Value;

/// The node's group commits in a phase (histogram bucket bounds: figures from above).
fn commits_line(c: &Value) {
    if c.is_object() {
        emitln!(
            "    group commits            {} (p50 ≤ {} ms, p99 ≤ {} ms, {} over 25 ms)",
            c["count"],
            c["p50_ms_at_most"],
            c["p99_ms_at_most"],
            c["over_25_ms"]
        );
    }
}

/// The whole table, phase by phase.
pub(super) fn print_table(r: &Value) {
    let p = &r["parameters"];
    let m = &r["machine"];
    emitln!(
        "renkei bench — {} ({} cores), revision {}",
        m["cpu"].as_str().unwrap_or("?"),
        m["cores"],
        m["git_revision"].as_str().unwrap_or("?")
    );
    emitln!(
        "  {} publishers, {} subscribers (fan-out {}), {}-byte bodies, subscribers verify: {}",
        p["publishers"],
        p["subscribers"],
        p["fan_out"],
        p["body_bytes"],
        p["subscribers_verify"]
    );
    saturation_lines(&r["saturation"]);
    latency_lines(&r["latency"]);
    backlog_lines(&r["backlog"]);
    audit_lines(&r["audit"]);
    metrics_lines(&r["metrics"]);
    federation_lines(&r["federation"]);
    limit_lines(r);
    partners_lines(&r["partners"]);
    taxii_lines(&r["taxii"]);
    hostile_lines(&r["hostile"]);
    crash_lines(&r["crash"], "crash");
    crash_lines(&r["power"], "power");
    soak_lines(&r["soak"]);
}

/// The soak phase's lines: each minute's latency and each node's memory, then growth
/// after the first minute.
fn soak_lines(s: &Value) {
    if !s.is_object() {
        return;
    }
    emitln!(
        "  soak: bench-a -> bench-b -> bench-c at {}/s for {} minutes, {} subscribers anew each minute",
        s["rate"],
        s["minutes"],
        s["subscribers"]
    );
    let mib = |v: &Value| v.as_u64().unwrap_or(0) >> 20;
    for m in s["samples"].as_array().into_iter().flatten() {
        let nodes: Vec<String> = (0..3)
            .map(|i| {
                let n = &m["nodes"][i];
                format!(
                    "{} MiB {} fds {} MiB db ({} in values)",
                    mib(&n["rss_bytes"]),
                    n["open_files"],
                    mib(&n["database_bytes"]),
                    mib(&n["value_file_bytes"])
                )
            })
            .collect();
        emitln!(
            "    minute {:>3}  p50 {} ms p99 {} ms  {}",
            m["minute"],
            m["end_to_end_p50_ms"],
            m["end_to_end_p99_ms"],
            nodes.join(" | ")
        );
    }
    for (id, g) in s["growth_after_warm_up"].as_object().into_iter().flatten() {
        emitln!(
            "    {id}: RSS {} -> {} MiB, open files {} -> {}, database +{} MiB (value files +{}) for {} MiB of bulletins",
            mib(&g["rss_bytes"][0]),
            mib(&g["rss_bytes"][1]),
            g["open_files"][0],
            g["open_files"][1],
            mib(&g["database_growth_bytes"]),
            mib(&g["value_file_growth_bytes"]),
            mib(&g["bulletin_bytes_stored"])
        );
    }
}

/// The hostile phase's lines: the honest desk's latency and the node's memory per
/// attack.
fn hostile_lines(h: &Value) {
    if !h.is_object() {
        return;
    }
    emitln!(
        "  hostile partners: an honest desk's {} publishes, one at a time",
        h["honest_publishes"]
    );
    for attack in ["none", "padded", "holders", "flooder", "flooders"] {
        let a = &h[attack];
        if !a.is_object() {
            continue;
        }
        let ms = |k: &str| a[k].as_f64().unwrap_or(f64::NAN);
        emitln!(
            "    {attack:<9} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms ({:>5.1}× unloaded)  failed {}  node RSS peak {}, after {}",
            ms("p50_ms"),
            ms("p99_ms"),
            ms("max_ms"),
            a["p99_over_unloaded"].as_f64().unwrap_or(1.0),
            a["failed"],
            mib(&a["node_peak_rss_bytes"]),
            mib(&a["node_rss_after_bytes"])
        );
    }
}

/// A byte count in MiB.
fn mib(v: &Value) -> String {
    format!("{} MiB", v.as_u64().unwrap_or(0) >> 20)
}

/// The saturation phase's lines of the table.
fn saturation_lines(s: &Value) {
    if s.is_object() {
        emitln!("  saturation ({} bulletins)", s["accepted"]);
        emitln!(
            "    accepted                 {:>12} bulletins/s",
            s["accepted_per_s"]
        );
        emitln!(
            "    acked deliveries         {:>12} deliveries/s",
            s["acked_deliveries_per_s"]
        );
        emitln!(
            "    node peak RSS            {:>12}",
            mib(&s["node_peak_rss_bytes"])
        );
        emitln!(
            "    database on disk         {:>12}",
            mib(&s["database_bytes"])
        );
        emitln!(
            "    node CPU                 {:>12} µs per accepted bulletin ({:.2} cores; clients {:.2})",
            s["node_cpu_us_per_accepted"],
            s["node_cores_busy"].as_f64().unwrap_or(f64::NAN),
            s["clients_cores_busy"].as_f64().unwrap_or(f64::NAN)
        );
        commits_line(&s["commits"]);
    }
}

/// The latency phase's lines of the table.
fn latency_lines(l: &Value) {
    if l.is_object() {
        emitln!(
            "  latency at {}/s offered ({} deliveries)",
            l["offered_per_s"],
            l["deliveries_measured"]
        );
        emitln!(
            "    publish → delivery       p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
            l["p50_ms"],
            l["p99_ms"],
            l["p999_ms"],
            l["max_ms"]
        );
        emitln!(
            "    publish → ACCEPTED       p50 {} ms, p99 {} ms",
            l["accepted_p50_ms"],
            l["accepted_p99_ms"]
        );
        emitln!(
            "    node CPU                 {} µs per bulletin, from the first publish to the last delivery",
            l["node_cpu_us_per_bulletin"]
        );
        commits_line(&l["commits"]);
    }
}

/// The backlog phase's lines of the table.
fn backlog_lines(b: &Value) {
    if b.is_object() {
        emitln!("  backlog of {} for an offline partner", b["bulletins"]);
        emitln!(
            "    node peak RSS            {:>12} filled, {} after the drain",
            mib(&b["node_peak_rss_bytes_after_fill"]),
            mib(&b["node_peak_rss_bytes_after_drain"])
        );
        emitln!(
            "    drain                    {:>12} bulletins/s",
            b["drain_per_s"]
        );
        emitln!(
            "    database on disk         {:>12}",
            mib(&b["database_bytes"])
        );
    }
}

/// The audit phase's lines of the table.
fn audit_lines(au: &Value) {
    if au.is_object() {
        emitln!(
            "  audit log of {} records (through the store)",
            au["records"]
        );
        emitln!(
            "    append                   {:>12} records/s",
            au["append_records_per_s"]
        );
        emitln!(
            "    page of 100 by partner   {:>12} ms ({} records read)",
            au["query_page_100_by_partner_ms"],
            au["query_records_read"]
        );
        emitln!(
            "    verify                   {:>12} records/s",
            au["verify_records_per_s"]
        );
        emitln!("    reopen and check         {:>12} ms", au["reopen_ms"]);
    }
}

/// The metrics phase's lines of the table.
fn metrics_lines(m: &Value) {
    if m.is_object() {
        emitln!(
            "  metrics on a log of {} accepted bulletins over two fiscal years ({} counter rows, {} on disk)",
            m["records"],
            m["counter_rows"],
            mib(&m["database_bytes"])
        );
        emitln!(
            "    append                   {:>12} records/s",
            m["append_records_per_s"]
        );
        emitln!(
            "    fiscal-year report       {:>9.1} ms by country, {:.1} ms by partner",
            m["report_fiscal_year_by_country_ms"]
                .as_f64()
                .unwrap_or(f64::NAN),
            m["report_fiscal_year_by_partner_ms"]
                .as_f64()
                .unwrap_or(f64::NAN)
        );
        emitln!(
            "    recount from records     {:>9.1} s ({} records/s)",
            m["recount_from_records_s"].as_f64().unwrap_or(f64::NAN),
            m["recount_records_per_s"]
        );
    }
}

/// The TAXII phase's lines of the table.
fn taxii_lines(t: &Value) {
    if !t.is_object() {
        return;
    }
    emitln!(
        "  TAXII 2.1 gateway over HTTPS, {} STIX objects stored (first page, building the index: {:.0} ms)",
        t["stored"],
        t["first_page_ms"].as_f64().unwrap_or(f64::NAN)
    );
    emitln!(
        "    read, pages of 100       {:>12} objects/s ({} pages)",
        t["read_per_s_limit_100"],
        t["pages_limit_100"]
    );
    emitln!(
        "    read, pages of 1,000     {:>12} objects/s",
        t["read_per_s_limit_1000"]
    );
    emitln!(
        "    added, 1 per envelope    {:>12} objects/s",
        t["write_per_s_1_per_envelope"]
    );
    emitln!(
        "    added, 100 per envelope  {:>12} objects/s",
        t["write_per_s_100_per_envelope"]
    );
    let v = &t["versions"];
    if v.is_object() {
        let mib = |x: &Value| x.as_f64().unwrap_or(f64::NAN) / f64::from(1u32 << 20);
        emitln!(
            "    {} objects of {} versions each, after a reload: first page {:.0} ms, latest versions (one page) {:.0} ms",
            v["objects"],
            v["versions_each"],
            v["first_page_ms"].as_f64().unwrap_or(f64::NAN),
            v["latest_page_ms"].as_f64().unwrap_or(f64::NAN)
        );
        emitln!(
            "    read, every version      {:>12} objects/s ({} pages of 1,000)",
            v["read_all_versions_per_s"],
            v["pages_all_versions"]
        );
        emitln!(
            "    node RSS, index unbuilt / built {:.1} / {:.1} MiB",
            mib(&v["rss_before_index_bytes"]),
            mib(&v["rss_after_index_bytes"])
        );
    }
}

/// The many-partners phase's lines of the table.
fn partners_lines(p: &Value) {
    if !p.is_object() {
        return;
    }
    emitln!(
        "  {} partners at once, each publishing and receiving ({}/s offered in all)",
        p["partners"],
        p["offered_per_s"]
    );
    for (what, r) in [
        ("all reading", &p["all_reading"]),
        ("one stalled", &p["one_stalled"]),
    ] {
        emitln!(
            "    {what:<24} p50 {} ms, p99 {} ms, max {} ms over {} deliveries; node peak RSS {} MiB, {:.2} cores",
            r["p50_ms"],
            r["p99_ms"],
            r["max_ms"],
            r["deliveries_measured"],
            r["node_peak_rss_bytes"].as_u64().unwrap_or(0) >> 20,
            r["node_cores_busy"].as_f64().unwrap_or(f64::NAN)
        );
    }
}

/// The verify limit's lines of the table.
fn limit_lines(r: &Value) {
    let l = &r["limit"];
    if l.is_object() {
        emitln!("  limit: Ed25519 on this machine");
        emitln!(
            "    verify                   {:>12} /s on 1 core, {} /s on all",
            l["verify_per_s_1core"],
            l["verify_per_s_all_cores"]
        );
        emitln!(
            "    verify_batch (64)        {:>12} /s on 1 core, {} /s on all",
            l["verify_batch_per_s_1core"],
            l["verify_batch_per_s_all_cores"]
        );
        if let Some(ratio) = r["accepted_per_s_over_verify_batch_all_cores"].as_f64() {
            emitln!("    accepted/s ÷ verify_batch/s on all cores = {ratio:.2}");
        }
    }
}

/// The crash loop's lines; the last says what was run and checked.
fn crash_lines(c: &Value, phase: &str) {
    if !c.is_object() {
        return;
    }
    if phase == "power" {
        emitln!("  power cuts: SIGKILL under load, then what was not fsynced dropped, torn or reordered (lazyfs); restart on what survived");
        let cuts = &c["cuts"];
        emitln!(
            "    cuts that lost writes    {:>12} of {} ({} writes dropped and {} torn, {} bytes not fsynced lost)",
            cuts["cuts_that_dropped_writes"],
            cuts["cuts"],
            cuts["writes_dropped"],
            cuts["writes_torn"],
            cuts["bytes_dropped"]
        );
    } else {
        emitln!(
            "  crash loop: SIGKILL under load at a random moment, restart on the same database"
        );
    }
    emitln!(
        "    restart to listening     p50 {:.0} ms, max {:.0} ms",
        c["restart_ms_p50"].as_f64().unwrap_or(f64::NAN),
        c["restart_ms_max"].as_f64().unwrap_or(f64::NAN)
    );
    emitln!(
        "    redelivered after a kill {:>12} (each subscriber dedupes by id)",
        c["redelivered"]
    );
    emitln!(
        "{phase}: PASSED {} cycles, {} kills, {} bulletins accepted of {} sent, each stored, recorded and delivered to all {} subscribers; {} checkpoints verified against the final log of {} records ({} sizes, one root each), no gap, its counters equal to a recount; {:.0} s",
        c["cycles"],
        c["kills"],
        c["accepted"],
        c["sent"],
        c["subscribers"],
        c["checkpoints_checked"],
        c["records"],
        c["checkpoint_sizes"],
        c["seconds"].as_f64().unwrap_or(f64::NAN)
    );
}

/// The federation phase's lines of the table.
fn federation_lines(f: &Value) {
    if !f.is_object() {
        return;
    }
    emitln!(
        "  federation: bench-a -> bench-b -> bench-c, each its own process ({} bulletins)",
        f["bulletins"]
    );
    emitln!(
        "    accepted at the first    {:>12} bulletins/s",
        f["accepted_per_s_first_node"]
    );
    emitln!(
        "    delivered at the last    {:>12} bulletins/s",
        f["delivered_per_s_last_node"]
    );
    let cpu = &f["node_cpu_us_per_bulletin"];
    emitln!(
        "    node CPU per bulletin    a {} µs, b {} µs, c {} µs",
        cpu["bench-a"],
        cpu["bench-b"],
        cpu["bench-c"]
    );
    emitln!(
        "    first -> last at {}/s    p50 {} ms, p99 {} ms, max {} ms ({} deliveries)",
        f["paced_per_s"],
        f["end_to_end_p50_ms"],
        f["end_to_end_p99_ms"],
        f["end_to_end_max_ms"],
        f["deliveries_measured"]
    );
}
