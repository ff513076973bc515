# Shared steps of scripts/run and scripts/test: each one idempotent, each one set up from the
# project's own files, so a fresh machine needs nothing installed by hand.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/.local"
VENV="$ROOT/.venv"
mkdir -p "$STATE"

export PATH="$VENV/bin:$HOME/.cargo/bin:$PATH"
export AWS_REGION="${AWS_REGION:-us-east-1}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-$AWS_REGION}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
# No instance-metadata look-ups on a machine that is not an EC2 instance.
export AWS_EC2_METADATA_DISABLED=true
SQS_PORT="${SQS_PORT:-9324}"
export AWS_ENDPOINT_URL_SQS="${AWS_ENDPOINT_URL_SQS:-http://127.0.0.1:$SQS_PORT}"
# The same emulator serves EventBridge (the bus of batch events).
export AWS_ENDPOINT_URL_EVENTBRIDGE="${AWS_ENDPOINT_URL_EVENTBRIDGE:-http://127.0.0.1:$SQS_PORT}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
# The functions reach Postgres through PgBouncer, as on AWS through RDS Proxy, as the
# application role; admin steps (creating databases, migrations) go straight to Postgres.
PGBOUNCER_PORT="${PGBOUNCER_PORT:-6432}"
APP_DB_USER=quote_app
export TEST_POOLER_URL="${TEST_POOLER_URL:-postgres://$APP_DB_USER@127.0.0.1:$PGBOUNCER_PORT/postgres?sslmode=require}"

STARTED_PIDS=()

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Kills what this script started, children included (each was started in its own group).
stop_started() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
}

# start NAME COMMAND...: runs COMMAND in the background in its own process group, logging to
# .local/NAME.log.
start() {
    local name="$1"; shift
    setsid "$@" >"$STATE/$name.log" 2>&1 &
    STARTED_PIDS+=("$!")
    echo "$!" >"$STATE/$name.pid"
}

# wait_for_http URL NAME [TRIES]: waits until URL answers at all (any HTTP status).
wait_for_http() {
    local url="$1" what="$2" tries="${3:-120}"
    for _ in $(seq "$tries"); do
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)" != 000 ]]; then return 0; fi
        sleep 0.5
    done
    log "$what did not come up at $url; its log:"
    tail -n 40 "$STATE/$what.log" >&2 || true
    return 1
}

ensure_venv() {
    local stamp="$VENV/.requirements.sha256"
    local want
    want="$(cat "$ROOT/requirements-dev.txt" "$ROOT/ml-engine/requirements.txt" | sha256sum | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return 0; fi
    log "Installing the Python tools into .venv"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        -r "$ROOT/requirements-dev.txt" -r "$ROOT/ml-engine/requirements.txt"
    echo "$want" >"$stamp"
}

ensure_postgres() {
    if pg_isready -q -h 127.0.0.1 -p 5432; then return 0; fi
    log "Starting the local Postgres"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 0.5; done
    log "Postgres did not start"; return 1
}

# ensure_database NAME: creates the database if it is missing and applies the migrations.
ensure_database() {
    local name="$1"
    if [[ -z "$(psql "$PG_ADMIN_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = '$name'")" ]]; then
        psql "$PG_ADMIN_URL" -qc "CREATE DATABASE $name"
    fi
    DATABASE_URL="${PG_ADMIN_URL%/*}/$name" cargo run --quiet --locked -p quote-pipeline --bin apply-migrations
    export DATABASE_URL="postgres://$APP_DB_USER@127.0.0.1:$PGBOUNCER_PORT/$name?sslmode=require"
}

# PgBouncer in transaction pooling mode, as strict as RDS Proxy: no `ignore_startup_parameters`,
# so a connection that sends `options` (or any parameter PgBouncer does not track) is refused,
# and named prepared statements do not survive a transaction. TLS is required of clients, as
# the proxy requires it; the key is Postgres's own snakeoil pair. Short server timeouts, so
# the many test databases do not hold Postgres's connections, and a down server fails a query
# in seconds rather than after PgBouncer's two minutes.
ensure_pgbouncer() {
    if pg_isready -q -h 127.0.0.1 -p "$PGBOUNCER_PORT"; then return 0; fi
    if ! command -v pgbouncer >/dev/null && [[ ! -x /usr/sbin/pgbouncer ]]; then
        log "Installing PgBouncer (Debian's package)"
        apt-get install -y -qq pgbouncer >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null; }
    fi
    local dir="$STATE/pgbouncer"
    mkdir -p "$dir"
    printf '"postgres" ""\n"%s" ""\n' "$APP_DB_USER" >"$dir/userlist.txt"
    cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=5432

