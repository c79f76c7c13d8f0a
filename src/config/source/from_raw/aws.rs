//! The AWS sources, raw → typed: a role ARN and an STS endpoint we may talk to, a web
//! identity token from exactly one place.
//!
//! Must never: read the web identity token or reach STS (each call's job).

use url::Url;

use super::super::super::locate::At;
use super::super::super::raw::{RawAwsRdsIam, RawAwsWebIdentity};
use super::exchange::subject;
use crate::config::ConfigError;
use crate::config::source::*;

/// STS accepts 900 s to the role's maximum session, which is at most 12 hours.
const DURATION_RANGE: std::ops::RangeInclusive<u32> = 900..=43_200;

/// `aws-web-identity`: STS `AssumeRoleWithWebIdentity`.
pub(super) fn web_identity(
    at: &At<'_, '_>,
    raw: RawAwsWebIdentity,
) -> Result<SourceConfig, ConfigError> {
    let RawAwsWebIdentity {
        role_arn,
        session_name,
        web_identity_token,
        region,
        sts_endpoint,
        duration_seconds,
    } = raw;
    if !role_arn.starts_with("arn:") || !role_arn.contains(":role/") {
        return Err(at.err(
            "role_arn",
            format!("{role_arn:?} is not a role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
        ));
    }
    if let Some(name) = &session_name
        && !valid_session_name(name)
    {
        return Err(at.err(
            "session_name",
            format!("{name:?} must be 2 to 64 of A-Z a-z 0-9 and +=,.@_- (STS's RoleSessionName)"),
        ));
    }
    if let Some(seconds) = duration_seconds
        && !DURATION_RANGE.contains(&seconds)
    {
        return Err(at.err(
            "duration_seconds",
            format!("{seconds} is outside STS's 900 to 43200 seconds"),
        ));
    }
    let sts_endpoint = endpoint(at, region.as_deref(), sts_endpoint)?;
    Ok(SourceConfig::AwsWebIdentity(AwsWebIdentitySource {
        role_arn,
        session_name,
        web_identity_token: subject(at, "web_identity_token", web_identity_token)?,
        sts_endpoint,
        duration_seconds,
    }))
}

/// `aws-rds-iam`: a database to sign for and the keys that sign.
pub(super) fn rds_iam(at: &At<'_, '_>, raw: RawAwsRdsIam) -> Result<SourceConfig, ConfigError> {
    let RawAwsRdsIam {
        host,
        port,
        user,
        region,
        aws,
    } = raw;
    for (field, value) in [("host", &host), ("user", &user)] {
        if value.is_empty() {
            return Err(at.err(field, "must not be empty".into()));
        }
    }
    if host.contains(['/', ':', '?', '#', '@', ' ']) {
        return Err(at.err(
            "host",
            format!("{host:?} must be a bare host name (the port goes in `port`)"),
        ));
    }
    if !valid_region(&region) {
        return Err(at.err(
            "region",
            format!("{region:?} is not an AWS region name such as \"eu-west-1\""),
        ));
    }
    if aws.as_ref().is_some_and(|a| a.credential.is_empty()) {
        return Err(at.err("aws", "`credential` must not be empty".into()));
    }
    Ok(SourceConfig::AwsRdsIam(AwsRdsIamSource {
        host,
        port: port.unwrap_or(5432),
        user,
        region,
        aws: aws.map(|a| a.credential),
    }))
}

/// `sts_endpoint` as given, else the regional endpoint of `region`.
fn endpoint(
    at: &At<'_, '_>,
    region: Option<&str>,
    sts_endpoint: Option<Url>,
) -> Result<Url, ConfigError> {
    if let Some(url) = sts_endpoint {
        at.http_url(&url, "sts_endpoint")?;
        return Ok(url);
    }
    let Some(region) = region else {
        return Err(at.err(
            "region",
            "give the role's `region` (e.g. \"eu-west-1\") or an `sts_endpoint`".into(),
        ));
    };
    if !valid_region(region) {
        return Err(at.err(
            "region",
            format!("{region:?} is not an AWS region name such as \"eu-west-1\""),
        ));
    }
    Url::parse(&format!("https://sts.{region}.amazonaws.com/"))
        .map_err(|e| at.err("region", format!("makes no endpoint URL: {e}")))
}

/// An AWS region name: lower-case letters, digits and dashes (`us-gov-west-1`).
pub(in crate::config) fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// STS's `RoleSessionName`: `[\w+=,.@-]{2,64}`.
pub(crate) fn valid_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}
