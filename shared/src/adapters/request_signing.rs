//! SigV4 for HTTP requests to a Lambda function URL whose auth type is `AWS_IAM`: how `score`
//! calls an engine that only its role may invoke.
//!
//! A function URL checks the signature of the service `lambda` in the function's region over
//! the whole request, its body included: the body's SHA-256 is part of the canonical request
//! and is also sent, signed, as `x-amz-content-sha256` (Lambda takes no unsigned payload).
//! Credentials come from the SDK's provider (the function's role on Lambda) and are fetched
//! again before they expire: role credentials last hours, a container can outlive them.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use reqwest::header::{HeaderName, HeaderValue};

/// The service name function URLs verify signatures for.
pub const SERVICE: &str = "lambda";
/// Credentials are fetched again this often even when they do not say when they expire
/// (Lambda's own, in the environment, do not).
const REFETCH: Duration = Duration::from_secs(300);
/// Credentials closer than this to their expiry are fetched again before signing.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("no AWS credentials to sign the ML engine's requests with")]
    NoCredentials,
    #[error("fetching AWS credentials failed: {0}")]
    Credentials(String),
    #[error("cannot sign the request: {0}")]
    Sign(String),
}

/// Signs requests with the credentials of one provider, for one region.
pub struct RequestSigner {
    region: String,
    provider: SharedCredentialsProvider,
    /// The last credentials and when they were fetched.
    cached: Mutex<Option<(Credentials, SystemTime)>>,
}

impl RequestSigner {
    pub fn new(region: impl Into<String>, provider: SharedCredentialsProvider) -> Self {
        RequestSigner {
            region: region.into(),
            provider,
            cached: Mutex::new(None),
        }
    }

