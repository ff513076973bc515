//! Metrics in CloudWatch Embedded Metric Format: one JSON log line per invocation that
//! CloudWatch turns into metrics, with no API call on the request path.
//!
//! Namespace `METRICS_NAMESPACE` (default `QuotePipeline`), one dimension `FunctionName`.
//! A maintained crate exists (`metrics_cloudwatch_embedded`), but it keeps its values in the
//! process-wide `metrics` recorder; a value per invocation is simpler to test and to reason
//! about, and this is all the format needs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Percent,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Percent => "Percent",
        }
    }
}

/// A metric counted per invocation. The names are a contract: the template's alarms and
/// dashboard chart them, so each is written here once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// `generate`: quotes written.
    QuotesCreated,
    /// `generate`: quotes put on the queue.
    QuotesEnqueued,
    /// `score`: messages in the invocation's batch.
    BatchSize,
    /// `score`: quotes priced.
    QuotesScored,
    /// `score` and `reconcile`: quotes that became `failed`.
    QuotesFailed,
    /// `score`: engine calls that failed (each retry counts).
    MlEngineErrors,
    /// `reconcile`: stuck quotes sent to the queue again.
    QuotesReenqueued,
    /// `reconcile`: expired idempotency keys deleted.
    IdempotencyKeysPurged,
    /// `score`: engine answers no retry would change (a 413, a 422 naming no quote, a 200
    /// that does not answer the request); their quotes fail with the answer as the reason.
    MlEnginePermanentErrors,
    /// `score`: engine answers saying its model wants other features than `score` sends
    /// (version skew); their quotes stay pending.
    MlEngineSchemaMismatches,
    /// `reconcile`: failed quotes an operator returned to pending and queued again.
    QuotesRequeued,
    /// `score`: predictions refused for a premium at or below 0 or not finite; their quotes
    /// fail with the price as the reason, and no such price is ever written.
    PremiumsRefused,
    /// Every function: 1 on the first invocation of a new container (see [`Metrics::cold_start`]).
    ColdStart,
    /// `score` and `reconcile`: batches found with their last quote ended, marked completed.
    BatchesCompleted,
    /// `score` and `reconcile`: batch completion events published.
    BatchEventsPublished,
    /// `score` and `reconcile`: batch completion events EventBridge did not take; reconcile
    /// sends them again.
    BatchEventPublishFailures,
    /// `reconcile`: scored quotes an operator's reprice request sent to be priced again.
    RepricesEnqueued,
    /// `score`: quotes a re-price gave a new current price.
    QuotesRepriced,
    /// `score`: quotes a re-price could not price (rejected, or a refused premium); they
    /// keep their price.
    RepricesFailed,
    /// `score`: shadow prices written (a quote's second, never shown, price by the shadow
    /// model).
    ShadowPricesRecorded,
    /// `score`: quotes the live model scored that got no shadow price: the shadow model
    /// rejected them or priced them at a refused premium, or their write failed.
    ShadowFailures,
    /// `reconcile`: shadow prices deleted past their retention.
    ShadowPricesPurged,
}

/// A duration measured per invocation, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Time {
    /// Time spent in Postgres statements.
    DatabaseTime,
    /// `generate`: time spent sending to SQS.
    QueueTime,
    /// `score`: each engine call.
    MlEngineLatency,
    /// `score`: pricing one batch's quotes, engine or in process, retries included.
    PricingTime,
}

/// A ratio measured per quote, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Percentage {
    /// `score`: a quote's shadow median against its live median, `(shadow - live) / live`,
    /// one value per quote shadow-priced (the first 100 of an invocation, EMF's limit).
    ShadowPriceDifference,
}

