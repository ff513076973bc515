//! Spans as AWS X-Ray subsegments, sent to the X-Ray daemon that Lambda runs beside a function
//! with active tracing, as the X-Ray SDKs (and so Powertools' Tracer) do.
//!
//! The runtime's invocation span carries the trace header Lambda hands each invocation; when it
//! is sampled, that span becomes the `## handler` subsegment of the function's segment (it ends
//! once the answer is posted to the Runtime API, before the next poll lets Lambda freeze the
//! sandbox), and every span inside it a subsegment of its own, sent as one UDP datagram when it
//! closes. Calls to Postgres, SQS and the ML engine are named for the service they reach, so
//! each is a node of the service map. A span whose own result is an error, as
//! `#[instrument(err)]` reports it, is a fault; the ML engine's HTTP status sets `error`,
//! `throttle` or `fault` as X-Ray reads them.
//!
//! The daemon protocol is a JSON document behind a one-line header; speaking it here costs a
//! socket and no dependency, where an OpenTelemetry pipeline would need the ADOT collector layer,
//! whose start-up is many times this function's whole cold start.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngExt;
use serde_json::{Map, Value, json};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::{events, ml_engine, queue, store};

/// The span `lambda_runtime` opens around each invocation, and its field holding the header.
const INVOCATION_SPAN: &str = "Lambda runtime invoke";
const TRACE_HEADER_FIELD: &str = "xrayTraceId";
/// The line before each document sent to the daemon.
pub const DAEMON_HEADER: &str = "{\"format\":\"json\",\"version\":1}\n";

/// The `Root`, `Parent` and `Sampled` parts of an `X-Amzn-Trace-Id` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeader {
    pub root: String,
    pub parent: String,
    pub sampled: bool,
}

impl TraceHeader {
    pub fn parse(header: &str) -> Option<Self> {
        let (mut root, mut parent, mut sampled) = (None, None, false);
        for part in header.split(';') {
            match part.trim().split_once('=') {
                Some(("Root", v)) => root = Some(v.to_owned()),
                Some(("Parent", v)) => parent = Some(v.to_owned()),
                Some(("Sampled", v)) => sampled = v == "1",
                _ => {}
            }
        }
        Some(TraceHeader {
            root: root?,
            parent: parent?,
            sampled,
        })
    }
}

/// Where a span's work goes: the service map node it is drawn as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Postgres,
    Sqs,
    EventBridge,
    MlEngine,
    Local,
}

/// The spans that stand for a call to another service, named by the adapters that make them,
/// with the service and the operation each is drawn as; any other span is local work.
const CALLS: [(&str, Peer, &str); 13] = [
    (store::POSTGRES_INSERT, Peer::Postgres, "insert"),
    (store::POSTGRES_GET, Peer::Postgres, "get"),
    (store::POSTGRES_LIST, Peer::Postgres, "list"),
    (store::POSTGRES_PENDING, Peer::Postgres, "pending"),
    (store::POSTGRES_RECORD, Peer::Postgres, "record"),
    (store::POSTGRES_PRICED, Peer::Postgres, "priced"),
    (store::POSTGRES_REPRICE, Peer::Postgres, "reprice"),
    (store::POSTGRES_SHADOW, Peer::Postgres, "shadow"),
    (store::POSTGRES_BATCH, Peer::Postgres, "batch"),
    (store::POSTGRES_EVENTS_SENT, Peer::Postgres, "events_sent"),
    (queue::SQS_ENQUEUE, Peer::Sqs, "enqueue"),
    (events::EVENTBRIDGE_PUT, Peer::EventBridge, "put_events"),
    (
        ml_engine::ML_ENGINE_PREDICT,
        Peer::MlEngine,
        "predict_batch",
    ),
];

impl Peer {
    /// The service a span calls, and the operation.
    fn of(span_name: &str) -> (Self, &'static str) {
        CALLS
            .iter()
            .find(|(name, ..)| *name == span_name)
            .map_or((Peer::Local, ""), |&(_, peer, operation)| (peer, operation))
    }
}

/// The most characters of an error kept in a subsegment: a document must fit in a datagram.
const MAX_CAUSE_CHARS: usize = 1024;

/// One sampled span's subsegment while it is open.
struct Subsegment {
    trace_id: Arc<str>,
    id: String,
    parent_id: String,
    name: String,
    peer: Peer,
    operation: &'static str,
    start_time: f64,
    fields: Map<String, Value>,
    annotations: Map<String, Value>,
    faults: Vec<String>,
}

