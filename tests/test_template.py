"""Invariants of template.yaml (the AWS SAM template), checked offline.

cfn-lint and `sam validate --lint` check that the template is valid CloudFormation; these
tests check that it still says what the pipeline relies on: every crate is deployed, the SQS
settings that keep a quote from being lost or stuck, reconcile's age beyond the queue's
redelivery, batch events put on one bus by the functions that send them only, the authorizer
on every route, CORS only for the origins given, the alarms an operator needs (each
explained, here and in the README), generate's reserved concurrency, the ML engine deployed
behind an IAM function URL only score may call, and no local-development switch.

Run with `scripts/checks`, or `.venv/bin/python -m pytest tests/test_template.py`.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
from cfnlint.decode import decode_str

ROOT = Path(__file__).resolve().parent.parent
# TEMPLATE_UNDER_TEST: another file to check (used to try the tests on broken templates).
TEMPLATE_PATH = Path(os.environ.get("TEMPLATE_UNDER_TEST", ROOT / "template.yaml"))

ROUTES = {
    ("POST", "/quotes"),
    ("POST", "/quotes/generate-batch"),
    ("POST", "/quotes/import"),
    ("GET", "/quotes/{id}"),
    ("GET", "/quotes"),
    ("GET", "/quotes/batches/{id}"),
}
# Every function reads these; see shared/src/platform/config.rs.
COMMON_ENV = {
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USER",
    "DB_IAM_AUTH",
    "DB_MAX_CONNECTIONS",
    "RUST_LOG",
    "METRICS_NAMESPACE",
}


def _load() -> dict:
    template, errors = decode_str(TEMPLATE_PATH.read_text())
    assert not errors, [str(e) for e in errors]
    return template


TEMPLATE = _load()
RESOURCES: dict = TEMPLATE["Resources"]
PARAMETERS: dict = TEMPLATE.get("Parameters", {})
GLOBALS: dict = TEMPLATE.get("Globals", {}).get("Function", {})


def resources_of(kind: str) -> dict[str, dict]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


FUNCTIONS = resources_of("AWS::Serverless::Function")
# The ML engine (ml-engine/, Python) is the one function that is not a crate of functions/.
ENGINE = "MlEngineFunction"
RUST_FUNCTIONS = {name: f for name, f in FUNCTIONS.items() if name != ENGINE}


def prop(function: dict, key: str):
    """A function's property as deployed: its own, else the Globals' one."""
    return function.get("Properties", {}).get(key, GLOBALS.get(key))


def env(function: dict) -> dict:
    """A function's environment variables, the Globals' merged with its own."""
    merged = dict(GLOBALS.get("Environment", {}).get("Variables", {}))
    merged.update(function.get("Properties", {}).get("Environment", {}).get("Variables", {}))
    return merged


def makefile_recipe(target):
    """The recipe of `target` in the root Makefile (sam build's makefile build method)."""
    text = (ROOT / "Makefile").read_text()
    match = re.search(rf"^{re.escape(target)}:\n((?:\t.*\n?)+)", text, re.M)
    assert match, f"the Makefile has no {target} target"
    return match.group(1).replace("\\\n", " ")


def built_binary(logical_id, function):
    """The binary a function's build makes: cargo-lambda's Binary, or the Makefile's -p."""
    metadata = function.get("Metadata", {})
    if metadata.get("BuildMethod") == "makefile":
        match = re.search(r"\$\(CARGO_LAMBDA\) -p (\S+)", makefile_recipe(f"build-{logical_id}"))
        return match and match.group(1)
    return metadata.get("BuildProperties", {}).get("Binary")


def function_by_binary(binary: str) -> dict:
    for name, function in FUNCTIONS.items():
        if built_binary(name, function) == binary:
            return function
    raise AssertionError(f"no function in template.yaml builds the binary {binary!r}")


def ref_name(value) -> str | None:
    """The logical name a `!Ref X` or `!GetAtt X.Attr` points at."""
    if isinstance(value, dict) and len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref":
            return arg
        if key == "Fn::GetAtt":
            return arg[0] if isinstance(arg, list) else arg.split(".")[0]
    return None


def highest(value) -> int:
    """The largest value a number can take: itself, or a parameter's MaxValue."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    name = ref_name(value)
    assert name in PARAMETERS, f"{value!r} is neither a number nor a parameter"
    assert "MaxValue" in PARAMETERS[name], f"parameter {name} needs a MaxValue to be checked"
    return int(PARAMETERS[name]["MaxValue"])


def lowest(value) -> int:
    """The smallest value a number can take: itself, or a parameter's MinValue."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    name = ref_name(value)
    assert name in PARAMETERS, f"{value!r} is neither a number nor a parameter"
    assert "MinValue" in PARAMETERS[name], f"parameter {name} needs a MinValue to be checked"
    return int(PARAMETERS[name]["MinValue"])


def evaluate(expression, parameters: dict):
    """The value of a condition expression for the given parameter values (a CommaDelimitedList
    as a Python list), for the functions the template's conditions use."""
    if not isinstance(expression, dict):
        return expression
    (key, arg), = expression.items()
    if key == "Ref":
        return parameters[arg]
    if key == "Condition":
        return evaluate(TEMPLATE["Conditions"][arg], parameters)
    if key == "Fn::Not":
        return not evaluate(arg[0], parameters)
    if key == "Fn::And":
        return all(evaluate(a, parameters) for a in arg)
    if key == "Fn::Or":
        return any(evaluate(a, parameters) for a in arg)
    if key == "Fn::Equals":
        return evaluate(arg[0], parameters) == evaluate(arg[1], parameters)
    if key == "Fn::Join":
        return arg[0].join(evaluate(arg[1], parameters))
    raise AssertionError(f"evaluate() does not know {key}")


def parameter_default(name: str):
    """A parameter's default as CloudFormation reads it (a CommaDelimitedList as a list)."""
    parameter = PARAMETERS[name]
    default = parameter["Default"]
    return default.split(",") if parameter["Type"] == "CommaDelimitedList" else default


def crate_binaries() -> dict[str, str]:
    """Each crate directory under functions/ and the binary it builds."""
    crates = {}
    for manifest in sorted((ROOT / "functions").glob("*/Cargo.toml")):
        cargo = tomllib.loads(manifest.read_text())
        bins = [b["name"] for b in cargo.get("bin", [])] or [cargo["package"]["name"]]
        assert len(bins) == 1, f"{manifest} builds {bins}: one Lambda binary per crate"
        crates[manifest.parent.name] = bins[0]
    return crates


def sqs_triggers() -> list[tuple[str, dict, str]]:
    """(function's logical name, the trigger's properties, the queue's logical name) for every
    SQS trigger, declared as an event source mapping or as a SAM `SQS` event."""
    triggers = []
    for mapping in resources_of("AWS::Lambda::EventSourceMapping").values():
        props = mapping["Properties"]
        queue = ref_name(props["EventSourceArn"])
        if RESOURCES.get(queue, {}).get("Type") == "AWS::SQS::Queue":
            triggers.append((ref_name(props["FunctionName"]), props, queue))
    for name, function in FUNCTIONS.items():
        for event in function.get("Properties", {}).get("Events", {}).values():
            if event["Type"] == "SQS":
                props = event["Properties"]
                triggers.append((name, props, ref_name(props["Queue"])))
    return triggers


# ------------------------------------------------------------------------------ functions


def test_every_crate_is_a_function_and_every_function_a_crate():
    crates = crate_binaries()
    assert crates, "no crate under functions/"
    binaries = {built_binary(name, f) for name, f in RUST_FUNCTIONS.items()}
    assert binaries == set(crates.values()), (
        f"crates under functions/ build {sorted(crates.values())}, "
        f"template.yaml deploys {sorted(map(str, binaries))}"
    )
    assert len(binaries) == len(RUST_FUNCTIONS), "two functions build the same binary"


@pytest.mark.parametrize("name", sorted(RUST_FUNCTIONS))
def test_function_is_a_cargo_lambda_build_on_al2023(name):
    function = FUNCTIONS[name]
    assert prop(function, "Runtime") == "provided.al2023"
    assert prop(function, "Handler") == "bootstrap"
    assert prop(function, "CodeUri") == "."
    assert prop(function, "Architectures") == [{"Ref": "Architecture"}]
    assert PARAMETERS["Architecture"]["Default"] == "arm64"
    assert set(PARAMETERS["Architecture"]["AllowedValues"]) == {"arm64", "x86_64"}
    assert function["Metadata"]["BuildMethod"] in ("rust-cargolambda", "makefile")
    if function["Metadata"]["BuildMethod"] == "makefile":
        assert "$(CARGO_LAMBDA)" in makefile_recipe(f"build-{name}")
        assert "cargo lambda build" in (ROOT / "Makefile").read_text()
    assert prop(function, "Tracing") == "Active"
    assert prop(function, "LoggingConfig")["LogFormat"] == "JSON"
    assert isinstance(function["Properties"].get("MemorySize"), int)
    assert isinstance(function["Properties"].get("Timeout"), int)


@pytest.mark.parametrize("name", sorted(RUST_FUNCTIONS))
def test_function_has_its_own_role_and_is_in_the_vpc(name):
    function = FUNCTIONS[name]
    assert "Role" not in function["Properties"], "each function gets its own SAM-made role"
    assert "Policies" in function["Properties"]
    vpc = prop(function, "VpcConfig")
    assert vpc and vpc.get("SubnetIds") and vpc.get("SecurityGroupIds")


@pytest.mark.parametrize("name", sorted(RUST_FUNCTIONS))
def test_function_connects_to_postgres_with_iam_tokens_and_no_password(name):
    variables = env(FUNCTIONS[name])
    missing = COMMON_ENV - variables.keys()
    assert not missing, f"{name} lacks {sorted(missing)}"
    assert variables["DB_IAM_AUTH"] == "true"
    assert variables["METRICS_NAMESPACE"] == "QuotePipeline"
    assert int(variables["DB_MAX_CONNECTIONS"]) <= 5
    assert ref_name(variables["DB_HOST"]) in resources_of("AWS::RDS::DBProxy")
    for key in variables:
        assert not re.search(r"PASSWORD|SECRET|DATABASE_URL", key), f"{name} has {key}"


def test_queue_urls_go_to_the_functions_that_enqueue():
    for binary in ("generate", "reconcile"):
        assert "QUOTES_QUEUE_URL" in env(function_by_binary(binary))
    score = env(function_by_binary("score"))
    assert {"ML_ENGINE_URL", "SCORING_MODE"} <= score.keys()
    assert PARAMETERS["ScoringMode"]["Default"] == "embedded"
    reconcile = env(function_by_binary("reconcile"))
    assert {"RECONCILE_MIN_AGE_SECS", "RECONCILE_MAX_ATTEMPTS", "RECONCILE_BATCH_SIZE"} <= reconcile.keys()


def test_reconcile_runs_on_a_schedule():
    events = function_by_binary("reconcile")["Properties"].get("Events", {}).values()
    assert any(e["Type"] in ("Schedule", "ScheduleV2") for e in events)


# ------------------------------------------------------------------------------ queues


def test_score_is_fed_by_sqs():
    score = next(n for n, f in FUNCTIONS.items() if f is function_by_binary("score"))
    assert [t for t in sqs_triggers() if t[0] == score], "score has no SQS trigger"


@pytest.mark.parametrize("function,trigger,queue", sqs_triggers())
def test_sqs_trigger_reports_partial_failures_and_caps_concurrency(function, trigger, queue):
    assert "ReportBatchItemFailures" in trigger.get("FunctionResponseTypes", [])
    maximum = trigger.get("ScalingConfig", {}).get("MaximumConcurrency")
    assert maximum is not None, f"{function}'s SQS trigger has no ScalingConfig.MaximumConcurrency"
    assert lowest(maximum) >= 2


@pytest.mark.parametrize("function,trigger,queue", sqs_triggers())
def test_visibility_timeout_covers_six_function_timeouts_and_the_batching_window(
    function, trigger, queue
):
    timeout = prop(FUNCTIONS[function], "Timeout")
    window = highest(trigger.get("MaximumBatchingWindowInSeconds", 0))
    visibility = RESOURCES[queue]["Properties"].get("VisibilityTimeout", 30)
    assert visibility >= 6 * timeout + window, (
        f"{queue} VisibilityTimeout {visibility} < 6 x {function} Timeout {timeout} + window {window}"
    )


@pytest.mark.parametrize("function,trigger,queue", sqs_triggers())
def test_queue_has_a_dead_letter_queue_after_five_receives(function, trigger, queue):
    props = RESOURCES[queue]["Properties"]
    redrive = props.get("RedrivePolicy")
    assert redrive, f"{queue} has no RedrivePolicy"
    assert int(redrive["maxReceiveCount"]) == 5
    dlq = ref_name(redrive["deadLetterTargetArn"])
    assert RESOURCES.get(dlq, {}).get("Type") == "AWS::SQS::Queue"
    main_retention = props.get("MessageRetentionPeriod", 345600)
    dlq_retention = RESOURCES[dlq]["Properties"].get("MessageRetentionPeriod", 345600)
    assert main_retention >= 4 * 86400, "the queue must outlast an outage of days"
    assert dlq_retention > main_retention, "a message must not expire sooner in the DLQ"


def test_reconcile_does_not_resend_a_message_that_is_still_being_retried():
    """A message is received up to maxReceiveCount times, each hiding it for the visibility
    timeout, after waiting up to the batching window; redelivery does not move a quote's
    last_enqueued_at. Reconcile sending it sooner would charge live quotes attempts and fail
    them while their message is still being received."""
    min_age = env(function_by_binary("reconcile"))["RECONCILE_MIN_AGE_SECS"]
    windows = []
    for function, trigger, queue in sqs_triggers():
        props = RESOURCES[queue]["Properties"]
        receives = int(props["RedrivePolicy"]["maxReceiveCount"])
        visibility = props.get("VisibilityTimeout", 30)
        window = receives * visibility + highest(trigger.get("MaximumBatchingWindowInSeconds", 0))
        windows.append(window)
        assert lowest(min_age) >= window, (
            f"RECONCILE_MIN_AGE_SECS can be {lowest(min_age)} s, under {queue}'s redelivery window "
            f"{receives} x {visibility} s + the batching window = {window} s"
        )
    # The default leaves, on top, the queue age the operator tolerates before an alarm.
    name = ref_name(min_age)
    if name:
        tolerated = int(PARAMETERS["QueueAgeAlarmSeconds"]["Default"])
        assert int(PARAMETERS[name]["Default"]) >= max(windows) + tolerated


# ------------------------------------------------------------------------------ HTTP API


def test_the_api_has_a_jwt_default_authorizer():
    apis = resources_of("AWS::Serverless::HttpApi")
    assert len(apis) == 1
    auth = next(iter(apis.values()))["Properties"]["Auth"]
    default = auth.get("DefaultAuthorizer")
    assert default and default != "NONE"
    jwt = auth["Authorizers"][default]["JwtConfiguration"]
    assert jwt.get("issuer") and jwt.get("audience")


def test_every_route_is_on_that_api_and_none_opts_out_of_the_authorizer():
    api, resource = next(iter(resources_of("AWS::Serverless::HttpApi").items()))
    default = resource["Properties"]["Auth"]["DefaultAuthorizer"]
    routes = set()
    for name, function in FUNCTIONS.items():
        for event_name, event in function.get("Properties", {}).get("Events", {}).items():
            assert event["Type"] != "Api", f"{name}.{event_name}: REST API events bypass the HTTP API"
            if event["Type"] != "HttpApi":
                continue
            props = event["Properties"]
            # An HttpApi event without ApiId lands on SAM's implicit API, with no authorizer.
            assert ref_name(props.get("ApiId")) == api, f"{name}.{event_name} is not on {api}"
            authorizer = props.get("Auth", {}).get("Authorizer")
            assert authorizer in (None, default), (
                f"{name}.{event_name} overrides the authorizer with {authorizer!r}"
            )
            routes.add((props["Method"].upper(), props["Path"]))
    assert routes == ROUTES


def cors_configuration():
    api = next(iter(resources_of("AWS::Serverless::HttpApi").values()))
    return api["Properties"].get("CorsConfiguration")


def test_cors_is_configured_only_for_the_origins_given():
    parameter = PARAMETERS["CorsAllowedOrigins"]
    assert parameter["Type"] == "CommaDelimitedList" and parameter["Default"] == ""
    cors = cors_configuration()
    # An !If whose false branch removes the property: no CORS configuration at all.
    assert isinstance(cors, dict) and list(cors) == ["Fn::If"], cors
    condition, configured, otherwise = cors["Fn::If"]
    assert otherwise == {"Ref": "AWS::NoValue"}
    when = TEMPLATE["Conditions"][condition]
    assert evaluate(when, {"CorsAllowedOrigins": parameter_default("CorsAllowedOrigins")}) is False
    assert evaluate(when, {"CorsAllowedOrigins": [""]}) is False
    assert evaluate(when, {"CorsAllowedOrigins": ["https://app.example.com"]}) is True
    assert evaluate(when, {"CorsAllowedOrigins": ["https://a.example", "https://b.example"]}) is True
    # Exactly the origins given: no wildcard, and credentials never allowed to any origin.
    assert configured["AllowOrigins"] == {"Ref": "CorsAllowedOrigins"}
    assert not configured.get("AllowCredentials")
    assert "*" not in str(configured)
    # What a browser needs to call every route and read the answers that matter.
    methods = {m.upper() for m in configured["AllowMethods"]}
    assert {method for method, _ in ROUTES} | {"OPTIONS"} <= methods
    headers = {h.lower() for h in configured["AllowHeaders"]}
    assert {"authorization", "content-type", "idempotency-key"} <= headers
    exposed = {h.lower() for h in configured["ExposeHeaders"]}
    assert {"retry-after", "idempotent-replayed"} <= exposed
    assert 0 < int(configured["MaxAge"]) <= 86400


def test_nothing_reaches_a_function_around_the_authorizer():
    for kind in ("AWS::Lambda::Url", "AWS::ApiGatewayV2::Route", "AWS::ApiGatewayV2::Api",
                 "AWS::Serverless::Api", "AWS::ApiGateway::RestApi", "AWS::Lambda::Permission"):
        assert not resources_of(kind), f"template.yaml has a {kind}"
    # One function URL, the ML engine's, which answers only requests signed by an IAM
    # principal allowed to call it (see test_only_score_may_call_the_engines_function_url).
    for name, function in RUST_FUNCTIONS.items():
        assert "FunctionUrlConfig" not in function["Properties"], f"{name} has a function URL"
    assert FUNCTIONS[ENGINE]["Properties"]["FunctionUrlConfig"] == {"AuthType": "AWS_IAM"}
    assert "FunctionUrlConfig" not in GLOBALS


# ------------------------------------------------------------------------------ database


def test_the_proxy_requires_tls_and_iam():
    proxies = resources_of("AWS::RDS::DBProxy")
    assert len(proxies) == 1
    props = next(iter(proxies.values()))["Properties"]
    assert props["RequireTLS"] is True
    assert props["Auth"] and all(a["IAMAuth"] == "REQUIRED" for a in props["Auth"])


def test_a_created_database_is_encrypted_private_and_its_password_generated():
    for db in resources_of("AWS::RDS::DBInstance").values():
        props = db["Properties"]
        assert props["StorageEncrypted"] is True
        assert props["PubliclyAccessible"] is False
        assert props.get("ManageMasterUserPassword") is True or "{{resolve:secretsmanager:" in str(
            props.get("MasterUserPassword")
        )


# ------------------------------------------------------------------------------ no local switch


def test_no_local_development_switch_anywhere():
    text = TEMPLATE_PATH.read_text().lower()
    for forbidden in ("local-identity", "x-local-user", "local_identity"):
        assert forbidden not in text, f"template.yaml mentions {forbidden!r}"
    for name, function in FUNCTIONS.items():
        for key in env(function):
            assert not key.upper().startswith("LOCAL_"), f"{name} has {key}"
            assert not key.upper().startswith("AWS_ENDPOINT_URL"), f"{name} points at an emulator: {key}"
    assert not re.search(r"^\s*LOCAL_\w*\s*:", TEMPLATE_PATH.read_text(), re.MULTILINE)


# ------------------------------------------------------------------------------ operations


ALARMS = resources_of("AWS::CloudWatch::Alarm")


def alarm_metrics(alarm: dict) -> list[tuple[str, str, dict]]:
    """(namespace, metric name, {dimension: value}) of each metric an alarm reads: its own, or
    those of its metric math."""
    props = alarm["Properties"]
    if "MetricName" in props:
        stats = [props]
    else:
        stats = [m["MetricStat"]["Metric"] for m in props["Metrics"] if "MetricStat" in m]
    return [
        (s["Namespace"], s["MetricName"], {d["Name"]: d["Value"] for d in s.get("Dimensions", [])})
        for s in stats
    ]


def alarms_on(namespace: str, metric: str, **dimensions) -> list[str]:
    """The alarms reading `metric` with exactly these dimension values."""
    return [
        name
        for name, alarm in ALARMS.items()
        if any((ns, m, dims) == (namespace, metric, dimensions) for ns, m, dims in alarm_metrics(alarm))
    ]


def test_alarms_cover_the_dead_letter_queue_queue_age_and_every_function():
    alarms = [a["Properties"] for a in ALARMS.values()]
    watched = {
        (metric, ref_name(value))
        for alarm in ALARMS.values()
        for _, metric, dims in alarm_metrics(alarm)
        for value in dims.values()
    }
    for _, _, queue in sqs_triggers():
        dlq = ref_name(RESOURCES[queue]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
        assert ("ApproximateNumberOfMessagesVisible", dlq) in watched
        assert ("ApproximateAgeOfOldestMessage", queue) in watched
    for name in FUNCTIONS:
        assert ("Errors", name) in watched, f"no Errors alarm on {name}"
        assert ("Throttles", name) in watched, f"no Throttles alarm on {name}"
    assert all(a.get("AlarmActions") for a in alarms)


def test_the_apis_5xx_rate_is_alarmed():
    """generate answers an outage with a 503 rather than failing, so Lambda's Errors never
    sees it: the API's 5xx, as a share of its requests, is what does."""
    api, resource = next(iter(resources_of("AWS::Serverless::HttpApi").items()))
    stage = resource["Properties"]["StageName"]
    dims = {"ApiId": {"Ref": api}, "Stage": stage}
    (alarm,) = alarms_on("AWS/ApiGateway", "5xx", **dims)
    assert alarm in alarms_on("AWS/ApiGateway", "Count", **dims), "a rate: 5xx over requests"
    props = ALARMS[alarm]["Properties"]
    expression = next(m["Expression"] for m in props["Metrics"] if m.get("ReturnData"))
    assert "/" in expression, expression
    threshold = PARAMETERS[ref_name(props["Threshold"])]
    assert 0 < int(threshold["Default"]) <= 10 and int(threshold["MaxValue"]) <= 100


def test_failed_quotes_engine_errors_and_refused_premiums_are_alarmed():
    namespace = GLOBALS["Environment"]["Variables"]["METRICS_NAMESPACE"]
    names = {built_binary(n, f): n for n, f in FUNCTIONS.items()}
    # QuotesFailed as shared/src/platform/metrics.rs emits it: from score and from reconcile.
    for binary in ("score", "reconcile"):
        assert alarms_on(namespace, "QuotesFailed", FunctionName={"Ref": names[binary]}), (
            f"no alarm on {binary}'s QuotesFailed"
        )
    assert alarms_on(namespace, "MlEngineErrors", FunctionName={"Ref": names["score"]})
    # A premium at or below 0 refused by score: never written, and someone must look.
    assert alarms_on(namespace, "PremiumsRefused", FunctionName={"Ref": names["score"]})


def test_a_shadow_that_fails_is_alarmed_when_there_is_one():
    namespace = GLOBALS["Environment"]["Variables"]["METRICS_NAMESPACE"]
    names = {built_binary(n, f): n for n, f in FUNCTIONS.items()}
    (alarm,) = alarms_on(namespace, "ShadowFailures", FunctionName={"Ref": names["score"]})
    assert ALARMS[alarm].get("Condition") == "ShadowScoringEnabled"


@pytest.mark.parametrize("name", sorted(ALARMS))
def test_every_alarm_says_what_it_means_and_what_to_do(name):
    description = ALARMS[name]["Properties"].get("AlarmDescription", "")
    assert description.startswith("Means: ") and "To do: " in description, (
        f"{name}: AlarmDescription should read 'Means: ... To do: ...'"
    )
    assert len(description) <= 1024  # CloudFormation's limit
    props = ALARMS[name]["Properties"]
    assert props.get("AlarmActions") and props.get("OKActions")
    assert props.get("TreatMissingData") == "notBreaching"


def test_the_readme_lists_every_alarm_and_what_to_do():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^### Operations\n(.*?)(?=^#)", readme, re.M | re.S)
    assert match, "the README has no '### Operations' section"
    listed = set(re.findall(r"^- \*\*`(\w+)`\*\*", match.group(1), re.M))
    assert listed == set(ALARMS), (
        f"not in the README's operations list: {sorted(set(ALARMS) - listed)}; "
        f"listed but not in the template: {sorted(listed - set(ALARMS))}"
    )


def test_generate_has_a_reserved_concurrency_so_it_cannot_starve_score_and_reconcile():
    generate = function_by_binary("generate")
    reserved = generate["Properties"].get("ReservedConcurrentExecutions")
    name = ref_name(reserved)
    assert name in PARAMETERS, "ReservedConcurrentExecutions should be a template parameter"
    parameter = PARAMETERS[name]
    # 0 would stop generate; Lambda keeps 100 of an account's default 1,000 unreserved.
    assert 1 <= int(parameter["MinValue"]) <= int(parameter["Default"]) <= int(parameter["MaxValue"]) <= 900
    # The default serves the API's default rate with room to spare (a warm call takes tens of
    # milliseconds) and keeps the proxy's client connections modest.
    rate = int(PARAMETERS["ApiThrottlingRateLimit"]["Default"])
    assert int(parameter["Default"]) >= rate * 0.1
    assert int(parameter["Default"]) * int(env(generate)["DB_MAX_CONNECTIONS"]) <= 100
    # The others take from the unreserved pool that generate no longer can exhaust.
    for other, function in FUNCTIONS.items():
        if function is not generate:
            assert function["Properties"].get("ReservedConcurrentExecutions") != 0, other


def test_the_price_validity_is_a_parameter_given_to_score_alone_within_the_configs_bounds():
    score = function_by_binary("score")
    assert ref_name(env(score)["PRICE_VALIDITY_DAYS"]) == "PriceValidityDays"
    for name, function in FUNCTIONS.items():
        if function is not score:
            assert "PRICE_VALIDITY_DAYS" not in env(function), name
    # The template accepts exactly what score's configuration accepts, with the same default.
    config = (ROOT / "shared/src/platform/config.rs").read_text()
    found = re.search(r'env\.number\("PRICE_VALIDITY_DAYS", (\d+), (\d+), (\d+)\)', config)
    assert found, "score reads PRICE_VALIDITY_DAYS with env.number(name, default, min, max)"
    default, low, high = map(int, found.groups())
    parameter = PARAMETERS["PriceValidityDays"]
    assert (int(parameter["Default"]), int(parameter["MinValue"]), int(parameter["MaxValue"])) == (
        default, low, high)


def test_shadow_scoring_is_off_by_default_and_names_the_shadow_model_shipped_in_scores_zip():
    score = function_by_binary("score")
    (condition, enabled, disabled) = env(score)["SHADOW_MODEL_DIR"]["Fn::If"]
    assert disabled == {"Ref": "AWS::NoValue"}, "no shadow unless asked for"
    assert PARAMETERS["ShadowScoring"]["Default"] == "false"
    for value, on in (("false", False), ("true", True)):
        assert evaluate(TEMPLATE["Conditions"][condition], {"ShadowScoring": value}) is on
    # The directory the Makefile copies ml-engine/shadow-model/ to, beside the live model.
    assert enabled == env(score)["MODEL_DIR"].replace("/model", "/shadow-model")
    recipe = makefile_recipe("build-ScoreFunction")
    assert "$(COPY_SHADOW_MODEL)" in recipe
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    copy = re.search(r"^COPY_SHADOW_MODEL = (.*)$", makefile, re.M).group(1)
    assert "ml-engine/shadow-model" in copy and "$(ARTIFACTS_DIR)/ml-engine/shadow-model" in copy
    for name, function in FUNCTIONS.items():
        if function is not score:
            assert "SHADOW_MODEL_DIR" not in env(function), name


def test_shadow_prices_are_kept_for_a_parameters_days_within_reconciles_bounds():
    reconcile = function_by_binary("reconcile")
    assert ref_name(env(reconcile)["SHADOW_RETENTION_DAYS"]) == "ShadowRetentionDays"
    config = (ROOT / "shared/src/platform/config.rs").read_text()
    found = re.search(r'env\.number\("SHADOW_RETENTION_DAYS", (\d+), (\d+), (\d+)\)', config)
    assert found, "reconcile reads SHADOW_RETENTION_DAYS with env.number(name, default, min, max)"
    parameter = PARAMETERS["ShadowRetentionDays"]
    assert (int(parameter["Default"]), int(parameter["MinValue"]), int(parameter["MaxValue"])) == (
        tuple(map(int, found.groups())))


def test_the_application_role_may_write_read_and_purge_shadow_prices_and_nothing_more():
    migration = (ROOT / "migrations/20261129000006_shadow_prices.sql").read_text()
    assert re.search(r"^GRANT SELECT, INSERT, DELETE ON quote_shadow_prices TO quote_app;$",
                     migration, re.M)
    assert "UPDATE" not in re.sub(r"--.*", "", migration)


def test_outputs_name_the_api_and_both_queues():
    outputs = TEMPLATE["Outputs"]
    assert {"ApiUrl", "QuotesQueueUrl", "QuotesDeadLetterQueueUrl", "EventBusArn"} <= outputs.keys()


# ------------------------------------------------------------------------------ batch events


def statements(function: dict) -> list[dict]:
    """A function's policy statements, a conditional one (`Fn::If`) as it is written."""
    return [
        s
        for policy in function["Properties"].get("Policies", [])
        if isinstance(policy, dict)
        for s in policy.get("Statement", [])
    ]


def actions(statement: dict) -> list[str]:
    """A statement's actions; a conditional statement's, in either branch."""
    if "Fn::If" in statement:
        return [a for branch in statement["Fn::If"][1:] if "Action" in branch for a in actions(branch)]
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


def the_event_bus() -> tuple[str, dict]:
    """The bus a stack creates, and the `EventBusName` it stands in for when that is empty."""
    (bus, resource), = resources_of("AWS::Events::EventBus").items()
    assert resource.get("Condition") == "CreateEventBus"
    condition = TEMPLATE["Conditions"]["CreateEventBus"]
    assert condition == {"Fn::Equals": [{"Ref": "EventBusName"}, ""]}, condition
    assert PARAMETERS["EventBusName"]["Default"] == ""
    return bus, resource


def test_score_and_reconcile_name_the_bus_and_may_put_events_on_it_and_no_other():
    bus, _ = the_event_bus()
    for binary in ("score", "reconcile"):
        function = function_by_binary(binary)
        name = env(function)["EVENT_BUS_NAME"]
        assert name == {"Fn::If": ["CreateEventBus", {"Ref": bus}, {"Ref": "EventBusName"}]}, name
        puts = [s for s in statements(function) if any(a.startswith("events:") for a in actions(s))]
        assert len(puts) == 1, f"{binary}: one statement for EventBridge"
        (put,) = puts
        assert put["Effect"] == "Allow" and actions(put) == ["events:PutEvents"], put
        created, named = put["Resource"]["Fn::If"][1:]
        assert put["Resource"]["Fn::If"][0] == "CreateEventBus"
        assert ref_name(created) == bus, created
        assert sub_text(named).endswith(":event-bus/${EventBusName}"), named


def test_no_other_function_touches_eventbridge():
    for name, function in FUNCTIONS.items():
        if built_binary(name, function) in ("score", "reconcile"):
            continue
        for statement in statements(function):
            assert not any(a.startswith("events:") for a in actions(statement)), name


def test_batch_events_not_published_are_alarmed_from_both_publishers():
    namespace = GLOBALS["Environment"]["Variables"]["METRICS_NAMESPACE"]
    names = {built_binary(n, f): n for n, f in FUNCTIONS.items()}
    for binary in ("score", "reconcile"):
        assert alarms_on(
            namespace, "BatchEventPublishFailures", FunctionName={"Ref": names[binary]}
        ), f"no alarm on {binary}'s BatchEventPublishFailures"


# ------------------------------------------------------------------------------ schema and roles

MIGRATIONS = ROOT / "migrations"


def sub_text(value) -> str:
    """The text of a `!Sub` (either form), or of a plain string."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        arg = value["Fn::Sub"]
        return arg[0] if isinstance(arg, list) else arg
    return value if isinstance(value, str) else ""


def connect_users(function: dict) -> list[str]:
    """The database users a function's role may sign IAM tokens for (rds-db:connect)."""
    users = []
    for policy in function["Properties"].get("Policies", []):
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            actions = statement.get("Action")
            actions = actions if isinstance(actions, list) else [actions]
            if "rds-db:connect" in actions:
                users.append(sub_text(statement["Resource"]).rsplit("/", 1)[-1])
    return users


def master_user():
    """The created instance's master user (a `!Ref` to a parameter): the schema's owner."""
    (db,) = resources_of("AWS::RDS::DBInstance").values()
    return db["Properties"]["MasterUsername"]


def migration_roles() -> set[str]:
    """The roles the migrations create."""
    text = "\n".join(p.read_text() for p in sorted(MIGRATIONS.glob("*.sql")))
    return set(re.findall(r"CREATE ROLE (\w+)", text))


def schema_resources() -> dict[str, dict]:
    return {
        name: r
        for name, r in RESOURCES.items()
        if r["Type"] == "AWS::CloudFormation::CustomResource" or r["Type"].startswith("Custom::")
    }


def migrate_function_name() -> str:
    return next(n for n, f in FUNCTIONS.items() if f is function_by_binary("migrate"))


def test_the_schema_is_applied_by_the_migrate_function_on_every_deploy():
    (resource,) = schema_resources().values()
    props = resource["Properties"]
    migrate = migrate_function_name()
    token = props["ServiceToken"]
    # The function's own ARN: CloudFormation refuses a ServiceToken that changes.
    assert token == {"Fn::GetAtt": [migrate, "Arn"]}, token
    # A property that changes with the function's code (which embeds the migrations), so a
    # deploy with new migrations updates the resource and runs them.
    assert FUNCTIONS[migrate]["Properties"].get("AutoPublishAlias")
    assert {"Ref": f"{migrate}.Version"} in props.values(), props


def test_the_schema_is_applied_after_the_proxy_can_reach_the_database():
    (resource,) = schema_resources().values()
    depends = resource.get("DependsOn", [])
    depends = depends if isinstance(depends, list) else [depends]
    (target_group,) = resources_of("AWS::RDS::DBProxyTargetGroup")
    assert target_group in depends, "the custom resource must wait for the proxy's target"
    # The network paths function -> proxy -> database are open before it connects.
    for name in ("DatabaseFromProxyIngress", "ProxyFromFunctionsIngress", "FunctionToProxyEgress"):
        assert name in RESOURCES and name in depends, name


def test_no_function_or_trigger_runs_before_its_schema_is_applied():
    (schema,) = schema_resources()
    users = [n for n in RUST_FUNCTIONS if n != migrate_function_name()]
    users += list(resources_of("AWS::Lambda::EventSourceMapping"))
    for name in users:
        depends = RESOURCES[name].get("DependsOn", [])
        depends = depends if isinstance(depends, list) else [depends]
        assert schema in depends, f"{name} must wait for {schema}"


def test_cloudformation_gives_up_on_a_silent_custom_resource_soon_after_its_timeout():
    (resource,) = schema_resources().values()
    timeout = resource["Properties"].get("ServiceTimeout")
    assert timeout is not None, "without ServiceTimeout CloudFormation waits an hour"
    assert prop(FUNCTIONS[migrate_function_name()], "Timeout") < int(timeout) <= 600


def test_the_migrate_function_connects_as_the_owner_and_has_time_for_a_migration():
    function = FUNCTIONS[migrate_function_name()]
    assert env(function)["DB_USER"] == master_user()
    assert connect_users(function) == ["${DatabaseUser}"]
    assert master_user() == {"Ref": "DatabaseUser"}
    assert prop(function, "Timeout") >= 120


@pytest.mark.parametrize("name", sorted(RUST_FUNCTIONS))
def test_no_application_function_uses_the_master_user(name):
    if name == migrate_function_name():
        return
    function = FUNCTIONS[name]
    user = env(function)["DB_USER"]
    assert user != master_user(), f"{name} connects as the master user"
    assert isinstance(user, str) and user in migration_roles(), (
        f"{name} connects as {user!r}, which no migration creates ({sorted(migration_roles())})"
    )
    assert connect_users(function) == [user], f"{name} may sign tokens for {connect_users(function)}"


def test_the_proxy_logs_in_as_the_application_role_with_iam_and_as_the_owner_with_its_secret():
    (proxy,) = resources_of("AWS::RDS::DBProxy").values()
    props = proxy["Properties"]
    assert props["DefaultAuthScheme"] == "IAM_AUTH"
    assert [a["AuthScheme"] for a in props["Auth"]] == ["SECRETS"]
    for db in resources_of("AWS::RDS::DBInstance").values():
        assert db["Properties"]["EnableIAMDatabaseAuthentication"] is True
    role = RESOURCES[ref_name(props["RoleArn"])]
    statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    users = {
        sub_text(s["Resource"]).rsplit("/", 1)[-1]
        for s in statements
        if s["Action"] == "rds-db:connect"
    }
    app_users = {env(f)["DB_USER"] for n, f in RUST_FUNCTIONS.items() if n != migrate_function_name()}
    assert users == app_users, f"the proxy may log in as {users}, the functions use {app_users}"
    # An existing instance's resource id is required to name it.
    assert "ExistingDbResourceId" in PARAMETERS
    rules = str(TEMPLATE.get("Rules", {}))
    assert "ExistingDbResourceId" in rules


def test_the_application_role_joins_rds_iam_in_a_migration():
    text = "\n".join(p.read_text() for p in sorted(MIGRATIONS.glob("*.sql")))
    for user in {env(f)["DB_USER"] for n, f in RUST_FUNCTIONS.items() if n != migrate_function_name()}:
        assert re.search(rf"GRANT rds_iam TO {user}\b", text), f"no migration grants rds_iam to {user}"


def test_the_proxys_borrow_timeout_is_set_and_under_every_function_timeout():
    (target_group,) = resources_of("AWS::RDS::DBProxyTargetGroup").values()
    pool = target_group["Properties"].get("ConnectionPoolConfigurationInfo", {})
    borrow = pool.get("ConnectionBorrowTimeout")
    assert borrow is not None, "set ConnectionBorrowTimeout explicitly (the default is 120 s)"
    for name, function in RUST_FUNCTIONS.items():
        timeout = prop(function, "Timeout")
        assert highest(borrow) < timeout, f"borrow timeout {borrow} s >= {name} timeout {timeout} s"


# ------------------------------------------------------------------------------ the ML engine

ENGINE_MODES = [
    # (ScoringMode, MlEngineUrl, MlEnginePort): whether the stack deploys the engine, and
    # whether the parameters are accepted.
    ("embedded", "", 443, False, True),
    ("embedded", "https://engine.internal", 443, False, True),
    ("engine", "", 443, True, True),
    ("engine", "", 8443, True, False),
    ("engine", "https://engine.internal", 443, False, True),
    ("engine", "http://engine.internal:8001", 8001, False, True),
]


def engine_parameters(mode, url, port) -> dict:
    return {"ScoringMode": mode, "MlEngineUrl": url, "MlEnginePort": port}


def rules_hold(parameters: dict) -> bool:
    """Whether every rule of the template accepts these parameter values (the others at their
    defaults); Rules compare parameter values as strings."""
    values = {name: parameter_default(name) for name, p in PARAMETERS.items() if "Default" in p}
    values.update(parameters)
    values = {k: v if isinstance(v, list) else str(v) for k, v in values.items()}
    for rule in TEMPLATE.get("Rules", {}).values():
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], values):
            continue
        if not all(evaluate(a["Assert"], values) for a in rule["Assertions"]):
            return False
    return True


