//! `renkei audit …`: each subcommand's arguments handed to what runs it.

use crate::cli::commands::{AuditCommand, Format, LogSource};
use crate::cli::{audit, block_on};

/// Runs one `renkei audit` subcommand.
pub(in crate::cli) fn run_audit(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Query {
            source: s,
            partner,
            bulletin,
            event,
            since,
            until,
            after,
            limit,
            format,
        } => {
            let args = audit::QueryArgs {
                partner,
                bulletin,
                event,
                since,
                until,
                after,
                limit,
                json: format == Format::Json,
            };
            block_on(audit::query(source(&s)?, args))
        }
        AuditCommand::Export { source: s, out } => block_on(audit::export(source(&s)?, &out)),
        AuditCommand::Verify {
            file,
            data_dir,
            key,
            trusted_checkpoint,
            self_signed_ok,
            witnesses,
            min_witnesses,
            json,
        } => audit::verify(
            audit::Witnesses::parse(&witnesses, min_witnesses)?,
            audit::VerifyArgs {
                file: file.as_deref(),
                data_dir: data_dir.as_deref(),
                key: key.as_deref(),
                trusted: trusted_checkpoint.as_deref(),
                self_signed_ok,
            },
            json,
        ),
        AuditCommand::Recount {
            file,
            key,
            trusted_checkpoint,
            self_signed_ok,
            fiscal_year,
            fiscal_year_start,
            by,
            size,
            format,
        } => audit::recount(audit::RecountArgs {
            verify: audit::VerifyArgs {
                file: Some(&file),
                data_dir: None,
                key: key.as_deref(),
                trusted: trusted_checkpoint.as_deref(),
                self_signed_ok,
            },
            request: crate::proto::MetricsRequest {
                fiscal_year: fiscal_year.unwrap_or(0),
                view: by.view() as i32,
                ..Default::default()
            },
            fiscal_start: fiscal_year_start,
            size,
            format,
        }),
        other => run_proofs(other),
    }
}

fn source(s: &LogSource) -> anyhow::Result<audit::Source<'_>> {
    audit::Source::new(s.config.as_deref(), s.data_dir.as_deref())
}

/// The subcommands that prove and sign: proofs, checkpoints, key rotation, receipts.
fn run_proofs(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Prove { source: s, seq } => block_on(audit::prove(source(&s)?, seq)),
        AuditCommand::Checkpoint {
            source: s,
            witnesses,
            min_witnesses,
        } => {
            let witnesses = audit::Witnesses::parse(&witnesses, min_witnesses)?;
            block_on(audit::checkpoint(source(&s)?, &witnesses))
        }
        AuditCommand::RotateKey {
            data_dir,
            old_key,
            new_key,
        } => audit::rotate_key(&data_dir, &old_key, &new_key),
        AuditCommand::Receipts {
            config,
            data_dir,
            bulletin,
            verify,
            out,
            keys,
            keys_from,
            format,
        } => {
            let log = match (&config, &data_dir) {
                (None, None) => None,
                _ => Some(audit::Source::new(config.as_deref(), data_dir.as_deref())?),
            };
            let args = audit::ReceiptsArgs {
                bulletin,
                verify: verify.as_deref(),
                out,
                keys,
                keys_from: keys_from.as_deref(),
                json: format == Format::Json,
            };
            block_on(audit::receipts(log, args))
        }
        other => unreachable!("{other:?} is run by run_audit"),
    }
}