impl Subsegment {
    fn to_document(&self, end_time: f64) -> Value {
        let mut doc = json!({
            "type": "subsegment",
            "trace_id": &*self.trace_id,
            "parent_id": self.parent_id,
            "id": self.id,
            "start_time": self.start_time,
            "end_time": end_time,
        });
        let mut annotations = self.annotations.clone();
        match self.peer {
            Peer::Local => doc["name"] = json!(self.name),
            Peer::Postgres => {
                doc["name"] = json!("PostgreSQL");
                doc["namespace"] = json!("remote");
                doc["sql"] = json!({"database_type": "PostgreSQL"});
                annotations.insert("operation".into(), json!(self.operation));
            }
            Peer::Sqs => {
                doc["name"] = json!("SQS");
                doc["namespace"] = json!("aws");
                if let Some(operation) = self.fields.get("operation") {
                    doc["aws"] = json!({"operation": operation});
                }
            }
            Peer::EventBridge => {
                doc["name"] = json!("EventBridge");
                doc["namespace"] = json!("aws");
                doc["aws"] = json!({"operation": "PutEvents"});
            }
            Peer::MlEngine => {
                doc["name"] = json!("ml-engine");
                doc["namespace"] = json!("remote");
                let mut http = json!({"request": {"method": "POST"}});
                if let Some(url) = self.fields.get("url") {
                    http["request"]["url"] = url.clone();
                }
                if let Some(status) = self.fields.get("status") {
                    http["response"] = json!({"status": status});
                    match status.as_u64() {
                        Some(429) => {
                            doc["throttle"] = json!(true);
                            doc["error"] = json!(true);
                        }
                        Some(400..=499) => doc["error"] = json!(true),
                        Some(500..) => doc["fault"] = json!(true),
                        _ => {}
                    }
                }
                doc["http"] = http;
            }
        }
        if !annotations.is_empty() {
            doc["annotations"] = Value::Object(annotations);
        }
        if !self.fields.is_empty() {
            doc["metadata"] = json!({"default": self.fields});
        }
        if !self.faults.is_empty() {
            doc["fault"] = json!(true);
            let exceptions: Vec<Value> = self
                .faults
                .iter()
                .map(|message| json!({"id": new_id(), "message": message}))
                .collect();
            doc["cause"] = json!({"exceptions": exceptions});
        }
        doc
    }
}

/// The tracing layer that sends sampled spans to the X-Ray daemon.
pub struct XrayLayer {
    /// Connected to the daemon.
    socket: UdpSocket,
    service: String,
    /// Set until the first invocation span opens. (`metrics::cold_start` cannot serve: the
    /// handler takes it, after this span has opened.)
    cold: AtomicBool,
}

impl XrayLayer {
    /// The layer for the daemon at `AWS_XRAY_DAEMON_ADDRESS`, which Lambda sets when tracing
    /// is active; `None` without it.
    pub fn from_env() -> Option<Self> {
        let address = std::env::var("AWS_XRAY_DAEMON_ADDRESS").ok()?;
        let service = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default();
        match daemon_address(&address).and_then(|daemon| Self::new(daemon, service).ok()) {
            Some(layer) => Some(layer),
            None => {
                eprintln!(
                    "AWS_XRAY_DAEMON_ADDRESS {address:?} is not a usable UDP address; spans are not sent to X-Ray"
                );
                None
            }
        }
    }

    pub fn new(daemon: SocketAddr, service: String) -> std::io::Result<Self> {
        let local: SocketAddr = if daemon.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .expect("a literal address");
        let socket = UdpSocket::bind(local)?;
        socket.connect(daemon)?;
        // A full socket buffer drops a subsegment rather than stall an invocation.
        socket.set_nonblocking(true)?;
        Ok(XrayLayer {
            socket,
            service,
            cold: AtomicBool::new(true),
        })
    }

    fn send(&self, document: &Value) {
        let datagram = format!("{DAEMON_HEADER}{document}");
        let _ = self.socket.send(datagram.as_bytes());
    }
}

/// `host:port`, or the daemon's `udp:host:port tcp:host:port` form.
fn daemon_address(value: &str) -> Option<SocketAddr> {
    let udp = value
        .split_whitespace()
        .find_map(|part| part.strip_prefix("udp:"))
        .unwrap_or(value.trim());
    udp.parse().ok()
}