impl Count {
    pub const ALL: [Count; 22] = [
        Count::QuotesCreated,
        Count::QuotesEnqueued,
        Count::BatchSize,
        Count::QuotesScored,
        Count::QuotesFailed,
        Count::MlEngineErrors,
        Count::QuotesReenqueued,
        Count::ColdStart,
        Count::IdempotencyKeysPurged,
        Count::MlEnginePermanentErrors,
        Count::MlEngineSchemaMismatches,
        Count::QuotesRequeued,
        Count::PremiumsRefused,
        Count::BatchesCompleted,
        Count::BatchEventsPublished,
        Count::BatchEventPublishFailures,
        Count::RepricesEnqueued,
        Count::QuotesRepriced,
        Count::RepricesFailed,
        Count::ShadowPricesRecorded,
        Count::ShadowFailures,
        Count::ShadowPricesPurged,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Count::QuotesCreated => "QuotesCreated",
            Count::QuotesEnqueued => "QuotesEnqueued",
            Count::BatchSize => "BatchSize",
            Count::QuotesScored => "QuotesScored",
            Count::QuotesFailed => "QuotesFailed",
            Count::MlEngineErrors => "MlEngineErrors",
            Count::QuotesReenqueued => "QuotesReenqueued",
            Count::IdempotencyKeysPurged => "IdempotencyKeysPurged",
            Count::MlEnginePermanentErrors => "MlEnginePermanentErrors",
            Count::MlEngineSchemaMismatches => "MlEngineSchemaMismatches",
            Count::QuotesRequeued => "QuotesRequeued",
            Count::PremiumsRefused => "PremiumsRefused",
            Count::ColdStart => "ColdStart",
            Count::BatchesCompleted => "BatchesCompleted",
            Count::BatchEventsPublished => "BatchEventsPublished",
            Count::BatchEventPublishFailures => "BatchEventPublishFailures",
            Count::RepricesEnqueued => "RepricesEnqueued",
            Count::QuotesRepriced => "QuotesRepriced",
            Count::RepricesFailed => "RepricesFailed",
            Count::ShadowPricesRecorded => "ShadowPricesRecorded",
            Count::ShadowFailures => "ShadowFailures",
            Count::ShadowPricesPurged => "ShadowPricesPurged",
        }
    }
}

impl Time {
    pub const ALL: [Time; 4] = [
        Time::DatabaseTime,
        Time::QueueTime,
        Time::MlEngineLatency,
        Time::PricingTime,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Time::DatabaseTime => "DatabaseTime",
            Time::QueueTime => "QueueTime",
            Time::MlEngineLatency => "MlEngineLatency",
            Time::PricingTime => "PricingTime",
        }
    }
}

impl Percentage {
    pub const ALL: [Percentage; 1] = [Percentage::ShadowPriceDifference];

    pub const fn name(self) -> &'static str {
        match self {
            Percentage::ShadowPriceDifference => "ShadowPriceDifference",
        }
    }
}

/// The metrics of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    namespace: String,
    function: String,
    values: Vec<(&'static str, Unit, f64)>,
    properties: Map<String, Value>,
}

static COLD: AtomicBool = AtomicBool::new(true);

/// True for the first invocation of this process: the container's cold start.
pub fn cold_start() -> bool {
    COLD.swap(false, Ordering::Relaxed)
}

