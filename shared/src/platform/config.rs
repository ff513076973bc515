//! Configuration: one struct per function, read once per container from the environment. A
//! variable a function needs and does not have, or one out of its range, stops the container
//! at start-up with an error that names it, rather than failing a request later.
//!
//! Each variable, the functions that read it and its default: the README's "Configuration".

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::budget;
use crate::iam_auth::IamDatabase;
pub use crate::ml_engine::{MlEngineAuth, MlEngineConfig};
pub use crate::queue::QueueConfig;
pub use crate::store::DatabaseConfig;
use quote_domain::ports::ReconcilePolicy;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("configuration: {variable} {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

/// A function's configuration, read from the environment or, in tests, from any lookup.
pub trait FromEnv: Sized {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError>;

    fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read(&Env(&get))
    }
}

/// The variables, read with their defaults and bounds; an empty value counts as unset.
pub struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn optional(&self, variable: &str) -> Option<String> {
        (self.0)(variable).filter(|v| !v.trim().is_empty())
    }

    fn required(&self, variable: &'static str) -> Result<String, ConfigError> {
        self.optional(variable).ok_or(ConfigError {
            variable,
            problem: "is required".into(),
        })
    }

    fn number(
        &self,
        variable: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let Some(text) = self.optional(variable) else {
            return Ok(default);
        };
        match u64::from_str(text.trim()) {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(ConfigError {
                variable,
                problem: format!("must be a whole number from {min} to {max}, not {text:?}"),
            }),
        }
    }
}

impl FromEnv for DatabaseConfig {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let iam = match env.optional("DB_IAM_AUTH").as_deref().map(str::trim) {
            None | Some("false") => None,
            Some("true") => Some(IamDatabase {
                host: env.required("DB_HOST")?,
                port: env.number("DB_PORT", 5432, 1, 65_535)? as u16,
                name: env.required("DB_NAME")?,
                user: env.required("DB_USER")?,
                region: env.required("AWS_REGION")?,
            }),
            Some(other) => {
                return Err(ConfigError {
                    variable: "DB_IAM_AUTH",
                    problem: format!("must be true or false, not {other:?}"),
                });
            }
        };
        Ok(DatabaseConfig {
            url: match &iam {
                Some(db) => format!("postgres://{}@{}:{}/{}", db.user, db.host, db.port, db.name),
                None => env.required("DATABASE_URL")?,
            },
            iam,
            max_connections: env.number("DB_MAX_CONNECTIONS", 5, 1, 100)? as u32,
            acquire_timeout_ms: env.number(
                "DB_ACQUIRE_TIMEOUT_MS",
                budget::DB_ACQUIRE.as_millis() as u64,
                1,
                60_000,
            )?,
        })
    }
}

impl FromEnv for QueueConfig {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(QueueConfig {
            url: env.required("QUOTES_QUEUE_URL")?,
            ids_per_message: env.number("QUEUE_IDS_PER_MESSAGE", 100, 1, 1000)? as usize,
        })
    }
}

/// Where `score` gets its predictions.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoringMode {
    /// From the ML engine.
    Engine(MlEngineConfig),
    /// From the model evaluated in process, read from this directory.
    Embedded { model_dir: PathBuf },
}

impl FromEnv for ScoringMode {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        let engine = |url| {
            Ok(ScoringMode::Engine(MlEngineConfig {
                url,
                chunk_size: env.number("ML_CHUNK_SIZE", 250, 1, 1000)? as usize,
                concurrency: env.number("ML_CONCURRENCY", 4, 1, 64)? as usize,
                timeout_ms: env.number("ML_TIMEOUT_MS", 5000, 1, 900_000)?,
                auth: MlEngineAuth::read(env)?,
            }))
        };
        match env.optional("SCORING_MODE").as_deref().map(str::trim) {
            Some("engine") => engine(env.required("ML_ENGINE_URL")?),
            None => match env.optional("ML_ENGINE_URL") {
                Some(url) => engine(url),
                None => Ok(Self::embedded(env)),
            },
            Some("embedded") => Ok(Self::embedded(env)),
            Some(other) => Err(ConfigError {
                variable: "SCORING_MODE",
                problem: format!("must be engine or embedded, not {other:?}"),
            }),
        }
    }
}

