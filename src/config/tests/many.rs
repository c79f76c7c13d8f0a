//! Configs with hundreds or thousands of credentials: what a fleet loads must be found and
//! checked without a scan per credential. Correctness checks only; no timing is asserted.

use super::*;

#[test]
fn credentials_are_found_by_name_as_a_scan_would_find_them() {
    // Names whose byte order differs from their order in the file, and from a
    // case-insensitive or length-first order, among enough others for a search to descend.
    let mut names: Vec<String> = ["z", "a_b", "a-b", "a.b", "A", "a", "a0", "b", "Z9"]
        .map(str::to_owned)
        .to_vec();
    names.extend((0..500).rev().map(|i| format!("host-{i}")));
    let mut text = String::new();
    for (i, name) in names.iter().enumerate() {
        text.push_str(&format!(
            "[credentials.\"{name}\"]\nsource = {{ type = \"command\", argv = [\"mint\"] }}\ntargets = [ {{ type = \"file\", path = \"/run/app/{i}\" }} ]\n"
        ));
    }
    let config = parse(&text).unwrap();
    assert_eq!(config.credentials.len(), names.len());
    let scan = |name: &str| config.credentials.iter().find(|c| c.name == name);
    for name in names
        .iter()
        .map(String::as_str)
        .chain(["", "c", "a-", "host-500", "zz"])
    {
        assert_eq!(
            config.credential(name).map(|c| &c.name),
            scan(name).map(|c| &c.name),
            "{name:?}"
        );
    }
    assert!(config.credential("host-499").is_some());
    assert!(config.credential("host-500").is_none());
}

#[test]
fn a_deep_chain_of_bearers_is_checked_without_a_search_from_each_credential() {
    // c0 sends c1's token, c1 sends c2's, …: searching for a cycle from every one of them
    // walks the rest of the chain each time.
    let depth = 1500;
    let mut text = String::new();
    for i in 0..depth {
        let source = if i + 1 < depth {
            format!(
                "{{ type = \"http\", url = \"https://x.example.com/api\", bearer = {{ credential = \"c{}\" }}, token_field = \"/token\" }}",
                i + 1
            )
        } else {
            "{ type = \"command\", argv = [\"mint\"] }".to_owned()
        };
        text.push_str(&format!(
            "[credentials.c{i}]\nsource = {source}\ntargets = [ {{ type = \"file\", path = \"/run/app/{i}\" }} ]\n"
        ));
    }
    let config = parse(&text).unwrap();
    let order: Vec<&str> = config
        .dependency_order()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let expected: Vec<String> = (0..depth).rev().map(|i| format!("c{i}")).collect();
    assert_eq!(order, expected);
}
