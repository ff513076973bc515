//! The system's CA bundle, named for the HTTPS clients (the AWS SDK's and reqwest's).
//!
//! Both load the system's root certificates at a cold start through `rustls-native-certs`,
//! which reads the bundle file and then every file of the certificate directory as well: on
//! Debian, /etc/ssl/certs holds some 290 entries, the same roots again one per file. That scan
//! was about 6 ms of a 12 ms cold start on this workplace's machine. With the bundle named in
//! `SSL_CERT_FILE`, each client reads the one file. On Amazon Linux 2023 the directory holds
//! the bundles rather than a file per root, so the saving there is smaller: the bundle read
//! once rather than twice.

use std::path::Path;

/// Where Linux distributions keep their bundle of trusted roots.
const BUNDLES: &[&str] = &[
    // Amazon Linux 2023: Lambda's `provided.al2023` runtime.
    "/etc/pki/tls/certs/ca-bundle.crt",
    // Debian and Ubuntu.
    "/etc/ssl/certs/ca-certificates.crt",
];

/// Sets `SSL_CERT_FILE` to the first of [`BUNDLES`] that exists, unless the environment names
/// a file or directory already; where none exists, the clients keep their own search.
///
/// # Safety
/// It sets a process environment variable: call it before any other thread starts.
pub unsafe fn name_bundle_file() {
    if std::env::var_os("SSL_CERT_FILE").is_some() || std::env::var_os("SSL_CERT_DIR").is_some() {
        return;
    }
    if let Some(bundle) = BUNDLES.iter().find(|path| Path::new(path).is_file()) {
        // SAFETY: the caller runs this while the process has one thread.
        unsafe { std::env::set_var("SSL_CERT_FILE", bundle) };
    }
}