impl FromEnv for MlEngineAuth {
    /// `ML_ENGINE_AUTH`: `none` (the default) or `iam`, for an engine behind a Lambda function
    /// URL with the `AWS_IAM` auth type, in `ML_ENGINE_REGION` (default: the function's own).
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        match env.optional("ML_ENGINE_AUTH").as_deref().map(str::trim) {
            None | Some("none") => Ok(MlEngineAuth::None),
            Some("iam") => Ok(MlEngineAuth::Iam {
                region: match env.optional("ML_ENGINE_REGION") {
                    Some(region) => region,
                    None => env.required("AWS_REGION")?,
                },
            }),
            Some(other) => Err(ConfigError {
                variable: "ML_ENGINE_AUTH",
                problem: format!("must be none or iam, not {other:?}"),
            }),
        }
    }
}

impl ScoringMode {
    fn embedded(env: &Env<'_>) -> Self {
        ScoringMode::Embedded {
            model_dir: env
                .optional("MODEL_DIR")
                .map_or_else(default_model_dir, PathBuf::from),
        }
    }
}

/// `generate`: the database, the queue, how long idempotency keys are kept, and the model
/// that explains prices.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateConfig {
    pub database: DatabaseConfig,
    pub queue: QueueConfig,
    pub idempotency_ttl: Duration,
    /// `MODEL_DIR`, as for embedded scoring: read on the first explanation, not at init.
    pub model_dir: PathBuf,
}

impl FromEnv for GenerateConfig {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(GenerateConfig {
            database: DatabaseConfig::read(env)?,
            queue: QueueConfig::read(env)?,
            idempotency_ttl: Duration::from_secs(env.number(
                "IDEMPOTENCY_TTL_SECS",
                86_400,
                60,
                604_800,
            )?),
            model_dir: env
                .optional("MODEL_DIR")
                .map_or_else(default_model_dir, PathBuf::from),
        })
    }
}

/// `score`: the database, where predictions come from, how long a price holds, and the bus of
/// batch events.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreConfig {
    pub database: DatabaseConfig,
    pub scoring: ScoringMode,
    pub price_validity: Duration,
    /// The EventBridge bus (name or ARN) of `QuoteBatchCompleted` (`EVENT_BUS_NAME`).
    pub event_bus: String,
    /// `SHADOW_MODEL_DIR`: a second model, in `MODEL_DIR`'s format, whose prices are recorded
    /// beside the live ones and never shown; unset, none.
    pub shadow_model_dir: Option<PathBuf>,
}

impl FromEnv for ScoreConfig {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(ScoreConfig {
            database: DatabaseConfig::read(env)?,
            scoring: ScoringMode::read(env)?,
            price_validity: Duration::from_secs(
                env.number("PRICE_VALIDITY_DAYS", 30, 1, 365)? * 86_400,
            ),
            event_bus: env.required("EVENT_BUS_NAME")?,
            shadow_model_dir: env.optional("SHADOW_MODEL_DIR").map(PathBuf::from),
        })
    }
}

/// `reconcile`: the database, the queue, the bus of batch events (their retries), when a
/// pending quote counts as stuck, and how long shadow prices are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconcileConfig {
    pub database: DatabaseConfig,
    pub queue: QueueConfig,
    pub event_bus: String,
    pub policy: ReconcilePolicy,
}

impl FromEnv for ReconcileConfig {
    fn read(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(ReconcileConfig {
            database: DatabaseConfig::read(env)?,
            queue: QueueConfig::read(env)?,
            event_bus: env.required("EVENT_BUS_NAME")?,
            policy: ReconcilePolicy {
                min_age: Duration::from_secs(env.number(
                    "RECONCILE_MIN_AGE_SECS",
                    300,
                    1,
                    86_400,
                )?),
                max_attempts: env.number("RECONCILE_MAX_ATTEMPTS", 5, 1, 100)? as i32,
                limit: env.number("RECONCILE_BATCH_SIZE", 1000, 1, 10_000)? as i64,
                shadow_retention: Duration::from_secs(
                    env.number("SHADOW_RETENTION_DAYS", 30, 1, 3650)? * 86_400,
                ),
            },
        })
    }
}

