//! The man pages and shell completions that the packages install are generated, and must not
//! drift from their sources:
//! - `refreshd(1)`: the clap definitions (synopsis, commands, options), README.md's command
//!   table (exit statuses) and the hand-written sections in `docs/man/refreshd.1.md`;
//! - `refreshd.toml(5)`: `docs/man/refreshd.toml.5.md` around README.md's "Configuration
//!   reference", so the reference is written once;
//! - bash, zsh and fish completions: `clap_complete`.
//!
//! `BLESS=1 cargo test --test it docs` rewrites them. A second test renders each page the way
//! lintian does and fails on any groff warning.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

use crate::common::repo;

/// Markdown (CommonMark with tables and definition lists) as man(7) roff.
#[derive(Default)]
struct Roff {
    out: String,
    /// Fonts in force, innermost last (`B`, `I`); roman below them.
    fonts: Vec<char>,
    /// Open lists: `Some(next number)` for an ordered one.
    lists: Vec<Option<u64>>,
    /// Inside a list item or a definition, the first paragraph continues its tag line.
    continues_tag: bool,
    /// A heading's raw text, set out at its end (upper case for `.SH`).
    heading: Option<String>,
    table: Option<Table>,
    /// Collects finished tables here instead of setting them out, when set.
    tables: Option<Vec<Table>>,
    in_definition: bool,
    link: Option<String>,
    code_block: bool,
    /// `<!-- insert: NAME -->` markers in the source, and what replaces each.
    inserts: Vec<(String, String)>,
}

#[derive(Default)]
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
    row: Vec<String>,
    cell: String,
}

/// A character as roff input: escapes for roff's own characters, named glyphs for the
/// non-ASCII ones the sources use, and `\[uXXXX]` for any other.
fn escape_char(c: char, out: &mut String) {
    match c {
        '\\' => out.push_str("\\e"),
        '-' => out.push_str("\\-"),
        '→' => out.push_str("\\(->"),
        '←' => out.push_str("\\(<-"),
        '≥' => out.push_str("\\(>="),
        '≤' => out.push_str("\\(<="),
        '×' => out.push_str("\\(mu"),
        '±' => out.push_str("\\(+-"),
        '≈' => out.push_str("\\(~~"),
        '…' => out.push_str("\\&..."),
        '—' => out.push_str("\\(em"),
        '–' => out.push_str("\\(en"),
        '‘' => out.push_str("\\(oq"),
        '’' => out.push_str("\\(cq"),
        '“' => out.push_str("\\(lq"),
        '”' => out.push_str("\\(rq"),
        '§' => out.push_str("\\(sc"),
        '·' => out.push_str("\\(pc"),
        c if c.is_ascii() => out.push(c),
        c => {
            let _ = write!(out, "\\[u{:04X}]", c as u32);
        }
    }
}

impl Roff {
    fn target(&mut self) -> &mut String {
        if let Some(table) = &mut self.table {
            &mut table.cell
        } else {
            &mut self.out
        }
    }

    /// Text in the current font, escaped. A line never starts with a space, `.` or `'`.
    fn text(&mut self, text: &str) {
        if let Some(heading) = &mut self.heading {
            heading.push_str(text);
            return;
        }
        let out = self.target();
        for c in text.chars() {
            let at_line_start = out.is_empty() || out.ends_with('\n');
            if at_line_start && c == ' ' {
                continue;
            }
            if at_line_start && (c == '.' || c == '\'') {
                out.push_str("\\&");
            }
            escape_char(c, out);
        }
    }

    /// Ends the current line, if one is open.
    fn newline(&mut self) {
        let out = self.target();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
    }

    /// A request on a line of its own.
    fn request(&mut self, request: &str) {
        self.newline();
        let out = self.target();
        out.push_str(request);
        out.push('\n');
    }

    fn font(&mut self, font: Option<char>) {
        match font {
            Some(f) => self.fonts.push(f),
            None => {
                self.fonts.pop();
            }
        }
        let current = self.fonts.last().copied().unwrap_or('R');
        if self.heading.is_none() {
            let _ = write!(self.target(), "\\f{current}");
        }
    }

    fn paragraph(&mut self) {
        if std::mem::take(&mut self.continues_tag) {
            self.newline();
        } else if self.lists.is_empty() && !self.in_definition {
            self.request(".PP");
        } else {
            self.request(".IP");
        }
    }