def deploy_condition() -> str:
    return FUNCTIONS[ENGINE]["Condition"]


@pytest.mark.parametrize("mode,url,port,deployed,accepted", ENGINE_MODES)
def test_the_engine_is_deployed_in_engine_mode_without_a_url(mode, url, port, deployed, accepted):
    parameters = engine_parameters(mode, url, port)
    condition = TEMPLATE["Conditions"][deploy_condition()]
    assert evaluate(condition, parameters) is deployed
    assert rules_hold(parameters) is accepted
    # An engine hosted elsewhere gets its port opened; the deployed one is on 443.
    other_port = evaluate(TEMPLATE["Conditions"]["MlEngineOnOtherPort"], parameters)
    assert other_port is (mode == "engine" and port != 443)


def test_everything_of_the_engine_exists_only_when_it_is_deployed():
    """Its URL, log group and alarms have its condition; anything else names it only inside an
    !If on that condition."""
    condition = deploy_condition()
    of_engine = {ENGINE, "MlEngineLogs"} | {
        name for name, alarm in ALARMS.items()
        if any(ref_name(v) == ENGINE for _, _, dims in alarm_metrics(alarm) for v in dims.values())
    }
    assert len(of_engine) == 5, of_engine
    for name in of_engine:
        assert RESOURCES[name].get("Condition") == condition, name
    engine_refs = re.compile(rf"'(?:Ref|Fn::GetAtt)': \[?'({ENGINE}(?:Url)?)[.']")
    for name, resource in RESOURCES.items():
        if name not in of_engine:
            without = str(unguarded_leaves(resource, condition))
            assert not engine_refs.search(without), f"{name} names the engine outside an !If on {condition}"
    outputs = {n: o for n, o in TEMPLATE["Outputs"].items() if engine_refs.search(str(o))}
    assert outputs and all(o.get("Condition") == condition for o in outputs.values())


