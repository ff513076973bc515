//! The real `score` binary under a local stand-in of the Lambda Runtime API: every line it
//! writes is JSON, its log lines carry the request id, a handled batch emits its metrics in
//! CloudWatch Embedded Metric Format, a sampled invocation's spans reach the X-Ray daemon's
//! address as subsegments of the function's segment, and the batch it finishes is announced on
//! the event bus its environment names.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use testkit::{DaemonStandIn, RuntimeApi, TestEnv, engine_url, sqs_endpoint, sqs_event};
use tokio::io::AsyncReadExt;

// Two workers: the Runtime API stand-in answers while the test waits on the daemon stand-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_are_json_with_the_request_id_metrics_are_emf_and_spans_reach_xray() {
    let env = TestEnv::new().await;
    let bus = env.event_bus().await;
    let (_, messages) = env.queued_pending("telemetry", 20, 8).await;
    assert_eq!(messages.len(), 2);

    let trace_id = "1-5759e988-bd862e3fe1be46a994272793";
    let trace_header = format!("Root={trace_id};Parent=53995c3f42cd8ad8;Sampled=1");
    let mut runtime = RuntimeApi::start(
        vec![serde_json::to_value(sqs_event(&messages)).unwrap()],
        &trace_header,
    )
    .await;
    let daemon = DaemonStandIn::start(Duration::from_secs(5));
    let mut child = runtime
        .command(env!("CARGO_BIN_EXE_score"), "score-test")
        .env("AWS_XRAY_DAEMON_ADDRESS", daemon.address().to_string())
        .env("DATABASE_URL", &env.database.url)
        .env("ML_ENGINE_URL", engine_url())
        .env("EVENT_BUS_NAME", &bus.name)
        .env("AWS_ENDPOINT_URL_EVENTBRIDGE", sqs_endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the score binary starts");
    let answer = runtime
        .answer(Duration::from_secs(30))
        .await
        .expect("the function answers");
    assert!(!answer.error, "{}", answer.body);
    assert_eq!(
        serde_json::from_str::<Value>(&answer.body).unwrap()["batchItemFailures"],
        serde_json::json!([])
    );
    // The invocation's own subsegment closes after the answer is posted, before the next poll.
    let mut subsegments: Vec<Value> = Vec::new();
    while !subsegments.iter().any(|d| d["name"] == "## handler") {
        subsegments.push(daemon.next().expect("subsegments reach the daemon"));
    }
    child.kill().await.unwrap();
    let mut output = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .await
        .unwrap();

    let lines: Vec<Value> = output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let logs: Vec<&Value> = lines.iter().filter(|l| l.get("level").is_some()).collect();
    let batch = logs
        .iter()
        .find(|l| l["fields"]["message"] == "batch scored")
        .expect("a log line for the batch");
    assert_eq!(batch["span"]["requestId"], answer.request_id.as_str());
    assert_eq!(batch["fields"]["cold_start"], true);
    assert_eq!(batch["fields"]["scored"], 20);

    let emf = lines
        .iter()
        .find(|l| l.get("_aws").is_some())
        .expect("an EMF document");
    let directive = &emf["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "QuotePipeline");
    assert_eq!(
        directive["Dimensions"],
        serde_json::json!([["FunctionName"]])
    );
    assert!(emf["_aws"]["Timestamp"].as_u64().is_some());
    assert_eq!(emf["FunctionName"], "score-test");
    assert_eq!(emf["requestId"], answer.request_id.as_str());
    for metric in directive["Metrics"].as_array().unwrap() {
        let name = metric["Name"].as_str().unwrap();
        assert!(["Count", "Milliseconds"].contains(&metric["Unit"].as_str().unwrap()));
        assert!(
            emf[name].is_number() || emf[name].is_array(),
            "{name} has a value"
        );
    }
    assert_eq!(emf["QuotesScored"], 20.0);
    assert_eq!(emf["BatchSize"], 2.0);
    assert_eq!(emf["BatchesCompleted"], 1.0);
    assert_eq!(emf["BatchEventsPublished"], 1.0);
    let events = bus.received().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail"]["scored"], 20);
    assert!(emf["DatabaseTime"].is_number());
    assert!(emf["MlEngineLatency"].is_number() || emf["MlEngineLatency"].is_array());

    let handler = subsegments
        .iter()
        .find(|d| d["name"] == "## handler")
        .expect("the invocation's subsegment");
    assert_eq!(handler["parent_id"], "53995c3f42cd8ad8");
    assert_eq!(handler["annotations"]["ColdStart"], true);
    assert_eq!(handler["annotations"]["Service"], "score-test");
    assert_eq!(
        handler["metadata"]["default"]["requestId"],
        answer.request_id.as_str()
    );
    let by_id: std::collections::HashMap<&str, &Value> = subsegments
        .iter()
        .map(|d| (d["id"].as_str().unwrap(), d))
        .collect();
    for doc in &subsegments {
        assert_eq!(doc["type"], "subsegment");
        assert_eq!(doc["trace_id"], trace_id);
        assert!(doc["start_time"].as_f64().unwrap() <= doc["end_time"].as_f64().unwrap());
        assert!(doc.get("fault").is_none(), "{doc}");
        let mut ancestor = doc;
        while ancestor["name"] != "## handler" {
            ancestor = *by_id
                .get(ancestor["parent_id"].as_str().unwrap())
                .unwrap_or_else(|| panic!("{doc} is not under the handler"));
        }
    }
    let operations: Vec<&str> = subsegments
        .iter()
        .filter(|d| d["name"] == "PostgreSQL")
        .map(|d| d["annotations"]["operation"].as_str().unwrap())
        .collect();
    assert_eq!(operations, ["pending", "record", "events_sent"]);
    let put = subsegments
        .iter()
        .find(|d| d["name"] == "EventBridge")
        .expect("the PutEvents call's subsegment");
    assert_eq!(
        (&put["namespace"], &put["aws"]["operation"]),
        (&serde_json::json!("aws"), &serde_json::json!("PutEvents"))
    );
    let engine = subsegments
        .iter()
        .find(|d| d["name"] == "ml-engine")
        .expect("the ML engine call's subsegment");
    assert_eq!(engine["namespace"], "remote");
    assert_eq!(engine["http"]["response"]["status"], 200);
    assert!(
        engine["http"]["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/predict/batch")
    );
}
