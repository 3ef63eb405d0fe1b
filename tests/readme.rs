//! The README's walkthrough, run as written.
//!
//! The shell blocks of the README's "Run it" and "Five minutes with
//! agentca" sections are taken from README.md itself, in order, and run as
//! a new user would run them: from the clone's root, with a fresh `HOME`
//! (so the CA is created anew in `~/.local/share/agentca`), the real
//! `cargo run --release` of "Run it", the example service, curl, and the
//! Python and Go clients. The document cannot drift from the test.
//!
//! A block's fence may carry words after `sh`, which renderers ignore:
//!
//! - `background ready=TEXT`: "in another terminal": the block runs in a
//!   new `bash` (which sees only exported variables, as a new terminal
//!   would), and the walkthrough goes on once the block's output shows
//!   TEXT;
//! - `fails=TEXT`: the block must exit non-zero, with TEXT in its output
//!   (case-insensitive): a refusal the walkthrough shows;
//! - `expect=TEXT`: the block's output must contain TEXT.
//!
//! Every other block must exit 0. Everything the walkthrough starts is in
//! one process group, stopped when the test ends; `demo/`, where the
//! walkthrough writes, is removed before and after.
//!
//! Needs what the walkthrough uses: cargo, openssl, curl, python3 with
//! requests (Debian package python3-requests) and go (golang-go); the
//! ports 8443 and 9443 on 127.0.0.1 must be free.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The sections whose shell blocks make the walkthrough.
const SECTIONS: [&str; 2] = ["Run it", "Five minutes with agentca"];

/// The whole walkthrough's bound, the release build of "Run it" included.
const TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What a block's fence says of it.
#[derive(Debug, PartialEq)]
enum Kind {
    /// Must exit 0 (and show `expect`, if given).
    Run { expect: Option<String> },
    /// Another terminal: runs on; the walkthrough waits for `ready`.
    Background { ready: String },
    /// Must exit non-zero and show the text.
    Fails { shows: String },
}

#[derive(Debug)]
struct Block {
    /// The README line of the opening fence.
    line: usize,
    kind: Kind,
    code: String,
}

/// The kind a fence's info string (`sh background ready=listening`) says.
fn kind(info: &str, line: usize) -> Kind {
    let mut words = info.split_whitespace().skip(1);
    let mut background = false;
    let (mut ready, mut expect, mut fails) = (None, None, None);
    for word in words.by_ref() {
        assert!(
            !word.contains('\''),
            "README.md:{line}: no quotes in a fence's info string"
        );
        match word.split_once('=') {
            None if word == "background" => background = true,
            Some(("ready", t)) => ready = Some(t.to_owned()),
            Some(("expect", t)) => expect = Some(t.to_owned()),
            Some(("fails", t)) => fails = Some(t.to_owned()),
            _ => panic!("README.md:{line}: unknown word {word:?} in the fence's info string"),
        }
    }
    match (background, ready, expect, fails) {
        (true, Some(ready), None, None) => Kind::Background { ready },
        (false, None, expect, None) => Kind::Run { expect },
        (false, None, None, Some(shows)) => Kind::Fails { shows },
        _ => panic!(
            "README.md:{line}: a block is `background ready=TEXT`, `fails=TEXT` or `[expect=TEXT]`"
        ),
    }
}

/// The `sh` blocks of `sections`, in the document's order.
fn walkthrough(readme: &str, sections: &[&str]) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut section = None;
    let mut seen = Vec::new();
    // Inside a fence: `Some(Some(block))` collects a walkthrough block,
    // `Some(None)` skips another fence's lines (which are not headings).
    let mut fence: Option<Option<Block>> = None;
    for (i, text) in readme.lines().enumerate() {
        let line = i + 1;
        if let Some(open) = fence.as_mut() {
            if text.trim_end() == "```" {
                blocks.extend(fence.take().flatten());
            } else if let Some(block) = open {
                block.code.push_str(text);
                block.code.push('\n');
            }
            continue;
        }
        if let Some(title) = text.strip_prefix("## ") {
            section = sections.iter().find(|s| **s == title.trim()).copied();
            seen.extend(section);
        } else if let Some(info) = text.strip_prefix("```") {
            let ours = section.is_some() && info.split_whitespace().next() == Some("sh");
            fence = Some(ours.then(|| Block {
                line,
                kind: kind(info, line),
                code: String::new(),
            }));
        }
    }
    assert!(fence.is_none(), "README.md: a fence is not closed");
    for s in sections {
        assert!(seen.contains(s), "README.md has no section \"## {s}\"");
    }
    blocks
}

/// Helpers of the walkthrough's shell; `__at` names the block running,
/// and a failure says which README line it was, with its output.
const PRELUDE: &str = r####"set -euo pipefail
__line=0
__log=/dev/null
__at() { __line=$1; __log=$2; echo "### README.md:$1"; }
__fail() { echo "### README.md:$1: $2" >&2; exit 1; }
__shows() { grep -qiF -- "$3" "$2" || __fail "$1" "its output does not show '$3'"; }
__ready() {
    local deadline=$((SECONDS + 1500))
    until grep -qF -- "$4" "$2"; do
        if ! kill -0 "$3" 2>/dev/null; then
            cat "$2"; __fail "$1" "it stopped before its output showed '$4'"
        fi
        if ((SECONDS > deadline)); then
            cat "$2"; __fail "$1" "its output did not show '$4' in time"
        fi
        sleep 0.2
    done
    cat "$2"
}
trap 'status=$?; if ((status)); then echo "### README.md:$__line failed (exit $status); its output:"; cat "$__log"; fi' EXIT
"####;

