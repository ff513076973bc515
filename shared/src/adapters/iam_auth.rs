//! IAM database authentication: on AWS the functions reach Postgres through RDS Proxy with a
//! short-lived token signed by the function's own role, never a stored password.
//!
//! A token is a SigV4-presigned `connect` request for the `rds-db` service, valid 15 minutes
//! and needed only to open a connection; the store signs a new one before that runs out.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;

/// How long a token is valid: RDS accepts at most 15 minutes.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// Where and as whom to connect with IAM authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamDatabase {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub region: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot sign an IAM database token: {0}")]
pub struct TokenError(String);

/// The token for `db`, as `aws rds generate-db-auth-token` makes it, signed at `time`.
pub fn auth_token(
    db: &IamDatabase,
    credentials: &Credentials,
    time: SystemTime,
) -> Result<String, TokenError> {
    let error = |e: &dyn std::fmt::Display| TokenError(e.to_string());
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_LIFETIME);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&db.region)
        .name("rds-db")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| error(&e))?
        .into();
    let user: String = form_urlencoded::byte_serialize(db.user.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    let url = format!(
        "https://{}:{}/?Action=connect&DBUser={user}",
        db.host, db.port
    );
    // The canonical request hashes an empty body, as botocore does for these tokens.
    let signable = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| error(&e))?;
    let (instructions, _) = sign(signable, &params).map_err(|e| error(&e))?.into_parts();
    let mut request = http::Request::builder()
        .uri(&url)
        .body(())
        .map_err(|e| error(&e))?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(request
        .uri()
        .to_string()
        .trim_start_matches("https://")
        .to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The query of a token, by name, so that the order of its parameters does not matter.
    fn parts(token: &str) -> (String, BTreeMap<String, String>) {
        let (authority, query) = token.split_once("/?").unwrap();
        let params = query
            .split('&')
            .map(|p| p.split_once('=').unwrap())
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        (authority.into(), params)
    }

    /// The time of the known vectors (here and in `request_signing`): 2026-11-27T12:00:00Z.
    pub(crate) fn noon() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_780_800)
    }

    /// AWS's documented example keys, with a session token, as the known vectors were signed.
    pub(crate) fn example_credentials() -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("session-token-example".into()),
            None,
            "test",
        )
    }

    // Both vectors come from botocore's `generate_db_auth_token` with its clock set to noon.
    #[test]
    fn tokens_match_botocore_with_a_session_token() {
        let db = IamDatabase {
            host: "quotes-proxy.proxy-abc.us-east-1.rds.amazonaws.com".into(),
            port: 5432,
            name: "quotes".into(),
            user: "quotes_app".into(),
            region: "us-east-1".into(),
        };
        let credentials = example_credentials();
        let expected = "quotes-proxy.proxy-abc.us-east-1.rds.amazonaws.com:5432/?Action=connect&DBUser=quotes_app\
            &X-Amz-Algorithm=AWS4-HMAC-SHA256\
            &X-Amz-Credential=AKIDEXAMPLE%2F20261127%2Fus-east-1%2Frds-db%2Faws4_request\
            &X-Amz-Date=20261127T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
            &X-Amz-Security-Token=session-token-example\
            &X-Amz-Signature=ef52fb43a5dd9b8e648ea93f0411b3e5d6a010e5b0d36c24883834056473d891";
        assert_eq!(
            parts(&auth_token(&db, &credentials, noon()).unwrap()),
            parts(expected)
        );
    }

    #[test]
    fn tokens_match_botocore_for_a_user_name_that_needs_escaping() {
        let db = IamDatabase {
            host: "db.example.com".into(),
            port: 5432,
            name: "quotes".into(),
            user: "app user".into(),
            region: "eu-west-1".into(),
        };
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let expected = "db.example.com:5432/?Action=connect&DBUser=app%20user&X-Amz-Algorithm=AWS4-HMAC-SHA256\
            &X-Amz-Credential=AKIDEXAMPLE%2F20261127%2Feu-west-1%2Frds-db%2Faws4_request\
            &X-Amz-Date=20261127T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
            &X-Amz-Signature=507b246e827d998a14fd3fc123dae7aea1f7a4660c61d9191bd4b11012039598";
        assert_eq!(
            parts(&auth_token(&db, &credentials, noon()).unwrap()),
            parts(expected)
        );
    }
}