def unguarded_leaves(value, condition):
    """`value` with every !If on `condition` replaced by its false branch: what the template
    says when the engine is not deployed."""
    if isinstance(value, dict):
        if list(value) == ["Fn::If"] and value["Fn::If"][0] == condition:
            return unguarded_leaves(value["Fn::If"][2], condition)
        return {k: unguarded_leaves(v, condition) for k, v in value.items()}
    if isinstance(value, list):
        return [unguarded_leaves(v, condition) for v in value]
    return value


def test_the_engine_is_a_python_lambda_built_by_the_makefile_without_downloads_at_run_time():
    function = FUNCTIONS[ENGINE]
    props = function["Properties"]
    assert props["Runtime"] == "python3.12"
    assert props["Handler"] == "lambda_handler.handler"
    assert (ROOT / "ml-engine" / "lambda_handler.py").exists()
    assert function["Metadata"]["BuildMethod"] == "makefile"
    recipe = makefile_recipe(f"build-{ENGINE}")
    # Wheels for Lambda's Python and architecture, whatever the building machine runs.
    assert "-r ml-engine/requirements-lambda.txt" in recipe
    assert "--python-version 3.12" in recipe and "--only-binary=:all:" in recipe
    assert "aarch64" in recipe and "x86_64" in recipe
    assert "lambda_handler.py" in recipe and "model.json" in recipe
    assert prop(function, "Architectures") == [{"Ref": "Architecture"}]
    assert prop(function, "Tracing") == "Active"
    assert prop(function, "LoggingConfig")["LogFormat"] == "JSON"
    # Mangum is what lambda_handler imports; its version is pinned with the others.
    pins = (ROOT / "ml-engine" / "requirements.txt").read_text()
    assert re.search(r"^mangum==", pins, re.M)
    assert "-c requirements.txt" in (ROOT / "ml-engine" / "requirements-lambda.txt").read_text()
    # It calls nothing: SAM's own managed policies only.
    assert props.get("Policies") == []


