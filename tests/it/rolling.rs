//! Rolling reloads: three `refreshd run` nodes share one rotating grant through a real
//! PostgreSQL with `reload_order = "rolling"`; each node's reload command writes its window
//! (start, a short sleep, end) to one shared file with O_APPEND writes. The windows never
//! overlap and each generation's reloads go in node-name order; a failing `health_check` on
//! node-2 stops node-3's reload of that generation and a `command` notify sink hears of it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::eventually;
use crate::fleet::{Fleet, Node};

/// One line of the shared log: what, which node, which token (its expiry), when.
#[derive(Debug, Clone)]
struct Line {
    what: String,
    node: String,
    token: String,
    at: f64,
}

fn lines(fleet: &Fleet) -> Vec<Line> {
    let text = std::fs::read_to_string(fleet.path("roll.log")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some(Line {
                what: words.next()?.to_owned(),
                node: words.next()?.to_owned(),
                token: words.next()?.to_owned(),
                at: words.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// The node names that started a reload of each token, in the order they started.
fn starts(lines: &[Line]) -> BTreeMap<String, Vec<String>> {
    let mut starts: BTreeMap<String, Vec<(f64, String)>> = BTreeMap::new();
    for line in lines.iter().filter(|l| l.what == "start") {
        starts
            .entry(line.token.clone())
            .or_default()
            .push((line.at, line.node.clone()));
    }
    starts
        .into_iter()
        .map(|(token, mut nodes)| {
            nodes.sort_by(|a, b| a.0.total_cmp(&b.0));
            (token, nodes.into_iter().map(|(_, n)| n).collect())
        })
        .collect()
}

/// The credential table of node `name`: the rotating grant, a reload that logs its window,
/// a health check that fails while `fail-NAME` exists, and a notify sink.
fn credentials(fleet: &Fleet, name: &str) -> String {
    let log = fleet.path("roll.log").display().to_string();
    let fail = fleet.path(&format!("fail-{name}")).display().to_string();
    let notified = fleet.path("notify.log").display().to_string();
    format!(
        r#"{base}reload = [ {{ command = ["sh", "-c", 'echo "start {name} $REFRESHD_EXPIRES_AT $(date +%s.%N)" >> {log}; sleep 0.3; echo "end {name} $REFRESHD_EXPIRES_AT $(date +%s.%N)" >> {log}'] }} ]
reload_order = "rolling"
reload_timeout = "20s"
health_check = ["sh", "-c", 'if [ -e {fail} ]; then echo "fail {name} $REFRESHD_EXPIRES_AT $(date +%s.%N)" >> {log}; exit 1; fi']

[[notify]]
type = "command"
argv = ["sh", "-c", 'echo "$REFRESHD_EVENT $REFRESHD_NODE $REFRESHD_CREDENTIAL" >> {notified}']
events = ["reload_stopped"]
"#,
        base = fleet.rotating("5s"),
    )
}

/// Ten rotations rolled one node at a time in node order, then a failing health check on
/// node-2 holds node-3's reload back and is told.
#[test]
fn rolling_reloads_take_turns_and_stop_on_a_failed_health_check() {
    let fleet = Fleet::start(12);
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| {
            let name = format!("node-{i}");
            let mut node = fleet.node(&name, "2s", &credentials(&fleet, &name));
            node.start();
            node
        })
        .collect();

    // Ten generations whose reloads every node ran.
    let complete = |lines: &[Line]| starts(lines).values().filter(|n| n.len() == 3).count();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while complete(&lines(&fleet)) < 10 {
        if std::time::Instant::now() > deadline {
            fleet.finish(&mut nodes);
            let log = std::fs::read_to_string(fleet.path("roll.log")).unwrap_or_default();
            for node in &nodes {
                let recorded = node.r.recorded().join("\n");
                let relevant: Vec<&str> = recorded
                    .lines()
                    .filter(|l| l.contains("reload") || l.contains("ERROR") || l.contains("WARN"))
                    .collect();
                eprintln!("{}:\n{}", node.name, relevant.join("\n"));
            }
            panic!("ten tokens reloaded by all three nodes: not within 120 s; the log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // A failing health check on node-2: node-3 does not reload that token, and is told.
    std::fs::write(fleet.path("fail-node-2"), "").unwrap();
    let failed = eventually(
        "node-2's health check failing",
        Duration::from_secs(30),
        || {
            lines(&fleet)
                .into_iter()
                .find(|l| l.what == "fail" && l.node == "node-2")
        },
    );
    eventually(
        "node-3 told that the roll stopped",
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(fleet.path("notify.log")).unwrap_or_default();
            text.contains("reload_stopped node-3 shared").then_some(())
        },
    );
    // Time for node-3 to have run had the roll not stopped (a reload is about 1.3 s).
    std::thread::sleep(Duration::from_secs(3));
    fleet.finish(&mut nodes);

    let all = lines(&fleet);
    let by_token = starts(&all);
    // No two windows overlap: at most one reload is running at any moment.
    let mut events: Vec<(f64, i32)> = all
        .iter()
        .filter_map(|l| match l.what.as_str() {
            "start" => Some((l.at, 1)),
            "end" => Some((l.at, -1)),
            _ => None,
        })
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut running = 0;
    for (at, step) in &events {
        running += step;
        assert!(running <= 1, "two reloads ran at once at {at}: {all:#?}");
    }
    // Each token's reloads in node order (a superseded roll may stop short, never reorder).
    for (token, order) in &by_token {
        let mut sorted = order.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(order, &sorted, "reloads of {token} out of node order");
    }
    let rolled = complete(&all);
    eprintln!(
        "rolling: {} tokens reloaded, {rolled} by all three nodes, {} token requests",
        by_token.len(),
        fleet.refreshes()
    );
    assert!(rolled >= 10);
    let held_back = by_token.get(&failed.token).cloned().unwrap_or_default();
    assert!(
        !held_back.contains(&"node-3".to_owned()),
        "node-3 reloaded {} after node-2's health check failed: {held_back:?}",
        failed.token
    );
    assert_eq!(
        fleet.invalid_grants(),
        0,
        "no refresh token was spent twice"
    );
    let notified = std::fs::read_to_string(fleet.path("notify.log")).unwrap();
    assert!(
        notified.contains("reload_stopped node-2 shared"),
        "{notified}"
    );
}
