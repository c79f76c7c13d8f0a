//! The AWS sources: what is accepted, what is refused with the key that is wrong.

use super::*;

fn with_source(sources: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut text = String::from("[daemon]\nstate_dir = \"/tmp/refreshd-state\"\n");
    for (name, source) in sources {
        text.push_str(&format!(
            "\n[credentials.{name}]\nsource = {source}\ntargets = [ {{ type = \"file\", path = \"/run/app/{name}\" }} ]\n"
        ));
    }
    parse(&text)
}

const WEB: &str = r#"{ type = "aws-web-identity", role_arn = "arn:aws:iam::123456789012:role/app", web_identity_token = { file = "/var/run/secrets/eks/token" }, region = "eu-west-1" }"#;
const RDS: &str = r#"{ type = "aws-rds-iam", host = "db.example.com", user = "app", region = "eu-west-1", aws = { credential = "aws" } }"#;

#[test]
fn web_identity_defaults_to_the_regional_endpoint_and_yields_the_key_pair() {
    let config = with_source(&[("aws", WEB), ("rds", RDS)]).unwrap();
    let SourceConfig::AwsWebIdentity(web) = &config.credentials[0].source else {
        panic!("not aws-web-identity");
    };
    assert_eq!(
        web.sts_endpoint.as_str(),
        "https://sts.eu-west-1.amazonaws.com/"
    );
    assert_eq!(
        config.credentials[0].source.fields(),
        ["access_key_id", "secret_access_key"]
    );
    let SourceConfig::AwsRdsIam(rds) = &config.credentials[1].source else {
        panic!("not aws-rds-iam");
    };
    assert_eq!(rds.port, 5432);
    assert_eq!(config.credentials[1].source.bearers(), ["aws"]);
}

#[test]
fn mistakes_are_refused_with_their_key() {
    let no_region = WEB.replace(r#", region = "eu-west-1""#, "");
    let err = with_source(&[("aws", &no_region)]).unwrap_err().to_string();
    assert!(err.contains("credentials.aws.source.region"), "{err}");
    let plain = WEB.replace(
        r#"region = "eu-west-1""#,
        r#"sts_endpoint = "http://sts.example.com/""#,
    );
    let err = with_source(&[("aws", &plain)]).unwrap_err().to_string();
    assert!(err.contains("sts_endpoint"), "{err}");
    let err = with_source(&[("aws", &WEB.replace("role/app", "user/app"))])
        .unwrap_err()
        .to_string();
    assert!(err.contains("role_arn"), "{err}");
    // The keys must come from a credential that yields them.
    let plain_token = r#"{ type = "command", argv = ["print-token"] }"#;
    let err = with_source(&[("aws", plain_token), ("rds", RDS)])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("credentials.rds.source.aws") && err.contains("access_key_id"),
        "{err}"
    );
}