/// `model/` beside the executable, when `MODEL_DIR` does not say where the model is.
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
        let config = GenerateConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("QUOTES_QUEUE_URL", "http://q"),
        ]))
        .unwrap();
        assert_eq!(config.queue.ids_per_message, 100);
        assert_eq!(config.queue.url, "http://q");
        assert!(config.model_dir.ends_with("model"));
        let err =
            GenerateConfig::from_lookup(lookup(&[("QUOTES_QUEUE_URL", "http://q")])).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
    }

    #[test]
    fn each_function_asks_for_what_it_needs_only() {
        let database_only = lookup(&[("DATABASE_URL", "postgres://x")]);
        let err = ScoreConfig::from_lookup(&database_only).unwrap_err();
        assert_eq!(err.variable, "EVENT_BUS_NAME");
        let err = GenerateConfig::from_lookup(&database_only).unwrap_err();
        assert_eq!(err.variable, "QUOTES_QUEUE_URL");
        let err = ReconcileConfig::from_lookup(&database_only).unwrap_err();
        assert_eq!(err.variable, "QUOTES_QUEUE_URL");
        let err = ReconcileConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("QUOTES_QUEUE_URL", "http://q"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "EVENT_BUS_NAME");
        let err = ScoreConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("SCORING_MODE", "engine"),
            ("EVENT_BUS_NAME", "quotes"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "ML_ENGINE_URL");
    }

    #[test]
    fn the_scoring_mode_follows_the_engine_url_unless_set() {
        let engine = ScoreConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "x"),
            ("ML_ENGINE_URL", "http://e"),
            ("EVENT_BUS_NAME", "quotes"),
        ]))
        .unwrap();
        assert!(matches!(engine.scoring, ScoringMode::Engine(ref e) if e.url == "http://e"));
        let embedded = ScoreConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "x"),
            ("ML_ENGINE_URL", "http://e"),
            ("SCORING_MODE", "embedded"),
            ("MODEL_DIR", "/opt/model"),
            ("EVENT_BUS_NAME", "quotes"),
        ]))
        .unwrap();
        assert_eq!(
            embedded.scoring,
            ScoringMode::Embedded {
                model_dir: "/opt/model".into()
            }
        );
        let bad =
            ScoreConfig::from_lookup(lookup(&[("DATABASE_URL", "x"), ("SCORING_MODE", "magic")]));
        assert_eq!(bad.unwrap_err().variable, "SCORING_MODE");
    }

    #[test]
    fn a_price_is_valid_30_days_unless_configured_from_1_to_365() {
        let validity = |days: &str| {
            ScoreConfig::from_lookup(lookup(&[
                ("DATABASE_URL", "x"),
                ("EVENT_BUS_NAME", "quotes"),
                ("PRICE_VALIDITY_DAYS", days),
            ]))
            .map(|config| config.price_validity)
        };
        let day = Duration::from_secs(86_400);
        assert_eq!(validity(""), Ok(30 * day));
        assert_eq!(validity("7"), Ok(7 * day));
        assert_eq!(validity("365"), Ok(365 * day));
        for bad in ["0", "366", "-1", "2.5", "week"] {
            let err = validity(bad).unwrap_err();
            assert_eq!(err.variable, "PRICE_VALIDITY_DAYS", "{bad}");
        }
    }

    #[test]
    fn a_shadow_model_is_read_only_where_named_in_either_mode() {
        let shadow = |pairs: &[(&str, &str)]| {
            let mut all = vec![("DATABASE_URL", "x"), ("EVENT_BUS_NAME", "quotes")];
            all.extend_from_slice(pairs);
            ScoreConfig::from_lookup(lookup(&all))
                .unwrap()
                .shadow_model_dir
        };
        assert_eq!(shadow(&[]), None);
        assert_eq!(shadow(&[("SHADOW_MODEL_DIR", " ")]), None);
        for mode in [("SCORING_MODE", "embedded"), ("ML_ENGINE_URL", "http://e")] {
            assert_eq!(
                shadow(&[mode, ("SHADOW_MODEL_DIR", "/opt/shadow-model")]),
                Some(PathBuf::from("/opt/shadow-model"))
            );
        }
    }

    #[test]
    fn shadow_prices_are_kept_30_days_unless_configured_from_1_to_3650() {
        let retention = |days: &str| {
            ReconcileConfig::from_lookup(lookup(&[
                ("DATABASE_URL", "x"),
                ("QUOTES_QUEUE_URL", "http://q"),
                ("EVENT_BUS_NAME", "quotes"),
                ("SHADOW_RETENTION_DAYS", days),
            ]))
            .map(|config| config.policy.shadow_retention)
        };
        let day = Duration::from_secs(86_400);
        assert_eq!(retention(""), Ok(30 * day));
        assert_eq!(retention("90"), Ok(90 * day));
        for bad in ["0", "3651", "month"] {
            let err = retention(bad).unwrap_err();
            assert_eq!(err.variable, "SHADOW_RETENTION_DAYS", "{bad}");
        }
    }

    #[test]
    fn the_engine_is_called_unsigned_unless_iam_is_asked_for() {
        let engine = |pairs: &[(&str, &str)]| {
            let mut all = vec![
                ("DATABASE_URL", "x"),
                ("EVENT_BUS_NAME", "quotes"),
                ("ML_ENGINE_URL", "https://e"),
            ];
            all.extend_from_slice(pairs);
            match ScoreConfig::from_lookup(lookup(&all)).map(|c| c.scoring) {
                Ok(ScoringMode::Engine(engine)) => Ok(engine.auth),
                Ok(other) => panic!("not engine mode: {other:?}"),
                Err(e) => Err(e.variable),
            }
        };
        assert_eq!(engine(&[]), Ok(MlEngineAuth::None));
        assert_eq!(
            engine(&[("ML_ENGINE_AUTH", "none")]),
            Ok(MlEngineAuth::None)
        );
        let iam = |region: &str| {
            Ok(MlEngineAuth::Iam {
                region: region.into(),
            })
        };
        assert_eq!(
            engine(&[("ML_ENGINE_AUTH", "iam"), ("AWS_REGION", "eu-west-1")]),
            iam("eu-west-1")
        );
        assert_eq!(
            engine(&[
                ("ML_ENGINE_AUTH", "iam"),
                ("AWS_REGION", "eu-west-1"),
                ("ML_ENGINE_REGION", "us-east-2"),
            ]),
            iam("us-east-2")
        );
        assert_eq!(engine(&[("ML_ENGINE_AUTH", "iam")]), Err("AWS_REGION"));
        assert_eq!(
            engine(&[("ML_ENGINE_AUTH", "sigv4")]),
            Err("ML_ENGINE_AUTH")
        );
    }

    #[test]
    fn iam_authentication_needs_no_password() {
        let config = DatabaseConfig::from_lookup(lookup(&[
            ("DB_IAM_AUTH", "true"),
            ("DB_HOST", "proxy.example.com"),
            ("DB_NAME", "quotes"),
            ("DB_USER", "quotes_app"),
            ("AWS_REGION", "eu-west-1"),
        ]))
        .unwrap();
        let iam = config.iam.unwrap();
        assert_eq!((iam.port, iam.region.as_str()), (5432, "eu-west-1"));
        assert_eq!(
            config.url,
            "postgres://quotes_app@proxy.example.com:5432/quotes"
        );
        let missing =
            DatabaseConfig::from_lookup(lookup(&[("DB_IAM_AUTH", "true"), ("DB_HOST", "h")]));
        assert_eq!(missing.unwrap_err().variable, "DB_NAME");
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        let err = GenerateConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://x"),
            ("QUOTES_QUEUE_URL", "http://q"),
            ("QUEUE_IDS_PER_MESSAGE", "5000"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "QUEUE_IDS_PER_MESSAGE");
    }
}