    fn render(&mut self, markdown: &str) {
        let options = Options::ENABLE_TABLES | Options::ENABLE_DEFINITION_LIST;
        for event in Parser::new_ext(markdown, options) {
            self.event(event);
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(text) if self.code_block => {
                for line in text.lines() {
                    let out = self.target();
                    if line.starts_with('.') || line.starts_with('\'') {
                        out.push_str("\\&");
                    }
                    for c in line.chars() {
                        escape_char(c, out);
                    }
                    out.push('\n');
                }
            }
            Event::Text(text) => self.text(&text),
            Event::Code(code) => {
                self.font(Some('B'));
                self.text(&code);
                self.font(None);
            }
            Event::SoftBreak => {
                if self.heading.is_some() {
                    self.text(" ");
                } else if self.table.is_some() {
                    self.target().push(' ');
                } else {
                    self.target().push('\n');
                }
            }
            Event::HardBreak => self.request(".br"),
            Event::Html(html) | Event::InlineHtml(html) => {
                let marker = html.trim();
                if let Some(name) = marker
                    .strip_prefix("<!-- insert: ")
                    .and_then(|rest| rest.strip_suffix(" -->"))
                {
                    let (_, roff) = self
                        .inserts
                        .iter()
                        .find(|(n, _)| n == name)
                        .unwrap_or_else(|| panic!("no insert named {name:?}"));
                    let roff = roff.clone();
                    self.request(roff.trim_end());
                }
            }
            Event::Rule => self.request(".sp"),
            other => panic!("the man page sources use no {other:?}"),
        }
    }

    fn start(&mut self, tag: Tag) {
        match tag {
            Tag::Paragraph => {
                if self.table.is_none() {
                    self.paragraph();
                }
            }
            Tag::Heading { .. } => self.heading = Some(String::new()),
            Tag::BlockQuote(_) => self.request(".RS 4"),
            Tag::CodeBlock(_) => {
                self.request(".sp");
                self.request(".RS 4");
                self.request(".nf");
                self.code_block = true;
            }
            Tag::HtmlBlock => {}
            Tag::List(first) => {
                if !self.lists.is_empty() {
                    self.request(".RS");
                }
                self.lists.push(first);
                self.continues_tag = false;
            }
            Tag::Item => {
                let bullet = match self.lists.last_mut() {
                    Some(Some(n)) => {
                        let bullet = format!(".IP {n}. 4");
                        *n += 1;
                        bullet
                    }
                    _ => ".IP \\(bu 2".to_owned(),
                };
                self.request(&bullet);
                self.continues_tag = true;
            }
            Tag::DefinitionList => {}
            Tag::DefinitionListTitle => self.request(".TP"),
            Tag::DefinitionListDefinition => {
                self.newline();
                self.continues_tag = true;
                self.in_definition = true;
            }
            Tag::Table(_) => self.table = Some(Table::default()),
            Tag::TableHead | Tag::TableRow => {}
            Tag::TableCell => {}
            Tag::Emphasis => self.font(Some('I')),
            Tag::Strong => self.font(Some('B')),
            Tag::Link { dest_url, .. } => self.link = Some(dest_url.to_string()),
            other => panic!("the man page sources use no {other:?}"),
        }
    }