fn new_id() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl<S> Layer<S> for XrayLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let name = attrs.metadata().name();
        let subsegment = if name == INVOCATION_SPAN {
            let cold_start = self.cold.swap(false, Ordering::Relaxed);
            let mut fields = Fields::default();
            attrs.record(&mut fields);
            let Some(header) = fields
                .0
                .remove(TRACE_HEADER_FIELD)
                .and_then(|v| v.as_str().and_then(TraceHeader::parse))
            else {
                return;
            };
            if !header.sampled {
                return;
            }
            let mut annotations = Map::new();
            annotations.insert("ColdStart".into(), json!(cold_start));
            annotations.insert("Service".into(), json!(self.service));
            Subsegment {
                trace_id: header.root.into(),
                id: new_id(),
                parent_id: header.parent,
                name: "## handler".into(),
                peer: Peer::Local,
                operation: "",
                start_time: epoch_seconds(),
                fields: fields.0,
                annotations,
                faults: Vec::new(),
            }
        } else {
            let Some((trace_id, parent_id)) = span.scope().skip(1).find_map(|ancestor| {
                ancestor
                    .extensions()
                    .get::<Subsegment>()
                    .map(|s| (s.trace_id.clone(), s.id.clone()))
            }) else {
                return;
            };
            let mut fields = Fields::default();
            attrs.record(&mut fields);
            let (peer, operation) = Peer::of(name);
            Subsegment {
                trace_id,
                id: new_id(),
                parent_id,
                name: name.to_owned(),
                peer,
                operation,
                start_time: epoch_seconds(),
                fields: fields.0,
                annotations: Map::new(),
                faults: Vec::new(),
            }
        };
        span.extensions_mut().insert(subsegment);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(subsegment) = span.extensions_mut().get_mut::<Subsegment>() {
            subsegment.fields.extend(fields.0);
        }
    }

    /// `#[instrument(err)]` reports a span's failed result as an event of one `error` field and
    /// no message, inside the span; other warnings (a retried call, say) are the logs' business.
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if *event.metadata().level() > Level::WARN {
            return;
        }
        let Some(span) = ctx.event_span(event) else {
            return;
        };
        if span.extensions().get::<Subsegment>().is_none() {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.0.contains_key("message") {
            return;
        }
        let Some(error) = fields.0.remove("error") else {
            return;
        };
        let mut cause = error
            .as_str()
            .map_or_else(|| error.to_string(), str::to_owned);
        if let Some((cut, _)) = cause.char_indices().nth(MAX_CAUSE_CHARS) {
            cause.truncate(cut);
        }
        if let Some(subsegment) = span.extensions_mut().get_mut::<Subsegment>() {
            subsegment.faults.push(cause);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if let Some(subsegment) = span.extensions_mut().remove::<Subsegment>() {
            self.send(&subsegment.to_document(epoch_seconds()));
        }
    }
}

