//! The client of the ML engine's `POST /predict/batch`.
//!
//! Quotes go in chunks of `ML_CHUNK_SIZE`, at most `ML_CONCURRENCY` requests in flight, over one
//! reused connection pool. A chunk that fails for a passing reason (refused, timed out, 5xx,
//! 429) is retried with jittered backoff for as long as the invocation's deadline allows; quotes
//! the engine rejects as invalid (422 naming them) are set aside and the rest of the chunk is
//! sent again at once; an answer no retry would change fails the chunk's quotes at once.
//!
//! A 422 naming a missing or unknown feature *name* is not the quote's fault: `score` sends
//! the same names for every quote, so the engine serves another model than `score` computes
//! features for (a deploy of one side without the other). That is an outage until the two
//! match again: the chunk's quotes stay pending, their messages come back, and the mismatch is
//! counted apart, with an alarm of its own.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use rand::RngExt;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

use crate::features::{FEATURE_NAMES, Features};
use crate::request_signing::{RequestSigner, SigningError};
use quote_domain::pricing::{Predicted, Prediction, Predictor};

/// The engine and how to call it: what `config` reads from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct MlEngineConfig {
    pub url: String,
    pub chunk_size: usize,
    pub concurrency: usize,
    pub timeout_ms: u64,
    pub auth: MlEngineAuth,
}

/// How requests prove who sends them.
#[derive(Debug, Clone, PartialEq)]
pub enum MlEngineAuth {
    /// Not at all: an engine that only the functions' network reaches.
    None,
    /// SigV4, for a Lambda function URL with the `AWS_IAM` auth type in `region`.
    Iam { region: String },
}

/// Connecting to the engine: a refused or unreachable engine is known at once.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Time kept back from a retry, so the backoff never sleeps past the deadline.
pub const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// The span around one engine call, by name: X-Ray draws it as a call to the engine.
pub const ML_ENGINE_PREDICT: &str = "ml_engine.predict_batch";

#[derive(Clone)]
pub struct MlEngine {
    http: reqwest::Client,
    predict_url: String,
    chunk_size: usize,
    concurrency: usize,
    timeout: Duration,
    /// With `MlEngineAuth::Iam`: signs every request.
    signer: Option<Arc<RequestSigner>>,
}

/// Why the engine's client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum MlEngineError {
    #[error("ML engine client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("ML engine client: {0}")]
    Signing(#[from] SigningError),
}