    /// A signer with the credentials of `sdk` (the function's role on Lambda).
    pub fn from_sdk(
        region: impl Into<String>,
        sdk: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, SigningError> {
        let provider = sdk
            .and_then(|sdk| sdk.credentials_provider())
            .ok_or(SigningError::NoCredentials)?;
        Ok(Self::new(region, provider))
    }

    /// Signs `request` now: adds `authorization`, `x-amz-date`, `x-amz-content-sha256` and,
    /// with temporary credentials, `x-amz-security-token`.
    pub async fn sign(&self, request: &mut reqwest::Request) -> Result<(), SigningError> {
        let credentials = self.credentials().await?;
        sign_request(request, &credentials, &self.region, SystemTime::now())
    }

    /// The cached credentials while fresh, else new ones from the provider.
    async fn credentials(&self) -> Result<Credentials, SigningError> {
        let now = SystemTime::now();
        let cached = self.cached.lock().expect("no poisoned lock").clone();
        if let Some((credentials, fetched)) = cached
            && is_fresh(&credentials, fetched, now)
        {
            return Ok(credentials);
        }
        let credentials = self
            .provider
            .provide_credentials()
            .await
            .map_err(|e| SigningError::Credentials(e.to_string()))?;
        *self.cached.lock().expect("no poisoned lock") = Some((credentials.clone(), now));
        Ok(credentials)
    }
}

fn is_fresh(credentials: &Credentials, fetched: SystemTime, now: SystemTime) -> bool {
    let recent = now.duration_since(fetched).is_ok_and(|age| age < REFETCH);
    let far_from_expiry = credentials.expiry().is_none_or(|expiry| {
        expiry
            .duration_since(now)
            .is_ok_and(|left| left > EXPIRY_MARGIN)
    });
    recent && far_from_expiry
}

/// Signs `request` (its method, URL, headers and body) with `credentials` at `time`.
pub fn sign_request(
    request: &mut reqwest::Request,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<(), SigningError> {
    let error = |e: &dyn std::fmt::Display| SigningError::Sign(e.to_string());
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| error(&e))?
        .into();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| Ok((name.as_str(), value.to_str().map_err(|e| error(&e))?)))
        .collect::<Result<Vec<_>, SigningError>>()?;
    let body = match request.body() {
        None => &[][..],
        Some(body) => body
            .as_bytes()
            .ok_or_else(|| error(&"a streamed body cannot be signed"))?,
    };
    let url = request.url().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        &url,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| error(&e))?;
    let (instructions, _) = sign(signable, &params).map_err(|e| error(&e))?.into_parts();
    for (name, value) in instructions.headers() {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| error(&e))?;
        let value = HeaderValue::from_str(value).map_err(|e| error(&e))?;
        request.headers_mut().insert(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_credential_types::provider::future;

    use crate::iam_auth::tests::{example_credentials, noon};

    const URL: &str =
        "https://abcdefghijklmnopqrstuvwxyz123456.lambda-url.us-east-1.on.aws/predict/batch";
    const BODY: &str =
        r#"[{"quote_id":"01936f2e-7a55-7cc3-9f1e-2b4c6d8e0f12","features":{"user_age":41.0}}]"#;

    fn request() -> reqwest::Request {
        reqwest::Client::new()
            .post(URL)
            .header("content-type", "application/json")
            .body(BODY)
            .build()
            .unwrap()
    }

    fn header<'a>(request: &'a reqwest::Request, name: &str) -> &'a str {
        request.headers()[name].to_str().unwrap()
    }

    // The vector comes from botocore's SigV4Auth (service lambda, us-east-1) with its clock
    // set to noon, over the same request with x-amz-content-sha256 set to the body's SHA-256.
    #[test]
    fn a_signed_request_matches_botocore_and_carries_the_body_hash_and_the_session_token() {
        let mut request = request();
        sign_request(&mut request, &example_credentials(), "us-east-1", noon()).unwrap();
        assert_eq!(header(&request, "x-amz-date"), "20261127T120000Z");
        assert_eq!(
            header(&request, "x-amz-security-token"),
            "session-token-example"
        );
        assert_eq!(
            header(&request, "x-amz-content-sha256"),
            "d749981a4887415a4a00bc9c813a2ee1fab18e00d21e17151645010e19a799f0"
        );
        assert_eq!(
            header(&request, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261127/us-east-1/lambda/aws4_request, \
             SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, \
             Signature=9d72e14619ea691257a2104f71add9fe23bd446a343a319318b109aebab8a7cd"
        );
        // The body is the one signed, unchanged.
        assert_eq!(request.body().unwrap().as_bytes().unwrap(), BODY.as_bytes());
    }

    #[test]
    fn a_request_with_long_term_credentials_has_no_session_token() {
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let mut request = request();
        sign_request(&mut request, &credentials, "eu-west-1", noon()).unwrap();
        assert!(request.headers().get("x-amz-security-token").is_none());
        assert!(header(&request, "authorization").contains("/eu-west-1/lambda/aws4_request"));
    }

    /// A provider that hands out new credentials, expiring `lifetime` after now, on each call.
    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        lifetime: Option<Duration>,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let expiry = self.lifetime.map(|l| SystemTime::now() + l);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                Some(format!("token-{n}")),
                expiry,
                "counting",
            )))
        }
    }

    fn signer(lifetime: Option<Duration>) -> (RequestSigner, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let provider = Counting {
            calls: Arc::clone(&calls),
            lifetime,
        };
        (
            RequestSigner::new("us-east-1", SharedCredentialsProvider::new(provider)),
            calls,
        )
    }

    #[tokio::test]
    async fn credentials_are_reused_while_fresh() {
        let (signer, calls) = signer(Some(Duration::from_secs(3600)));
        for _ in 0..3 {
            signer.sign(&mut request()).await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn credentials_about_to_expire_are_fetched_again_before_signing() {
        // Each set expires within the margin: every request gets new ones.
        let (signer, calls) = signer(Some(Duration::from_secs(60)));
        let mut tokens = Vec::new();
        for _ in 0..3 {
            let mut request = request();
            signer.sign(&mut request).await.unwrap();
            tokens.push(header(&request, "x-amz-security-token").to_owned());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(tokens, ["token-0", "token-1", "token-2"]);
    }

    #[test]
    fn credentials_without_an_expiry_are_fetched_again_after_a_while() {
        let credentials = Credentials::new("AKID", "secret", None, None, "env");
        let now = SystemTime::now();
        assert!(is_fresh(&credentials, now, now));
        assert!(!is_fresh(&credentials, now - REFETCH, now));
    }

    #[tokio::test]
    async fn no_credentials_is_an_error_naming_them() {
        let error = RequestSigner::from_sdk("us-east-1", None).err().unwrap();
        assert!(error.to_string().contains("no AWS credentials"));
    }
}