/// The walkthrough as one bash script, the user's terminal: each block is
/// a file in `dir` that it sources (its variables and `cd` last) or, for
/// another terminal, starts with `bash`.
fn script(blocks: &[Block], dir: &Path) -> String {
    let mut s = String::from(PRELUDE);
    for (n, block) in blocks.iter().enumerate() {
        let file = dir.join(format!("{n}.sh"));
        std::fs::write(&file, &block.code).unwrap();
        let log = dir.join(format!("{n}.log"));
        let (file, log, line) = (file.display(), log.display(), block.line);
        s += &format!("__at {line} '{log}'\n");
        match &block.kind {
            Kind::Run { expect } => {
                s += &format!("source '{file}' > '{log}' 2>&1\ncat '{log}'\n");
                if let Some(text) = expect {
                    s += &format!("__shows {line} '{log}' '{text}'\n");
                }
            }
            Kind::Fails { shows } => {
                s += &format!(
                    "if (source '{file}') > '{log}' 2>&1; then\n    cat '{log}'; __fail {line} 'it should have failed'\nfi\ncat '{log}'\n__shows {line} '{log}' '{shows}'\n"
                );
            }
            Kind::Background { ready } => {
                s += &format!(
                    "bash -euo pipefail '{file}' > '{log}' 2>&1 &\n__ready {line} '{log}' $! '{ready}'\n"
                );
            }
        }
    }
    s + "echo '### the walkthrough ran to its end'\n"
}

/// Everything the walkthrough started (one process group): stopped with
/// SIGTERM, then SIGKILL.
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        let group = format!("-{}", self.0);
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let alive = Command::new("kill")
                .args(["-0", "--", &group])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
    }
}

/// The walkthrough's `demo/`, removed when the test ends.
struct Demo(PathBuf);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let blocks = walkthrough(&readme, &SECTIONS);
    for port in [8443, 9443] {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the walkthrough serves on 127.0.0.1:{port}, where something listens already"
        );
    }
    let demo = Demo(repo.join("demo"));
    let _ = std::fs::remove_dir_all(&demo.0);
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let dir = work.path().join("blocks");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let script_path = work.path().join("walkthrough.sh");
    std::fs::write(&script_path, script(&blocks, &dir)).unwrap();
    let output_path = work.path().join("output");
    let output = std::fs::File::create(&output_path).unwrap();

    let mut bash = Command::new("bash");
    bash.arg(&script_path)
        .current_dir(repo)
        .env("HOME", &home)
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .process_group(0);
    // A fresh HOME for the CA; the toolchains stay where they are installed.
    let real_home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
    for (var, default) in [
        ("CARGO_HOME", ".cargo"),
        ("RUSTUP_HOME", ".rustup"),
        ("PYENV_ROOT", ".pyenv"),
    ] {
        if std::env::var_os(var).is_none() && real_home.join(default).exists() {
            bash.env(var, real_home.join(default));
        }
    }
    let mut child = bash.spawn().expect("bash runs");
    let group = Group(child.id());
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(group);
    let _ = child.wait();
    let output = std::fs::read_to_string(&output_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => {
            assert!(output.contains("### the walkthrough ran to its end"));
        }
        Some(s) => panic!("the README walkthrough failed ({s}):\n{output}"),
        None => panic!("the README walkthrough did not end in {TIMEOUT:?}:\n{output}"),
    }
}

#[test]
fn fences_say_how_a_block_runs() {
    assert_eq!(kind("sh", 1), Kind::Run { expect: None });
    assert_eq!(
        kind("sh expect=OK", 1),
        Kind::Run {
            expect: Some("OK".into())
        }
    );
    assert_eq!(
        kind("sh fails=revoked", 1),
        Kind::Fails {
            shows: "revoked".into()
        }
    );
    assert_eq!(
        kind("sh background ready=listening", 1),
        Kind::Background {
            ready: "listening".into()
        }
    );
    for bad in [
        "sh later",
        "sh background",
        "sh fails=x expect=y",
        "sh ready=x",
    ] {
        assert!(std::panic::catch_unwind(|| kind(bad, 7)).is_err(), "{bad}");
    }
}

#[test]
fn only_the_walkthroughs_sh_blocks_are_taken() {
    let doc = "# t\n## Run it\n```sh background ready=up\nserve\n```\n```rust\n## Run it\nlet x;\n```\n\
               ## Other\n```sh\nnot this\n```\n## Walk\ntext\n```sh fails=no\nrefused\n```\n```text\nno\n```\n";
    let blocks = walkthrough(doc, &["Run it", "Walk"]);
    let code: Vec<_> = blocks.iter().map(|b| (b.line, b.code.as_str())).collect();
    assert_eq!(code, [(3, "serve\n"), (16, "refused\n")]);
    assert!(std::panic::catch_unwind(|| walkthrough(doc, &["Run it", "Missing"])).is_err());
}
