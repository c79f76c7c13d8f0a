//! RDS IAM authentication tokens: a SigV4-presigned `connect` URL for a database user,
//! minus its scheme, as botocore's `generate_db_auth_token` makes it. No request is made:
//! the database checks the signature when the token arrives as the password.
//!
//! Must never: log or return the secret access key (only the signature derived from it).

use time::OffsetDateTime;

use super::sigv4::{EMPTY_PAYLOAD, Keys, Request, presigned_query};

/// What AWS accepts for an RDS token, and what botocore signs for.
pub(crate) const TOKEN_LIFETIME_SECS: u32 = 900;

/// The database a token is for.
pub(crate) struct Database<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub region: &'a str,
}

/// The token for `db`, signed with `keys` at `time`, valid [`TOKEN_LIFETIME_SECS`].
pub(crate) fn auth_token(db: &Database<'_>, keys: &Keys<'_>, time: OffsetDateTime) -> String {
    // botocore's host header: the lower-cased host, with the port unless it is https' own.
    let mut host = db.host.to_ascii_lowercase();
    if db.port != 443 {
        host.push_str(&format!(":{}", db.port));
    }
    let query = presigned_query(
        &Request {
            host: &host,
            path: "/",
            params: &[("Action", "connect"), ("DBUser", db.user)],
            region: db.region,
            service: "rds-db",
            time,
            expires_secs: TOKEN_LIFETIME_SECS,
            payload: EMPTY_PAYLOAD,
        },
        keys,
    );
    format!("{}:{}/?{query}", db.host, db.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by botocore 1.44.18's `generate_db_auth_token` with its clock frozen at
    /// 2026-12-08T00:15:30Z (see the comment in tests/it/aws.rs for the script).
    #[test]
    fn tokens_match_botocore_byte_for_byte() {
        let time = crate::token::parse_rfc3339("2026-12-08T00:15:30Z").unwrap();
        let temporary = auth_token(
            &Database {
                host: "mydb.abc123.eu-west-1.rds.amazonaws.com",
                port: 5432,
                user: "app_user@x",
                region: "eu-west-1",
            },
            &Keys {
                access_key_id: "ASIAIOSFODNN7EXAMPLE",
                secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                session_token: Some("IQoJb3JpZ2luX2VjE+/=session"),
            },
            time,
        );
        assert_eq!(
            temporary,
            "mydb.abc123.eu-west-1.rds.amazonaws.com:5432/?Action=connect&DBUser=app_user%40x&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAIOSFODNN7EXAMPLE%2F20261208%2Feu-west-1%2Frds-db%2Faws4_request&X-Amz-Date=20261208T001530Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=IQoJb3JpZ2luX2VjE%2B%2F%3Dsession&X-Amz-Signature=b6ff3ea44953cce3799286611b820e0a34d052515160471d6d61a49cd468d899"
        );
        let long_term = auth_token(
            &Database {
                host: "db.example.com",
                port: 3306,
                user: "iam_user",
                region: "us-east-1",
            },
            &Keys {
                access_key_id: "AKIAIOSFODNN7EXAMPLE",
                secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                session_token: None,
            },
            time,
        );
        assert_eq!(
            long_term,
            "db.example.com:3306/?Action=connect&DBUser=iam_user&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261208%2Fus-east-1%2Frds-db%2Faws4_request&X-Amz-Date=20261208T001530Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=19fd15640d548b5353a55729095c822dc311de997c790bb4ec1960ca22eebc24"
        );
    }
}
