//! `--witness KEY` and `--min-witnesses N` of `audit verify` and `audit checkpoint`:
//! which of a log's checkpoints carry valid cosignatures of the witnesses an auditor
//! trusts (C2SP tlog-cosignature), and the newest with enough of them.

use anyhow::bail;

use crate::audit::checkpoint::{self, log_origin};
use crate::audit::witness::{self, WitnessKey};

/// The witnesses an auditor trusts, and how many must have cosigned.
pub(in crate::cli) struct Witnesses {
    keys: Vec<WitnessKey>,
    min: usize,
}

impl Witnesses {
    /// From `--witness` values and `--min-witnesses` (default: 1 when any is given).
    pub(in crate::cli) fn parse(keys: &[String], min: Option<usize>) -> anyhow::Result<Witnesses> {
        let keys = keys
            .iter()
            .map(|k| WitnessKey::parse(k))
            .collect::<Result<Vec<_>, _>>()?;
        let min = min.unwrap_or(usize::from(!keys.is_empty()));
        if min > keys.len() {
            bail!(
                "--min-witnesses {min} needs at least that many --witness keys ({} given)",
                keys.len()
            );
        }
        Ok(Witnesses { keys, min })
    }

    /// Whether any witness is asked for.
    pub(in crate::cli) fn asked(&self) -> bool {
        self.min > 0
    }

    /// The witnesses whose cosignature on `note` (a checkpoint of `node`'s log signed
    /// with `key`) verifies.
    fn cosigned(&self, note: &str, node: &str, key: &ed25519_dalek::VerifyingKey) -> Vec<String> {
        let origin = log_origin(node);
        self.keys
            .iter()
            .filter(|w| witness::verify_cosignature(note, (&origin, key), w).is_ok())
            .map(|w| w.name.clone())
            .collect()
    }

    /// The newest of `notes` (checkpoints of `node`'s log, each already verified as
    /// signed with `key`) cosigned by at least the minimum of witnesses: its size, its
    /// text, and who cosigned it; an error naming the best found otherwise.
    pub(in crate::cli) fn newest<'a>(
        &self,
        notes: &'a [String],
        node: &str,
        key: &ed25519_dalek::VerifyingKey,
    ) -> anyhow::Result<Witnessed<'a>> {
        let mut best = 0;
        for note in notes.iter().rev() {
            let by = self.cosigned(note, node, key);
            best = best.max(by.len());
            if by.len() >= self.min {
                let size = checkpoint::stated(note)?.size;
                return Ok(Witnessed { size, note, by });
            }
        }
        bail!(
            "no checkpoint of {node}'s log carries {} valid cosignature(s) of the witnesses given (at most {best} found)",
            self.min
        )
    }
}

/// A checkpoint with enough cosignatures.
pub(in crate::cli) struct Witnessed<'a> {
    /// Records it covers.
    pub size: u64,
    /// The checkpoint with its cosignatures.
    pub note: &'a str,
    /// The witnesses that cosigned it.
    pub by: Vec<String>,
}
