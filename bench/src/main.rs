//! `make bench`: what the functions cost on this machine, against the local Postgres, the SQS
//! emulator and the ML engine, checked against the budgets.
//!
//! 0. the cold start a user feels: spawn -> first answer of `generate` and `score`, with Postgres
//!    over TLS and an SQS stand-in that answers at once, the build before the cold-start work
//!    beside today's in the same rounds;
//! 1. cold start of each release binary under a stand-in of the Lambda Runtime API;
//! 2. warm `POST /quotes/generate-batch` of 1, 100 and 1000 quotes through `generate::handle`,
//!    with the time inside the store's and the queue's calls measured apart;
//! 3. the bulk INSERT of 1000 quotes beside a plain `COPY` of the same rows through psql;
//! 4. scoring throughput through `score::handle`, with the ML engine and embedded;
//! 5. peak resident memory of each binary under a run of heavy events;
//! 6. the size of each deployment zip.
//!
//! Progress and the table go to stderr; stdout carries what the handlers log (EMF lines), which
//! `scripts/bench` keeps in `.local/bench-stdout.log`. Results: `bench/results/latest.json`,
//! `latest.txt` and `latency.svg`. A budget missed is reported, not an error: the process fails
//! only when the bench itself cannot run.

mod lambda;
mod report;
mod sections;
mod sqs_stand_in;
mod stats;
mod svg;
mod timed;

use std::path::PathBuf;
use std::process::ExitCode;

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> ExitCode {
    // The init steps timed here are to be the functions': in Lambda's environment, which names
    // no certificates, their `main` names the bundle file.
    // SAFETY: the runtime, and with it every other thread, starts after this.
    unsafe {
        std::env::remove_var("SSL_CERT_FILE");
        std::env::remove_var("SSL_CERT_DIR");
        quote_pipeline::ca_bundle::name_bundle_file();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(sections::run(root())),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace's root: this crate's parent.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is in the workspace")
        .to_path_buf()
}