/// Why one call to the engine priced nothing.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("request failed: {0}")]
    Request(#[source] reqwest::Error),
    #[error("signing the request failed: {0}")]
    Signing(#[source] SigningError),
    #[error("reading the answer failed: {0}")]
    ReadAnswer(#[source] reqwest::Error),
    #[error("the answer is not a prediction list: {0}")]
    NotPredictions(#[source] serde_json::Error),
    #[error("422 naming no quote of the request: {body}")]
    RejectionNamingNoQuote { body: String },
    #[error("{status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("{answers} answers for {quotes} quotes")]
    WrongCount { answers: usize, quotes: usize },
    #[error("an answer out of order or out of range for quote {0}")]
    BadAnswer(Uuid),
    #[error("the engine's model expects other features than score sends: {problems}")]
    SchemaMismatch { problems: String },
}

impl CallError {
    /// An answer the engine would give again to the same request: a client error other than
    /// a timeout or throttling (413: a batch over its limit; a 422 naming no quote), or a 200
    /// that does not answer the request (wrong count, order or values).
    fn is_permanent(&self) -> bool {
        match self {
            // Credentials that could not be had now may be had on the next try.
            CallError::Request(_)
            | CallError::ReadAnswer(_)
            | CallError::Signing(_)
            | CallError::SchemaMismatch { .. } => false,
            // 401 and 403: an IAM function URL refusing the signature (credentials, clock or
            // policy), an outage to fix, not the quotes' fault.
            CallError::Status { status, .. } => {
                status.is_client_error()
                    && *status != StatusCode::REQUEST_TIMEOUT
                    && *status != StatusCode::TOO_MANY_REQUESTS
                    && *status != StatusCode::UNAUTHORIZED
                    && *status != StatusCode::FORBIDDEN
            }
            CallError::NotPredictions(_)
            | CallError::RejectionNamingNoQuote { .. }
            | CallError::WrongCount { .. }
            | CallError::BadAnswer(_) => true,
        }
    }
}

impl MlEngine {
    /// The client `config` describes; with `MlEngineAuth::Iam` its requests are signed with the
    /// credentials of `sdk` (the function's role on Lambda), which that mode needs.
    pub fn new(
        config: &MlEngineConfig,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, MlEngineError> {
        let base = &config.url;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(MlEngineError::Client)?;
        let signer = match &config.auth {
            MlEngineAuth::None => None,
            MlEngineAuth::Iam { region } => Some(Arc::new(RequestSigner::from_sdk(region, sdk)?)),
        };
        Ok(MlEngine {
            http,
            predict_url: format!("{}/predict/batch", base.trim_end_matches('/')),
            chunk_size: config.chunk_size,
            concurrency: config.concurrency,
            timeout: Duration::from_millis(config.timeout_ms),
            signer,
        })
    }

    /// Prices one chunk, retrying what can be retried until `deadline`.
    async fn predict_chunk(&self, chunk: &[(Uuid, Features)], deadline: Instant) -> Predicted {
        let mut outcome = Predicted::default();
        let mut rejected: HashSet<Uuid> = HashSet::new();
        let mut attempt = 0u32;
        loop {
            let items: Vec<Item<'_>> = chunk
                .iter()
                .filter(|(id, _)| !rejected.contains(id))
                .map(|(id, features)| Item {
                    quote_id: *id,
                    features: FeatureMap(features),
                })
                .collect();
            if items.is_empty() {
                return outcome;
            }
            let started = Instant::now();
            let answer = self.call(&items, deadline).await;
            outcome.call_times.push(started.elapsed());
            let error = match answer {
                Ok(Answer::Priced(predictions)) => {
                    outcome.predictions.extend(predictions);
                    return outcome;
                }
                Ok(Answer::Rejected(invalid)) => {
                    // The others were not priced only because they shared a request with an
                    // invalid quote: send them again now.
                    for (id, reason) in invalid {
                        if rejected.insert(id) {
                            outcome.rejected.push((id, reason));
                        }
                    }
                    continue;
                }
                Err(e @ CallError::SchemaMismatch { .. }) => {
                    // Not mended within an invocation: a deploy of the engine or of `score`
                    // mends it. Back to the queue now, rather than retried until the deadline.
                    outcome.call_errors += 1;
                    outcome.schema_mismatches += 1;
                    tracing::error!(error = %e, quotes = items.len(), "score and the ML engine disagree on the model's features; the quotes stay pending");
                    outcome.unavailable.extend(items.iter().map(|i| i.quote_id));
                    outcome.reason = Some(e.to_string());
                    return outcome;
                }
                Err(e) if e.is_permanent() => {
                    // The same request would get the same answer: its quotes fail now, with it
                    // as the reason, rather than come back until they are dead-lettered.
                    outcome.call_errors += 1;
                    outcome.permanent_errors += 1;
                    tracing::error!(error = %e, quotes = items.len(), "the ML engine's answer will not change on retry; failing the quotes");
                    let reason = format!("the ML engine's answer will not change on retry: {e}");
                    outcome
                        .rejected
                        .extend(items.iter().map(|i| (i.quote_id, reason.clone())));
                    return outcome;
                }
                Err(e) => {
                    outcome.call_errors += 1;
                    e
                }
            };
            attempt += 1;
            let pause = backoff(attempt);
            if Instant::now() + pause + MIN_ATTEMPT >= deadline {
                tracing::warn!(attempt, error = %error, quotes = items.len(), "ML engine unavailable; giving up for this invocation");
                outcome.unavailable.extend(items.iter().map(|i| i.quote_id));
                outcome.reason = Some(error.to_string());
                return outcome;
            }
            // The call's own span has logged its error.
            tracing::warn!(attempt, "ML engine call failed; retrying");
            tokio::time::sleep(pause).await;
        }
    }

    #[tracing::instrument(
        name = ML_ENGINE_PREDICT,
        skip_all,
        fields(quotes = items.len(), url = %self.predict_url, status = tracing::field::Empty),
        err(level = "warn")
    )]
    async fn call(&self, items: &[Item<'_>], deadline: Instant) -> Result<Answer, CallError> {
        let timeout = self
            .timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let mut request = self
            .http
            .post(&self.predict_url)
            .timeout(timeout)
            .json(items)
            .build()
            .map_err(CallError::Request)?;
        if let Some(signer) = &self.signer {
            signer
                .sign(&mut request)
                .await
                .map_err(CallError::Signing)?;
        }
        let response = self
            .http
            .execute(request)
            .await
            .map_err(CallError::Request)?;
        let status = response.status();
        tracing::Span::current().record("status", status.as_u16());
        let bytes = response.bytes().await.map_err(CallError::ReadAnswer)?;
        match status {
            StatusCode::OK => {
                let answers: Vec<Answered> =
                    serde_json::from_slice(&bytes).map_err(CallError::NotPredictions)?;
                check_answers(items, answers).map(Answer::Priced)
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                let naming_no_quote = || CallError::RejectionNamingNoQuote {
                    body: String::from_utf8_lossy(&bytes).into_owned(),
                };
                let body: Rejection =
                    serde_json::from_slice(&bytes).map_err(|_| naming_no_quote())?;
                if let Some(problems) = schema_problems(&body) {
                    return Err(CallError::SchemaMismatch { problems });
                }
                let sent: HashSet<Uuid> = items.iter().map(|i| i.quote_id).collect();
                let invalid: Vec<(Uuid, String)> = body
                    .invalid
                    .into_iter()
                    .filter_map(|i| {
                        let id = Uuid::try_parse(&i.quote_id)
                            .ok()
                            .filter(|id| sent.contains(id))?;
                        Some((
                            id,
                            format!(
                                "the ML engine rejected the features: {}",
                                i.problems.join("; ")
                            ),
                        ))
                    })
                    .collect();
                if invalid.is_empty() {
                    Err(naming_no_quote())
                } else {
                    Ok(Answer::Rejected(invalid))
                }
            }
            status => Err(CallError::Status {
                status,
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned(),
            }),
        }
    }
}

impl Predictor for MlEngine {
    async fn predict(&self, quotes: &[(Uuid, Features)], deadline: Instant) -> Predicted {
        // Built up front: a closure inside the stream trips the compiler's Send inference.
        let calls: Vec<_> = quotes
            .chunks(self.chunk_size)
            .map(|chunk| self.predict_chunk(chunk, deadline))
            .collect();
        stream::iter(calls)
            .buffer_unordered(self.concurrency)
            .fold(Predicted::default(), |mut all, part| async move {
                all.merge(part);
                all
            })
            .await
    }
}

/// Exponential backoff with full jitter: 50 ms, 100 ms, ... capped at 2 s.
fn backoff(attempt: u32) -> Duration {
    let cap = (50u64 << attempt.min(6)).min(2000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

/// The problems of a rejection that name a feature the model lacks or wants, if any: those
/// of the request, not of a quote's values.
fn schema_problems(rejection: &Rejection) -> Option<String> {
    let names: std::collections::BTreeSet<&str> = rejection
        .invalid
        .iter()
        .flat_map(|i| &i.problems)
        .map(String::as_str)
        .filter(|p| p.starts_with("missing feature:") || p.starts_with("unknown feature:"))
        .collect();
    (!names.is_empty()).then(|| names.into_iter().collect::<Vec<_>>().join("; "))
}

fn check_answers(items: &[Item<'_>], answers: Vec<Answered>) -> Result<Vec<Prediction>, CallError> {
    if answers.len() != items.len() {
        return Err(CallError::WrongCount {
            answers: answers.len(),
            quotes: items.len(),
        });
    }
    items
        .iter()
        .zip(answers)
        .map(|(item, a)| {
            // A range that holds its median, from 0 up: NaN and infinities fail these too.
            let valid = a.quote_id == item.quote_id
                && 0.0 <= a.prediction_low
                && a.prediction_low <= a.prediction
                && a.prediction <= a.prediction_high
                && a.prediction_high.is_finite()
                && (0.0..=1.0).contains(&a.confidence)
                && !a.model_version.is_empty();
            if valid {
                Ok(Prediction {
                    quote_id: a.quote_id,
                    premium: a.prediction,
                    premium_low: a.prediction_low,
                    premium_high: a.prediction_high,
                    confidence: a.confidence,
                    model_version: a.model_version.into(),
                })
            } else {
                Err(CallError::BadAnswer(item.quote_id))
            }
        })
        .collect()
}

enum Answer {
    Priced(Vec<Prediction>),
    Rejected(Vec<(Uuid, String)>),
}

#[derive(Serialize)]
struct Item<'a> {
    quote_id: Uuid,
    features: FeatureMap<'a>,
}

/// Features as the JSON object the engine checks by name.
struct FeatureMap<'a>(&'a Features);

impl Serialize for FeatureMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(FEATURE_NAMES.iter().zip(self.0.iter()))
    }
}

#[derive(Deserialize)]
struct Answered {
    quote_id: Uuid,
    prediction: f64,
    prediction_low: f64,
    prediction_high: f64,
    confidence: f64,
    model_version: String,
}

#[derive(Deserialize)]
struct Rejection {
    invalid: Vec<RejectedItem>,
}

#[derive(Deserialize)]
struct RejectedItem {
    quote_id: String,
    problems: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> CallError {
        CallError::Status {
            status: StatusCode::from_u16(code).unwrap(),
            body: String::new(),
        }
    }

    #[test]
    fn answers_a_retry_would_change_are_told_from_those_it_would_not() {
        for passing in [500, 502, 503, 504, 408, 429, 401, 403] {
            assert!(!status(passing).is_permanent(), "{passing}");
        }
        for permanent in [400, 404, 413, 415] {
            assert!(status(permanent).is_permanent(), "{permanent}");
        }
        let naming_no_quote = CallError::RejectionNamingNoQuote { body: "{}".into() };
        let wrong_count = CallError::WrongCount {
            answers: 1,
            quotes: 2,
        };
        assert!(naming_no_quote.is_permanent() && wrong_count.is_permanent());
        assert!(CallError::BadAnswer(Uuid::nil()).is_permanent());
        let skew = CallError::SchemaMismatch {
            problems: "missing feature: risk_score".into(),
        };
        assert!(!skew.is_permanent());
    }

    #[test]
    fn a_rejection_naming_feature_names_is_a_schema_mismatch_and_one_naming_values_is_not() {
        let rejection = |problems: &[&str]| Rejection {
            invalid: vec![RejectedItem {
                quote_id: Uuid::nil().to_string(),
                problems: problems.iter().map(|p| p.to_string()).collect(),
            }],
        };
        assert_eq!(
            schema_problems(&rejection(&[
                "unknown feature: x",
                "missing feature: risk_score",
                "non-finite feature: age"
            ]))
            .as_deref(),
            Some("missing feature: risk_score; unknown feature: x")
        );
        assert_eq!(
            schema_problems(&rejection(&["non-numeric feature: risk_score"])),
            None
        );
    }

    #[test]
    fn an_answer_whose_range_does_not_hold_its_median_is_refused() {
        let features = [0.0; FEATURE_NAMES.len()];
        let item = Item {
            quote_id: Uuid::now_v7(),
            features: FeatureMap(&features),
        };
        let answer = |low: f64, median: f64, high: f64| Answered {
            quote_id: item.quote_id,
            prediction: median,
            prediction_low: low,
            prediction_high: high,
            confidence: 0.5,
            model_version: "xgb-0123456789ab".into(),
        };
        let checked = check_answers(std::slice::from_ref(&item), vec![answer(0.0, 1.5, 3.0)]);
        let priced = checked.unwrap().pop().unwrap();
        assert_eq!(
            (priced.premium_low, priced.premium, priced.premium_high),
            (0.0, 1.5, 3.0)
        );
        assert!(check_answers(std::slice::from_ref(&item), vec![answer(7.0, 7.0, 7.0)]).is_ok());
        for (low, median, high) in [
            (2.0, 1.5, 3.0),
            (0.0, 3.5, 3.0),
            (-0.5, 1.5, 3.0),
            (f64::NAN, 1.5, 3.0),
            (0.0, f64::NAN, 3.0),
            (0.0, 1.5, f64::INFINITY),
        ] {
            let checked =
                check_answers(std::slice::from_ref(&item), vec![answer(low, median, high)]);
            assert!(
                matches!(checked, Err(CallError::BadAnswer(id)) if id == item.quote_id),
                "{low} {median} {high}"
            );
        }
    }
}
