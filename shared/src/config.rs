//! Configuration: one typed struct, read once per container from the environment.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `DATABASE_URL` | Postgres connection string | required, unless `DB_IAM_AUTH=true` |
//! | `DB_IAM_AUTH` | `true`: connect to RDS Proxy over TLS with IAM tokens, from `DB_HOST`, `DB_PORT` (5432), `DB_NAME`, `DB_USER` | `false` |
//! | `DB_MAX_CONNECTIONS` | pool size per container | 5 |
//! | `DB_ACQUIRE_TIMEOUT_MS` | wait for a connection before answering 503 | 3000 |
//! | `QUOTES_QUEUE_URL` | the quotes queue (`generate`) | none |
//! | `QUEUE_IDS_PER_MESSAGE` | quote ids per SQS message, 1..=1000 | 100 |
//! | `ML_ENGINE_URL` | base URL of the ML engine (`score` only) | none |
//! | `SCORING_MODE` | `engine` (call the ML engine) or `embedded` (evaluate the model in process) | `engine` where `ML_ENGINE_URL` is set, else `embedded` |
//! | `MODEL_DIR` | the model's directory in embedded mode | `model/` beside the executable |
//! | `ML_CHUNK_SIZE` | quotes per engine request | 250 |
//! | `ML_CONCURRENCY` | engine requests in flight per invocation | 4 |
//! | `ML_TIMEOUT_MS` | one engine request's timeout | 5000 |
//! | `RECONCILE_MIN_AGE_SECS` | time since a pending quote's last enqueue before reconcile sends it again | 300 |
//! | `RECONCILE_MAX_ATTEMPTS` | enqueues after which reconcile fails a quote still pending | 5 |
//! | `RECONCILE_BATCH_SIZE` | the most quotes one reconcile run touches | 1000 |
//! | `IDEMPOTENCY_TTL_SECS` | how long an `Idempotency-Key`'s answer is kept | 86400 |
//! | `AWS_REGION`, `AWS_ENDPOINT_URL_SQS` | the standard AWS SDK settings | SDK's |

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::iam_auth::IamDatabase;
use crate::store::ReconcilePolicy;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("configuration: {variable} {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// The connection string; with IAM authentication, one without a password.
    pub url: String,
    /// Connect to RDS Proxy with IAM tokens (`DB_IAM_AUTH=true`) rather than `DATABASE_URL`.
    pub iam: Option<IamDatabase>,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// Required by the functions that enqueue.
    pub url: Option<String>,
    pub ids_per_message: usize,
}

/// Where `score` gets its predictions.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoringMode {
    /// From the ML engine at `ML_ENGINE_URL`.
    Engine,
    /// From the model evaluated in process, read from this directory.
    Embedded { model_dir: PathBuf },
}