impl Metrics {
    /// Metrics of the function named by Lambda's `AWS_LAMBDA_FUNCTION_NAME`, else `default`.
    pub fn for_function(default: &str) -> Self {
        let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| default.into());
        let namespace =
            std::env::var("METRICS_NAMESPACE").unwrap_or_else(|_| "QuotePipeline".into());
        Metrics {
            namespace,
            function,
            values: Vec::new(),
            properties: Map::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn count(&mut self, metric: Count, n: u64) -> &mut Self {
        self.values.push((metric.name(), Unit::Count, n as f64));
        self
    }

    pub fn time(&mut self, metric: Time, elapsed: Duration) -> &mut Self {
        self.values.push((
            metric.name(),
            Unit::Milliseconds,
            elapsed.as_secs_f64() * 1000.0,
        ));
        self
    }

    pub fn percent(&mut self, metric: Percentage, percent: f64) -> &mut Self {
        self.values.push((metric.name(), Unit::Percent, percent));
        self
    }

    /// Marks the invocation cold or warm: the `coldStart` property always, and on a cold one
    /// the `ColdStart` metric, counted 1, so cold starts can be charted and summed.
    pub fn cold_start(&mut self, cold: bool) -> &mut Self {
        if cold {
            self.count(Count::ColdStart, 1);
        }
        self.property("coldStart", cold)
    }

    /// A searchable property of the log line, not a metric (the request id, say).
    pub fn property(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.properties.insert(name.into(), value.into());
        self
    }

    /// The EMF document; a metric recorded twice is one metric with a list of values.
    pub fn to_emf(&self, timestamp_ms: u64) -> Value {
        let mut document = self.properties.clone();
        let mut definitions = Vec::new();
        for (name, unit, value) in &self.values {
            match document.get_mut(*name) {
                Some(Value::Array(list)) => list.push(json!(value)),
                Some(single) => *single = json!([single.take(), value]),
                None => {
                    definitions.push(json!({"Name": name, "Unit": unit.as_str()}));
                    document.insert((*name).into(), json!(value));
                }
            }
        }
        document.insert("FunctionName".into(), json!(self.function));
        document.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": [["FunctionName"]],
                    "Metrics": definitions,
                }],
            }),
        );
        Value::Object(document)
    }

    /// Writes the document as one line to standard output, where Lambda's log capture finds it.
    pub fn flush(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        // println! rather than a raw stdout handle, so a test harness captures it too.
        println!("{}", self.to_emf(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_the_functions_emit_is_charted_or_alarmed_in_the_template() {
        let template = include_str!("../../../template.yaml");
        let names = Count::ALL
            .iter()
            .map(|c| c.name())
            .chain(Time::ALL.iter().map(|t| t.name()))
            .chain(Percentage::ALL.iter().map(|p| p.name()));
        for name in names {
            assert!(
                template.contains(&format!("\"{name}\""))
                    || template.contains(&format!(": {name}\n")),
                "{name} is emitted but the template neither charts nor alarms on it"
            );
        }
    }

    #[test]
    fn a_cold_invocation_counts_one_cold_start_and_a_warm_one_none() {
        let mut cold = Metrics::for_function("score");
        cold.cold_start(true);
        let emf = cold.to_emf(0);
        assert_eq!(emf["ColdStart"], 1.0);
        assert_eq!(emf["coldStart"], true);
        assert_eq!(
            emf["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "ColdStart", "Unit": "Count"}])
        );

        let mut warm = Metrics::for_function("score");
        warm.cold_start(false);
        assert!(
            warm.is_empty(),
            "a warm invocation records no ColdStart value"
        );
        assert_eq!(warm.to_emf(0)["coldStart"], false);
    }

    #[test]
    fn documents_follow_the_embedded_metric_format() {
        let mut metrics = Metrics {
            namespace: "QuotePipeline".into(),
            function: "score".into(),
            values: Vec::new(),
            properties: Map::new(),
        };
        metrics
            .count(Count::QuotesScored, 10)
            .time(Time::MlEngineLatency, Duration::from_millis(12))
            .time(Time::MlEngineLatency, Duration::from_millis(8))
            .property("requestId", "r-1");
        let emf = metrics.to_emf(1_795_770_000_000);
        assert_eq!(emf["FunctionName"], "score");
        assert_eq!(emf["QuotesScored"], 10.0);
        assert_eq!(emf["MlEngineLatency"], json!([12.0, 8.0]));
        assert_eq!(emf["requestId"], "r-1");
        let directive = &emf["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "QuotePipeline");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "QuotesScored", "Unit": "Count"}, {"Name": "MlEngineLatency", "Unit": "Milliseconds"}])
        );
    }
}