    fn end(&mut self, tag: TagEnd) {
        match tag {
            TagEnd::Paragraph => {
                if self.table.is_none() {
                    self.newline();
                }
            }
            TagEnd::Heading(level) => {
                let text = self.heading.take().unwrap_or_default();
                let (request, text) = match level {
                    HeadingLevel::H1 | HeadingLevel::H2 => (".SH", text.to_uppercase()),
                    _ => (".SS", text),
                };
                let mut line = format!("{request} ");
                for c in text.chars() {
                    escape_char(c, &mut line);
                }
                self.request(&line);
            }
            TagEnd::BlockQuote(_) => self.request(".RE"),
            TagEnd::CodeBlock => {
                self.code_block = false;
                self.request(".fi");
                self.request(".RE");
            }
            TagEnd::HtmlBlock => {}
            TagEnd::List(_) => {
                self.lists.pop();
                if !self.lists.is_empty() {
                    self.request(".RE");
                }
            }
            TagEnd::Item => self.continues_tag = false,
            TagEnd::DefinitionList | TagEnd::DefinitionListTitle => {}
            TagEnd::DefinitionListDefinition => {
                self.continues_tag = false;
                self.in_definition = false;
            }
            TagEnd::TableCell => {
                let table = self.table.as_mut().expect("in a table");
                let cell = std::mem::take(&mut table.cell);
                table.row.push(cell.trim().to_owned());
            }
            TagEnd::TableHead => {
                let table = self.table.as_mut().expect("in a table");
                table.head = std::mem::take(&mut table.row);
            }
            TagEnd::TableRow => {
                let table = self.table.as_mut().expect("in a table");
                let row = std::mem::take(&mut table.row);
                table.rows.push(row);
            }
            TagEnd::Table => {
                let table = self.table.take().expect("in a table");
                match &mut self.tables {
                    Some(tables) => tables.push(table),
                    None => self.table_as_tagged_paragraphs(table),
                }
            }
            TagEnd::Emphasis | TagEnd::Strong => self.font(None),
            TagEnd::Link => {
                let url = self.link.take().unwrap_or_default();
                if url.starts_with("https://") || url.starts_with("http://") {
                    self.text(&format!(" <{url}>"));
                }
            }
            other => panic!("the man page sources use no {other:?}"),
        }
    }

    /// A table as one tagged paragraph per row: the first cell is the tag, the last the
    /// text, and the cells between follow as `header: value` lines.
    fn table_as_tagged_paragraphs(&mut self, table: Table) {
        for row in &table.rows {
            self.request(".TP");
            self.out.push_str(&row[0]);
            self.out.push('\n');
            let last = row.len() - 1;
            if last > 0 {
                self.out.push_str(&row[last]);
                self.out.push('\n');
            }
            for (i, cell) in row.iter().enumerate().take(last).skip(1) {
                if cell.is_empty() {
                    continue;
                }
                self.request(".br");
                let mut header = String::new();
                for c in table.head[i].chars() {
                    escape_char(c, &mut header);
                }
                let _ = writeln!(self.out, "\\fI{header}\\fR: {cell}");
            }
        }
    }
}

fn roff(markdown: &str, inserts: Vec<(String, String)>) -> String {
    let mut roff = Roff {
        inserts,
        ..Roff::default()
    };
    roff.render(markdown);
    roff.out
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// README.md from the line `## {title}` to the next `## ` heading, without the heading.
fn readme_section(title: &str) -> String {
    let readme = read("README.md");
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("README.md has no section {title:?}"))
        + title.len()
        + 5;
    let end = readme[start..]
        .find("\n## ")
        .map_or(readme.len(), |i| start + i);
    readme[start..end].to_owned()
}

/// A roff-escaped string from clap's help, whose Markdown-style backticks are dropped.
fn esc(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().filter(|c| *c != '`') {
        escape_char(c, &mut out);
    }
    out
}

/// The name an argument's value goes by: its value name, else its id in capitals.
fn value_name(arg: &clap::Arg) -> String {
    arg.get_value_names()
        .and_then(|names| names.first())
        .map(|n| n.to_string())
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase())
}

/// One argument as the synopsis shows it: `[-c FILE]`, `NAME...`.
fn synopsis_arg(arg: &clap::Arg) -> String {
    let value = value_name(arg);
    let repeats = matches!(arg.get_action(), clap::ArgAction::Append);
    if arg.is_positional() {
        let text = format!(
            "\\fI{}\\fR{}",
            esc(&value),
            if repeats { "\\&..." } else { "" }
        );
        if arg.is_required_set() {
            text
        } else {
            format!("[{text}]")
        }
    } else {
        let flag = match (arg.get_short(), arg.get_long()) {
            (Some(short), _) => format!("\\-{short}"),
            (None, Some(long)) => format!("\\-\\-{}", esc(long)),
            (None, None) => panic!("an option without a flag: {}", arg.get_id()),
        };
        let takes_value = arg.get_action().takes_values();
        let value = if takes_value {
            format!(" \\fI{}\\fR", esc(&value))
        } else {
            String::new()
        };
        format!("[\\fB{flag}\\fR{value}]")
    }
}

fn visible_args(command: &clap::Command) -> impl Iterator<Item = &clap::Arg> {
    command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !["help", "version"].contains(&a.get_id().as_str()))
}