#[derive(Debug, Clone, PartialEq)]
pub struct MlEngineConfig {
    pub url: Option<String>,
    pub chunk_size: usize,
    pub concurrency: usize,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub database: DatabaseConfig,
    pub queue: QueueConfig,
    pub ml_engine: MlEngineConfig,
    pub scoring: ScoringMode,
    pub reconcile: ReconcilePolicy,
    /// How long an idempotency key's answer is kept.
    pub idempotency_ttl: Duration,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration from any source of variables, such as a test's map.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |variable: &'static str| {
            get(variable).filter(|v| !v.is_empty()).ok_or(ConfigError {
                variable,
                problem: "is required".into(),
            })
        };
        let number = |variable: &'static str, default: u64, min: u64, max: u64| {
            let Some(text) = get(variable).filter(|v| !v.is_empty()) else {
                return Ok(default);
            };
            match u64::from_str(text.trim()) {
                Ok(v) if (min..=max).contains(&v) => Ok(v),
                _ => Err(ConfigError {
                    variable,
                    problem: format!("must be a whole number from {min} to {max}, not {text:?}"),
                }),
            }
        };
        let iam = match get("DB_IAM_AUTH").as_deref().map(str::trim) {
            None | Some("") | Some("false") => None,
            Some("true") => Some(IamDatabase {
                host: required("DB_HOST")?,
                port: number("DB_PORT", 5432, 1, 65_535)? as u16,
                name: required("DB_NAME")?,
                user: required("DB_USER")?,
                region: required("AWS_REGION")?,
            }),
            Some(other) => {
                return Err(ConfigError {
                    variable: "DB_IAM_AUTH",
                    problem: format!("must be true or false, not {other:?}"),
                });
            }
        };
        let ml_engine_url = get("ML_ENGINE_URL").filter(|v| !v.is_empty());
        let scoring = match get("SCORING_MODE").as_deref().map(str::trim) {
            Some("engine") => ScoringMode::Engine,
            None | Some("") if ml_engine_url.is_some() => ScoringMode::Engine,
            None | Some("") | Some("embedded") => ScoringMode::Embedded {
                model_dir: get("MODEL_DIR")
                    .filter(|v| !v.is_empty())
                    .map_or_else(default_model_dir, PathBuf::from),
            },
            Some(other) => {
                return Err(ConfigError {
                    variable: "SCORING_MODE",
                    problem: format!("must be engine or embedded, not {other:?}"),
                });
            }
        };
        Ok(Config {
            scoring,
            database: DatabaseConfig {
                url: match &iam {
                    Some(db) => {
                        format!("postgres://{}@{}:{}/{}", db.user, db.host, db.port, db.name)
                    }
                    None => required("DATABASE_URL")?,
                },
                iam,
                max_connections: number("DB_MAX_CONNECTIONS", 5, 1, 100)? as u32,
                acquire_timeout_ms: number("DB_ACQUIRE_TIMEOUT_MS", 3000, 1, 60_000)?,
            },
            queue: QueueConfig {
                url: get("QUOTES_QUEUE_URL").filter(|v| !v.is_empty()),
                ids_per_message: number("QUEUE_IDS_PER_MESSAGE", 100, 1, 1000)? as usize,
            },
            ml_engine: MlEngineConfig {
                url: ml_engine_url,
                chunk_size: number("ML_CHUNK_SIZE", 250, 1, 1000)? as usize,
                concurrency: number("ML_CONCURRENCY", 4, 1, 64)? as usize,
                timeout_ms: number("ML_TIMEOUT_MS", 5000, 1, 900_000)?,
            },
            reconcile: ReconcilePolicy {
                min_age: Duration::from_secs(number("RECONCILE_MIN_AGE_SECS", 300, 1, 86_400)?),
                max_attempts: number("RECONCILE_MAX_ATTEMPTS", 5, 1, 100)? as i32,
                limit: number("RECONCILE_BATCH_SIZE", 1000, 1, 10_000)? as i64,
            },
            idempotency_ttl: Duration::from_secs(number(
                "IDEMPOTENCY_TTL_SECS",
                86_400,
                60,
                604_800,
            )?),
        })
    }
}

/// `model/` beside the executable: where the packaging puts the model in the `score` zip.
fn default_model_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("model")))
        .unwrap_or_else(|| PathBuf::from("model"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_apply_and_required_variables_are_named() {
        let config = Config::from_lookup(lookup(&[("DATABASE_URL", "postgres://x")])).unwrap();
        assert_eq!(config.queue.ids_per_message, 100);
        assert_eq!(config.queue.url, None);
        assert_eq!(config.ml_engine.url, None);
        let err = Config::from_lookup(lookup(&[("QUOTES_QUEUE_URL", "http://q")])).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
    }

    #[test]
    fn the_scoring_mode_follows_the_engine_url_unless_set() {
        let engine = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "x"),
            ("ML_ENGINE_URL", "http://e"),
        ]))
        .unwrap();
        assert_eq!(engine.scoring, ScoringMode::Engine);
        let embedded = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "x"),
            ("ML_ENGINE_URL", "http://e"),
            ("SCORING_MODE", "embedded"),
            ("MODEL_DIR", "/opt/model"),
        ]))
        .unwrap();
        assert_eq!(
            embedded.scoring,
            ScoringMode::Embedded {
                model_dir: "/opt/model".into()
            }
        );
        let bad = Config::from_lookup(lookup(&[("DATABASE_URL", "x"), ("SCORING_MODE", "magic")]));
        assert_eq!(bad.unwrap_err().variable, "SCORING_MODE");
    }

    #[test]
    fn iam_authentication_needs_no_password() {
        let config = Config::from_lookup(lookup(&[
            ("DB_IAM_AUTH", "true"),
            ("DB_HOST", "proxy.example.com"),
            ("DB_NAME", "quotes"),
            ("DB_USER", "quotes_app"),
            ("AWS_REGION", "eu-west-1"),
        ]))
        .unwrap();
        let iam = config.database.iam.unwrap();
        assert_eq!((iam.port, iam.region.as_str()), (5432, "eu-west-1"));
        assert_eq!(
            config.database.url,
            "postgres://quotes_app@proxy.example.com:5432/quotes"
        );
        let missing = Config::from_lookup(lookup(&[("DB_IAM_AUTH", "true"), ("DB_HOST", "h")]));
        assert_eq!(missing.unwrap_err().variable, "DB_NAME");
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        let err = Config::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("QUOTES_QUEUE_URL", "http://q"),
            ("QUEUE_IDS_PER_MESSAGE", "5000"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "QUEUE_IDS_PER_MESSAGE");
    }
}