[users]
; The owner applies migrations, whose session state (sqlx's bookkeeping statements) pins its
; proxy connection on AWS: here a session of its own is the same thing.
postgres = pool_mode=session

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
ignore_startup_parameters =
max_client_conn = 1000
default_pool_size = 20
client_tls_sslmode = require
client_tls_cert_file = /etc/ssl/certs/ssl-cert-snakeoil.pem
client_tls_key_file = /etc/ssl/private/ssl-cert-snakeoil.key
server_tls_sslmode = prefer
server_idle_timeout = 10
server_lifetime = 300
server_login_retry = 1
query_wait_timeout = 5
$( [[ "$(id -u)" == 0 ]] && echo "user = postgres" )
INI
    chmod -R a+rX "$dir"
    log "Starting PgBouncer (transaction pooling) on 127.0.0.1:$PGBOUNCER_PORT"
    start pgbouncer "$(command -v pgbouncer || echo /usr/sbin/pgbouncer)" "$dir/pgbouncer.ini"
    for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 -p "$PGBOUNCER_PORT" && return 0; sleep 0.5; done
    log "PgBouncer did not start; its log:"; tail -n 40 "$STATE/pgbouncer.log" >&2; return 1
}

# Each integration test (and bench section) makes a database of its own, quotes_test_*: drops
# them all.
drop_test_databases() {
    psql "$PG_ADMIN_URL" -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'quotes_test_%'" |
        while read -r db; do psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true; done
}

ensure_sqs() {
    if curl -fsS -o /dev/null "http://127.0.0.1:$SQS_PORT/moto-api/" 2>/dev/null; then return 0; fi
    log "Starting the SQS emulator (moto) on 127.0.0.1:$SQS_PORT"
    start sqs "$VENV/bin/moto_server" -H 127.0.0.1 -p "$SQS_PORT"
    wait_for_http "http://127.0.0.1:$SQS_PORT/moto-api/" sqs
}

# Creates the quotes queue and its dead-letter queue, and the event bus `EVENT_BUS_NAME`
# (default quotes) with a queue receiving its batch events; exports QUOTES_QUEUE_URL,
# QUOTES_DLQ_URL, EVENT_BUS_NAME and QUOTE_EVENTS_QUEUE_URL.
ensure_queues() {
    local urls
    export EVENT_BUS_NAME="${EVENT_BUS_NAME:-quotes}"
    urls="$("$VENV/bin/python" "$ROOT/scripts/create_queues.py" --event-bus "$EVENT_BUS_NAME" "$@")"
    read -r QUOTES_QUEUE_URL QUOTES_DLQ_URL QUOTE_EVENTS_QUEUE_URL <<<"$urls"
    export QUOTES_QUEUE_URL QUOTES_DLQ_URL QUOTE_EVENTS_QUEUE_URL
}

# Trains the model from the Rust-generated training set when there is none, or when the one
# there predicts something else than ln(premium) (trained before the log scale), and compiles
# it for embedded scoring (model.bin) when that is missing or older. Writes the held-out
# evaluation set (ml-engine/evaluate.py's) beside the training set when it is missing or the
# model is retrained.
ensure_model() {
    local dir="$ROOT/ml-engine/model" data="$ROOT/ml-engine/data"
    if [[ ! -f "$dir/model.json" || ! -f "$dir/metadata.json" ]] ||
        ! grep -q '"target": "ln(premium)"' "$dir/metadata.json"; then
        log "Training the model (training set from the Rust feature code)"
        mkdir -p "$data"
        cargo run --quiet --locked -p quote-pipeline --bin training-data -- \
            --rows 30000 --spread-rows 30000 --seed 20261127 --out "$data/train.csv"
        (cd "$ROOT/ml-engine" && "$VENV/bin/python" train.py --data data/train.csv --out-dir model)
        rm -f "$data/eval.csv"
    fi
    if [[ ! -f "$data/eval.csv" ]]; then
        cargo run --quiet --locked -p quote-pipeline --bin training-data -- --evaluation \
            --rows 10000 --spread-rows 10000 --seed 20261201 --out "$data/eval.csv"
    fi
    # Compiled again when model.json is newer, or model.bin is of another form than
    # model-compile writes (its magic: "QPXGB" and the form, compiled.rs's MAGIC).
    if [[ ! -f "$dir/model.bin" || "$dir/model.json" -nt "$dir/model.bin" ]] ||
        ! cmp -s -n 6 <(printf 'QPXGB\x02') "$dir/model.bin"; then
        cargo run --quiet --locked -p quote-pipeline --bin model-compile -- "$dir"
    fi
}

# start_engine PORT: serves the model on 127.0.0.1:PORT.
start_engine() {
    local port="$1"
    log "Starting the ML engine on 127.0.0.1:$port"
    start ml-engine bash -c "cd '$ROOT/ml-engine' && exec '$VENV/bin/uvicorn' app:create_app --factory \
        --host 127.0.0.1 --port $port --no-access-log"
    wait_for_http "http://127.0.0.1:$port/health" ml-engine
}