/// `.TP` paragraphs for the options and operands of `command` (`--help` only when `global`).
fn options(command: &clap::Command, global: bool) -> String {
    let mut out = String::new();
    let args = command
        .get_arguments()
        .filter(|a| !a.is_hide_set() && (global || a.get_id() != "help"));
    for arg in args {
        let mut tag = Vec::new();
        if let Some(short) = arg.get_short() {
            tag.push(format!("\\fB\\-{short}\\fR"));
        }
        if let Some(long) = arg.get_long() {
            tag.push(format!("\\fB\\-\\-{}\\fR", esc(long)));
        }
        let value = value_name(arg);
        let mut tag = tag.join(", ");
        if arg.is_positional() {
            tag = format!("\\fI{}\\fR", esc(&value));
        } else if arg.get_action().takes_values() {
            let _ = write!(tag, " \\fI{}\\fR", esc(&value));
        }
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let mut text = esc(&help);
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() && arg.get_action().takes_values() {
            let _ = write!(text, " [default: {}]", esc(&defaults.join(", ")));
        }
        if let Some(env) = arg.get_env() {
            let _ = write!(text, " [env: {}]", esc(&env.to_string_lossy()));
        }
        let _ = write!(out, ".TP\n{tag}\n{text}\n");
    }
    out
}

/// refreshd(1).
fn refreshd_1() -> String {
    let mut command = refreshd::cli::command();
    command.build();
    let version = command.get_version().unwrap_or_default().to_owned();
    let subcommands: Vec<&clap::Command> = command
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .collect();

    let mut synopsis = String::new();
    for sub in &subcommands {
        let args: Vec<String> = visible_args(sub).map(synopsis_arg).collect();
        let _ = write!(
            synopsis,
            ".br\n\\fBrefreshd {}\\fR {}\n",
            sub.get_name(),
            args.join(" ")
        );
    }
    let synopsis = synopsis.trim_start_matches(".br\n").to_owned();

    let mut commands = String::from(".SH COMMANDS\n");
    for sub in &subcommands {
        let _ = writeln!(
            commands,
            ".SS {}",
            esc(&format!("refreshd {}", sub.get_name()))
        );
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        let _ = writeln!(commands, ".PP\n{}.", esc(about.trim_end_matches('.')));
        commands.push_str(&options(sub, false));
    }
    let global = format!(".SH OPTIONS\n{}", options(&command, true));

    // The exit statuses: the first and last columns of README.md's command table.
    let mut reader = Roff {
        tables: Some(Vec::new()),
        ..Roff::default()
    };
    reader.render(&readme_section("Commands"));
    let table = reader
        .tables
        .and_then(|mut tables| (!tables.is_empty()).then(|| tables.remove(0)))
        .expect("README.md's Commands section has a table");
    assert_eq!(
        table.head.last().map(String::as_str),
        Some("exit status"),
        "README.md's command table ends with the exit status"
    );
    let mut exit = String::from(".SH EXIT STATUS\n");
    for row in &table.rows {
        let _ = write!(exit, ".TP\n{}\n{}\n", row[0], row[row.len() - 1]);
    }

    let body = roff(
        &read("docs/man/refreshd.1.md"),
        vec![
            ("commands".to_owned(), commands),
            ("options".to_owned(), global),
            ("exit status".to_owned(), exit),
        ],
    );
    format!(
        ".\\\" Generated from docs/man/refreshd.1.md, the clap definitions and README.md; do not edit.\n\
         .TH REFRESHD 1 \"\" \"refreshd {version}\" \"User Commands\"\n\
         .nh\n\
         .ad l\n\
         .SH NAME\n\
         refreshd \\- keeps short\\-lived credentials fresh in .env, .pgpass and token files\n\
         .SH SYNOPSIS\n\
         {synopsis}\
         {body}"
    )
}

/// refreshd.toml(5).
fn refreshd_toml_5() -> String {
    let version = refreshd::cli::command()
        .get_version()
        .unwrap_or_default()
        .to_owned();
    let reference = roff(&readme_section("Configuration reference"), Vec::new());
    let body = roff(
        &read("docs/man/refreshd.toml.5.md"),
        vec![("configuration reference".to_owned(), reference)],
    );
    format!(
        ".\\\" Generated from docs/man/refreshd.toml.5.md and README.md; do not edit.\n\
         .TH REFRESHD.TOML 5 \"\" \"refreshd {version}\" \"File Formats\"\n\
         .nh\n\
         .ad l\n\
         .SH NAME\n\
         refreshd.toml \\- configuration file of refreshd\n\
         {body}"
    )
}