/// A span's or event's fields as JSON values.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), json!(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), json!(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::DaemonStandIn;
    use tracing_subscriber::layer::SubscriberExt;

    const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";

    fn capture() -> (DaemonStandIn, XrayLayer) {
        let daemon = DaemonStandIn::start(std::time::Duration::from_millis(200));
        let layer = XrayLayer::new(daemon.address(), "score-test".into()).unwrap();
        (daemon, layer)
    }

    fn invocation(header: &str) {
        let invoke = tracing::info_span!(
            "Lambda runtime invoke",
            requestId = "r1",
            xrayTraceId = header
        );
        let _in = invoke.enter();
        {
            let _db = tracing::info_span!(store::POSTGRES_PENDING, ids = 2).entered();
            // A warning of its own is not the span's result.
            tracing::warn!(error = "slow", "a statement took long");
        }
        let engine = tracing::info_span!(
            ml_engine::ML_ENGINE_PREDICT,
            quotes = 2,
            url = "http://engine/predict",
            status = tracing::field::Empty
        );
        engine.in_scope(|| {
            tracing::Span::current().record("status", 503);
            // What `#[instrument(err)]` emits when the call returns an error.
            tracing::warn!(error = "the engine answered 503");
        });
        drop(engine);
        let _queue = tracing::info_span!(
            queue::SQS_ENQUEUE,
            quotes = 2,
            operation = "SendMessageBatch"
        )
        .entered();
    }

    #[test]
    fn a_sampled_invocation_sends_one_subsegment_per_span_under_the_function_segment() {
        let (daemon, layer) = capture();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            invocation(&format!(
                "Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a:0"
            ));
            invocation(&format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1"));
        });
        let documents = daemon.all();
        assert_eq!(documents.len(), 8, "{documents:#?}");
        let (first, second) = documents.split_at(4);
        for (docs, cold) in [(first, true), (second, false)] {
            let handler = docs.iter().find(|d| d["name"] == "## handler").unwrap();
            assert_eq!(handler["parent_id"], "53995c3f42cd8ad8");
            assert_eq!(handler["annotations"]["ColdStart"], cold);
            assert_eq!(handler["annotations"]["Service"], "score-test");
            assert_eq!(handler["metadata"]["default"]["requestId"], "r1");
            for doc in docs {
                assert_eq!(doc["type"], "subsegment");
                assert_eq!(doc["trace_id"], ROOT);
                assert_eq!(doc["id"].as_str().unwrap().len(), 16);
                assert!(doc["start_time"].as_f64() <= doc["end_time"].as_f64());
                if doc["name"] != "## handler" {
                    assert_eq!(doc["parent_id"], handler["id"]);
                    assert!(doc["start_time"].as_f64() >= handler["start_time"].as_f64());
                    assert!(doc["end_time"].as_f64() <= handler["end_time"].as_f64());
                }
            }
            let db = docs.iter().find(|d| d["name"] == "PostgreSQL").unwrap();
            assert_eq!(db["namespace"], "remote");
            assert_eq!(db["sql"]["database_type"], "PostgreSQL");
            assert_eq!(db["annotations"]["operation"], "pending");
            assert_eq!(db["metadata"]["default"]["ids"], 2);
            assert!(db.get("fault").is_none());

            let engine = docs.iter().find(|d| d["name"] == "ml-engine").unwrap();
            assert_eq!(engine["http"]["request"]["url"], "http://engine/predict");
            assert_eq!(engine["http"]["response"]["status"], 503);
            assert_eq!(engine["fault"], true);
            assert_eq!(
                engine["cause"]["exceptions"][0]["message"],
                "the engine answered 503"
            );

            let queue = docs.iter().find(|d| d["name"] == "SQS").unwrap();
            assert_eq!(queue["namespace"], "aws");
            assert_eq!(queue["aws"]["operation"], "SendMessageBatch");
        }
        assert_ne!(first[3]["id"], second[3]["id"]);
    }

    #[test]
    fn unsampled_or_untraced_invocations_send_nothing() {
        let (daemon, layer) = capture();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            invocation(&format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=0"));
            invocation("not a trace header");
            let _outside = tracing::info_span!(store::POSTGRES_INSERT).entered();
        });
        assert!(daemon.all().is_empty());
    }

    #[test]
    fn the_engines_status_sets_error_throttle_or_fault() {
        let (daemon, layer) = capture();
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let _in = tracing::info_span!(
                "Lambda runtime invoke",
                xrayTraceId = format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1").as_str()
            )
            .entered();
            for status in [200u16, 422, 429] {
                let _call =
                    tracing::info_span!(ml_engine::ML_ENGINE_PREDICT, status = status).entered();
            }
        });
        let flags: Vec<(Value, Value, Value)> = daemon
            .all()
            .into_iter()
            .filter(|d| d["name"] == "ml-engine")
            .map(|d| {
                (
                    d["error"].clone(),
                    d["throttle"].clone(),
                    d["fault"].clone(),
                )
            })
            .collect();
        assert_eq!(
            flags,
            [
                (Value::Null, Value::Null, Value::Null),
                (json!(true), Value::Null, Value::Null),
                (json!(true), json!(true), Value::Null),
            ]
        );
    }

    #[test]
    fn trace_headers_and_daemon_addresses_parse() {
        assert_eq!(
            TraceHeader::parse(&format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1")),
            Some(TraceHeader {
                root: ROOT.into(),
                parent: "53995c3f42cd8ad8".into(),
                sampled: true
            })
        );
        assert_eq!(TraceHeader::parse(&format!("Root={ROOT};Sampled=1")), None);
        assert_eq!(
            daemon_address("169.254.79.129:2000"),
            Some("169.254.79.129:2000".parse().unwrap())
        );
        assert_eq!(
            daemon_address("tcp:127.0.0.1:2000 udp:127.0.0.2:2000"),
            Some("127.0.0.2:2000".parse().unwrap())
        );
        assert_eq!(daemon_address("nowhere"), None);
    }
}
