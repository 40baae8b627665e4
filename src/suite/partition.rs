//! Sharing one suite among the n jobs of a CI matrix, as cargo-nextest's
//! `--partition` does: `count:i/n` takes every n-th scenario file from the
//! i-th, `hash:i/n` those whose name hashes to i (stable as files are added
//! or removed). Every file lands in exactly one partition, so the jobs'
//! JUnit files, a test suite per drill, merge without overlap.

use crate::error::{Error, Result};
use std::path::PathBuf;

/// Which share of the scenario files this job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition {
    /// Files k (in sorted order, from 0) with k mod n = i − 1.
    Count {
        /// This job's share, from 1.
        i: u32,
        /// How many shares.
        n: u32,
    },
    /// Files whose name's FNV-1a hash mod n = i − 1.
    Hash {
        /// This job's share, from 1.
        i: u32,
        /// How many shares.
        n: u32,
    },
}

impl std::str::FromStr for Partition {
    type Err = Error;

    /// `count:1/3` or `hash:2/4`.
    fn from_str(s: &str) -> Result<Partition> {
        let bad = || {
            Error::Invalid(format!(
                "partition `{s}`: write it as count:I/N or hash:I/N, with 1 ≤ I ≤ N"
            ))
        };
        let (kind, share) = s.split_once(':').ok_or_else(bad)?;
        let (i, n) = share.split_once('/').ok_or_else(bad)?;
        let (i, n): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if i == 0 || i > n {
            return Err(bad());
        }
        match kind.trim() {
            "count" => Ok(Partition::Count { i, n }),
            "hash" => Ok(Partition::Hash { i, n }),
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Partition::Count { i, n } => write!(f, "count:{i}/{n}"),
            Partition::Hash { i, n } => write!(f, "hash:{i}/{n}"),
        }
    }
}

/// FNV-1a, 64 bits: the same on every machine and every run (the standard
/// library's hasher is seeded per process).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Partition {
    /// This job's files, in the order given (sorted for `count`).
    pub fn select(&self, files: &[PathBuf]) -> Vec<PathBuf> {
        match *self {
            Partition::Count { i, n } => {
                let mut sorted = files.to_vec();
                sorted.sort();
                sorted
                    .into_iter()
                    .enumerate()
                    .filter(|(k, _)| *k as u64 % u64::from(n) == u64::from(i - 1))
                    .map(|(_, f)| f)
                    .collect()
            }
            Partition::Hash { i, n } => files
                .iter()
                .filter(|f| {
                    // The file's name, not its path: the same in every checkout.
                    let name = f.file_name().map(|x| x.to_string_lossy().into_owned());
                    fnv1a(name.unwrap_or_default().as_bytes()) % u64::from(n) == u64::from(i - 1)
                })
                .cloned()
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_lands_in_exactly_one_partition() {
        let files: Vec<PathBuf> = (0..23)
            .map(|k| PathBuf::from(format!("scenarios/s{k:02}.yaml")))
            .collect();
        for kind in ["count", "hash"] {
            for n in 1..=5 {
                let mut seen: Vec<PathBuf> = (1..=n)
                    .flat_map(|i| {
                        let p: Partition = format!("{kind}:{i}/{n}").parse().unwrap();
                        assert_eq!(p.to_string(), format!("{kind}:{i}/{n}"));
                        p.select(&files)
                    })
                    .collect();
                seen.sort();
                assert_eq!(seen, files, "{kind} over {n}");
            }
        }
        let p: Partition = "count:2/3".parse().unwrap();
        assert_eq!(p.select(&files).len(), 8);
        // A file's share does not depend on the others.
        let h: Partition = "hash:1/2".parse().unwrap();
        let mine = h.select(&files);
        let fewer: Vec<PathBuf> = files[..10].to_vec();
        for f in h.select(&fewer) {
            assert!(mine.contains(&f));
        }
        for bad in ["hash:0/2", "hash:3/2", "count:1", "slice:1/2", "hash:a/b"] {
            assert!(bad.parse::<Partition>().is_err(), "{bad}");
        }
    }
}
