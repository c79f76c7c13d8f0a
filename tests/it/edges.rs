//! The daemon's edges under a hostile local user: a flood of slow connections on the metrics
//! port must not silence the probes, and text from outside (a program's stderr, a provider's
//! error) must reach the operator's terminal escaped.

use crate::common::{Refreshd, stderr, stdout};

/// A program whose stderr clears the screen and rings the bell: `status` shows the error
/// with those characters escaped, and `status --json` keeps them (as JSON escapes) without
/// writing one raw.
#[test]
fn status_escapes_what_a_failing_source_printed() {
    let mut r = Refreshd::new();
    r.write_config(&format!(
        r#"control_socket = "{dir}/run/control.sock"

[credentials.api]
source = {{ type = "command", argv = ["sh", "-c", "printf 'boom\\033[2J\\007 \\302\\233 done\\n' >&2; exit 3"] }}
targets = [ {{ type = "file", path = "{dir}/token" }} ]
"#,
        dir = r.dir.path().display()
    ));
    let once = r.run(&["once"]);
    assert!(!once.status.success(), "{}", stderr(&once));
    let raw = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        text.chars().any(|c| c != '\n' && c.is_control())
    };

    let status = r.run(&["status"]);
    let text = stdout(&status);
    assert!(!raw(&status.stdout) && !raw(&status.stderr), "{text:?}");
    assert!(
        text.contains("boom\\u{1b}[2J\\u{7} \\u{9b} done"),
        "the error is not shown escaped:\n{text}"
    );

    let json = r.run(&["status", "--json"]);
    assert!(!raw(&json.stdout), "{:?}", stdout(&json));
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let message = value["credentials"]["api"]["last_error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no last error in {value}"));
    assert!(
        message.contains("boom\u{1b}[2J\u{7} \u{9b} done"),
        "{message:?}"
    );
}