def score_name() -> str:
    return next(n for n, f in FUNCTIONS.items() if f is function_by_binary("score"))


def test_only_score_may_call_the_engines_function_url():
    condition = deploy_condition()
    invoking = []
    for name, function in FUNCTIONS.items():
        for statement in statements(function):
            if "lambda:" in str(statement):
                invoking.append((name, statement))
    assert [name for name, _ in invoking] == [score_name()], invoking
    ((_, statement),) = invoking
    # Only when the engine is deployed, and on exactly that function.
    assert list(statement) == ["Fn::If"] and statement["Fn::If"][0] == condition
    assert statement["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    granted = statement["Fn::If"][1]
    assert granted["Effect"] == "Allow"
    # A function URL created since October 2025 needs both actions of its caller.
    assert set(granted["Action"]) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    assert granted["Resource"] == {"Fn::GetAtt": [ENGINE, "Arn"]}


def test_score_calls_the_deployed_engine_at_its_url_and_signs_for_it():
    condition = deploy_condition()
    variables = env(function_by_binary("score"))
    assert variables["ML_ENGINE_URL"] == {
        "Fn::If": [condition, {"Fn::GetAtt": [f"{ENGINE}Url", "FunctionUrl"]}, {"Ref": "MlEngineUrl"}]
    }
    assert variables["ML_ENGINE_AUTH"] == {"Fn::If": [condition, "iam", "none"]}


def test_the_engines_alarms_cover_errors_throttles_and_calls_near_its_timeout():
    for metric in ("Errors", "Throttles"):
        assert alarms_on("AWS/Lambda", metric, FunctionName={"Ref": ENGINE}), metric
    (duration,) = alarms_on("AWS/Lambda", "Duration", FunctionName={"Ref": ENGINE})
    props = ALARMS[duration]["Properties"]
    timeout_ms = 1000 * prop(FUNCTIONS[ENGINE], "Timeout")
    assert props["Statistic"] == "Maximum"
    assert 0.5 * timeout_ms <= int(props["Threshold"]) < timeout_ms
