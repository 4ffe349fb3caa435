//! Shards: N processes (a Kubernetes Indexed Job's pods, say) share one job, each running every
//! N-th split of every flow's plan. There is no coordinator: the plan and each split's progress are
//! kept in the target (see [`crate::progress::target`]), where every shard reads them.

use std::fmt;

use crate::error::RunError;
use crate::spec::Spec;

/// This process's share: splits at plan positions `index`, `index + count`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole job in one process.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// `I/N`, as `--shard` takes it.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("`{text}` is not a shard: give I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<u32>().map_err(|_| bad())?,
            n.trim().parse::<u32>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The shard of this process: `--shard`, else Kubernetes' `JOB_COMPLETION_INDEX` with the
    /// spec's `shards` or `ETLHOST_SHARDS`, else the whole job.
    pub fn resolve(
        flag: Option<Shard>,
        spec: &Spec,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Shard, RunError> {
        let from_spec = spec.job.shards;
        let from_env =
            match env("ETLHOST_SHARDS") {
                None => None,
                Some(v) => Some(v.trim().parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(
                    || {
                        RunError::Start(format!(
                            "ETLHOST_SHARDS is `{v}`: it must be a number of shards, at least 1"
                        ))
                    },
                )?),
            };
        let count = match (from_spec, from_env) {
            (Some(s), Some(e)) if s != e => {
                return Err(RunError::Config(spec.error(
                    "shards",
                    format!("is {s}, but ETLHOST_SHARDS is {e}: set one of them"),
                )))
            }
            (s, e) => s.or(e),
        };
        if let Some(shard) = flag {
            return match count {
                Some(n) if n != shard.count => Err(RunError::Config(spec.error(
                    "shards",
                    format!("is {n}, but --shard {shard} names {} shards", shard.count),
                ))),
                _ => Ok(shard),
            };
        }
        let Some(index) = env("JOB_COMPLETION_INDEX") else {
            return match count {
                Some(n) if n > 1 => Err(RunError::Start(format!(
                    "the job is split into {n} shards: say which one this process runs with --shard I/{n} (or Kubernetes' JOB_COMPLETION_INDEX)"
                ))),
                _ => Ok(Shard::ALL),
            };
        };
        let Some(count) = count else {
            return Err(RunError::Start(format!(
                "JOB_COMPLETION_INDEX is {index}, but the number of shards is not known: set `shards` in the spec or ETLHOST_SHARDS"
            )));
        };
        let index = index
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|i| *i < count)
            .ok_or_else(|| {
                RunError::Start(format!(
                    "JOB_COMPLETION_INDEX is `{index}`: it must be a shard index below {count}"
                ))
            })?;
        Ok(Shard { index, count })
    }

    pub fn is_sharded(&self) -> bool {
        self.count > 1
    }

    /// Whether the split at `position` in the plan is this shard's.
    pub fn owns(&self, position: usize) -> bool {
        position as u64 % u64::from(self.count) == u64::from(self.index)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(shards: &str) -> Spec {
        let dir = std::env::temp_dir().join(format!("etlhost-shard-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("s{}.yaml", shards.len()));
        let text =
            format!("name: j\n{shards}source: {{plugin: mysql}}\nsink: {{plugin: console}}\n");
        std::fs::write(&path, text).unwrap();
        Spec::load_with_env(&path, &|_| None).unwrap()
    }

    fn resolve(flag: Option<&str>, spec: &Spec, env: &[(&str, &str)]) -> Result<Shard, String> {
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        Shard::resolve(flag.map(|f| Shard::parse(f).unwrap()), spec, &lookup)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_shard_comes_from_the_flag_or_kubernetes_index() {
        let plain = spec("");
        let four = spec("shards: 4\n");
        assert_eq!(resolve(None, &plain, &[]), Ok(Shard::ALL));
        assert_eq!(
            resolve(Some("2/4"), &four, &[]),
            Ok(Shard { index: 2, count: 4 })
        );
        let k8s = [("JOB_COMPLETION_INDEX", "3")];
        assert_eq!(resolve(None, &four, &k8s), Ok(Shard { index: 3, count: 4 }));
        let from_env = [("JOB_COMPLETION_INDEX", "1"), ("ETLHOST_SHARDS", "2")];
        assert_eq!(
            resolve(None, &plain, &from_env),
            Ok(Shard { index: 1, count: 2 })
        );
        assert_eq!(
            resolve(None, &plain, &k8s),
            Err("JOB_COMPLETION_INDEX is 3, but the number of shards is not known: set `shards` in the spec or ETLHOST_SHARDS".into())
        );
        assert_eq!(
            resolve(None, &four, &[("JOB_COMPLETION_INDEX", "4")]),
            Err("JOB_COMPLETION_INDEX is `4`: it must be a shard index below 4".into())
        );
        assert_eq!(
            resolve(None, &four, &[]),
            Err("the job is split into 4 shards: say which one this process runs with --shard I/4 (or Kubernetes' JOB_COMPLETION_INDEX)".into())
        );
        assert!(resolve(Some("1/2"), &four, &[])
            .unwrap_err()
            .ends_with("shards: is 4, but --shard 1/2 names 2 shards"));
        assert!(resolve(
            None,
            &four,
            &[("ETLHOST_SHARDS", "3"), ("JOB_COMPLETION_INDEX", "0")]
        )
        .unwrap_err()
        .ends_with("shards: is 4, but ETLHOST_SHARDS is 3: set one of them"));
    }

    #[test]
    fn shards_parse_and_share_the_splits() {
        let s = Shard::parse("1/3").unwrap();
        assert_eq!(s, Shard { index: 1, count: 3 });
        let mine: Vec<usize> = (0..8).filter(|p| s.owns(*p)).collect();
        assert_eq!(mine, [1, 4, 7]);
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert_eq!(
                Shard::parse(bad).unwrap_err(),
                format!("`{bad}` is not a shard: give I/N with 0 <= I < N, e.g. 0/4")
            );
        }
    }
}