fn completion(shell: clap_complete::Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut refreshd::cli::command(), "refreshd", &mut out);
    String::from_utf8(out).unwrap()
}

/// Every generated file: its path and what it must hold.
fn generated() -> Vec<(&'static str, String)> {
    use clap_complete::Shell;
    vec![
        ("packaging/man/refreshd.1", refreshd_1()),
        ("packaging/man/refreshd.toml.5", refreshd_toml_5()),
        (
            "packaging/completions/refreshd.bash",
            completion(Shell::Bash),
        ),
        ("packaging/completions/refreshd.zsh", completion(Shell::Zsh)),
        (
            "packaging/completions/refreshd.fish",
            completion(Shell::Fish),
        ),
    ]
}

#[test]
fn man_pages_and_completions_match_their_sources() {
    let bless = std::env::var_os("BLESS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (path, wanted) in generated() {
        let full = repo().join(path);
        let held = std::fs::read_to_string(&full).unwrap_or_default();
        if held == wanted {
            continue;
        }
        if bless {
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, &wanted).unwrap();
        } else {
            stale.push(path);
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} no longer match their sources (the clap definitions, README.md, docs/man/); \
         run `BLESS=1 cargo test --test it docs` and commit the result"
    );
}

/// What `man` prints while rendering `page` the way lintian checks it, warnings on.
fn man_warnings(page: &Path) -> (String, String) {
    let output = Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z"])
        .arg(page)
        .env("MANWIDTH", "80")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("`man` runs (Debian: apt-get install man-db groff-base)");
    assert!(output.status.success(), "man -l {} failed", page.display());
    let rendered = Command::new("groff")
        .args(["-man", "-Tutf8", "-P-c", "-P-b", "-P-u"])
        .arg(page)
        .output()
        .expect("`groff` runs (Debian: apt-get install groff-base)");
    (
        String::from_utf8_lossy(&output.stderr).into_owned(),
        String::from_utf8_lossy(&rendered.stdout).into_owned(),
    )
}

#[test]
fn man_pages_render_without_warnings_and_cover_the_reference() {
    let page = |name: &str| -> PathBuf { repo().join("packaging/man").join(name) };
    let (warnings, text) = man_warnings(&page("refreshd.1"));
    assert!(warnings.is_empty(), "refreshd.1:\n{warnings}");
    for needle in [
        "SYNOPSIS",
        "refreshd once",
        "--force",
        "EXIT STATUS",
        "78 invalid config",
        "FILES",
        "ENVIRONMENT",
        "REFRESHD_CONFIG",
        "SIGNALS",
        "SIGHUP",
        "EXAMPLES",
        "refreshd.toml(5)",
    ] {
        assert!(
            text.contains(needle),
            "refreshd.1 lacks {needle:?}:\n{text}"
        );
    }
    for sub in refreshd::cli::command().get_subcommands() {
        let heading = format!("refreshd {}", sub.get_name());
        assert!(text.contains(&heading), "refreshd.1 lacks {heading:?}");
    }

    let (warnings, text) = man_warnings(&page("refreshd.toml.5"));
    assert!(warnings.is_empty(), "refreshd.toml.5:\n{warnings}");
    for needle in [
        "daemon.state_dir",
        "min_remaining",
        "oauth-client-credentials",
        "google-service-account",
        "expires_at_key",
        "write = \"atomic\"",
        "systemd_unit",
        "Child processes",
        "refreshd(1)",
    ] {
        assert!(
            text.contains(needle),
            "refreshd.toml.5 lacks {needle:?}:\n{text}"
        );
    }
}

/// A merge left no conflict markers in what operators read.
#[test]
fn no_conflict_markers_in_the_docs() {
    for path in [
        "README.md",
        "docs/design.md",
        "docs/man/refreshd.1.md",
        "docs/man/refreshd.toml.5.md",
        "config.example.toml",
    ] {
        let text = read(path);
        for (i, line) in text.lines().enumerate() {
            assert!(
                !(line.starts_with("<<<<<<< ")
                    || line.starts_with(">>>>>>> ")
                    || line == "======="),
                "{path}:{}: a merge conflict marker: {line}",
                i + 1
            );
        }
    }
}
