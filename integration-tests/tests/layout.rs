//! The house rules of the workspace (STYLE.md "Layout"), checked on the sources so they cannot
//! slip again: proto/ is the wire contract only, control/ depends on neither the collector nor
//! the storer, storer/src/db imports nothing from the pipeline, the pure decoders do not reach
//! into the stateful flow/, no crate has an import cycle between its modules, and no source file
//! grows past ~700 lines before its tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lines a source file may have before its `#[cfg(test)]` module.
const MAX_LINES_BEFORE_TESTS: usize = 700;
/// Non-comment, non-blank Rust lines the wire-contract crate may have.
const MAX_PROTO_LINES: usize = 600;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The `[dependencies]` table of a manifest.
fn dependencies(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some((name, _)) = line.split_once(['=', '.']) {
            deps.push(name.trim().to_owned());
        }
    }
    deps
}

#[test]
fn control_depends_on_neither_collector_nor_storer() {
    let deps = dependencies(&workspace().join("control/Cargo.toml"));
    assert!(deps.iter().any(|d| d == "sipcapture-runtime"), "{deps:?}");
    for forbidden in [
        "sipcapture-collector",
        "sipcapture-storer",
        "sipcapture-cli",
    ] {
        assert!(
            !deps.iter().any(|d| d == forbidden),
            "control depends on {forbidden}"
        );
    }
    let sources = rust_files(&workspace().join("control/src"));
    for file in sources {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("sipcapture_collector::") && !text.contains("sipcapture_storer::"),
            "{} uses the collector or storer",
            file.display()
        );
    }
}

#[test]
fn proto_is_the_wire_contract_only() {
    let root = workspace().join("proto");
    let deps = dependencies(&root.join("Cargo.toml"));
    assert_eq!(
        deps,
        ["prost", "tonic", "tonic-prost"],
        "proto pulls {deps:?}"
    );
    let mut lines = 0;
    for file in rust_files(&root.join("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        lines += text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .count();
    }
    assert!(
        lines <= MAX_PROTO_LINES,
        "proto/src has {lines} code lines (at most {MAX_PROTO_LINES})"
    );
}

#[test]
fn storer_db_imports_nothing_from_the_pipeline() {
    for file in rust_files(&workspace().join("storer/src/db")) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("crate::pipeline") && !text.contains("super::super::pipeline"),
            "{} imports the pipeline",
            file.display()
        );
    }
}

#[test]
fn no_source_file_over_700_lines_before_its_tests() {
    let mut long = Vec::new();
    for krate in ["proto", "runtime", "collector", "storer", "control", "cli"] {
        for file in rust_files(&workspace().join(krate).join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            // A module that is all tests (`corpus_tests.rs`, declared under #[cfg(test)]) is
            // not counted.
            if file
                .file_stem()
                .is_some_and(|s| s.to_string_lossy().ends_with("tests"))
            {
                continue;
            }
            let before = text
                .lines()
                .position(|l| l.starts_with("#[cfg(test)]"))
                .unwrap_or_else(|| text.lines().count());
            if before > MAX_LINES_BEFORE_TESTS {
                long.push(format!("{} ({before})", file.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_LINES_BEFORE_TESTS} lines: {long:?}"
    );
}

/// The module path of a source file within its crate (`db::insert` for `src/db/insert.rs`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// Every `crate::a::b…` path a file names outside its tests, as module paths.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let code = match text.find("\n#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let path: Vec<String> = after
                .split("::")
                .map(|seg| {
                    seg.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|seg| seg.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
                .collect();
            if !path.is_empty() && !rest[..i].ends_with("sipcapture_") {
                out.push(path);
            }
            rest = after;
        }
    }
    out
}

/// Import edges between the `depth`-level modules of a crate (`a` → `b` when a file of `a`
/// names `crate::b…`).
fn module_graph(krate: &str, depth: usize) -> BTreeMap<String, BTreeSet<String>> {
    let src = workspace().join(krate).join("src");
    let files = rust_files(&src);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    let key = |path: &[String]| -> String {
        // The longest known module prefix, cut to `depth` levels.
        let known = (1..=path.len())
            .rev()
            .find(|n| modules.contains(&path[..*n]))
            .unwrap_or(0);
        path[..known.min(depth)].join("::")
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        if file.components().any(|c| c.as_os_str() == "bin") {
            continue;
        }
        let from = key(&module_of(&src, file));
        let text = std::fs::read_to_string(file).unwrap();
        for path in crate_paths(&text) {
            let to = key(&path);
            if to.is_empty() || from.is_empty() || to == from {
                continue;
            }
            // A parent module naming its own child (re-exports, wiring) is not a cycle.
            if to.starts_with(&format!("{from}::")) || from.starts_with(&format!("{to}::")) {
                continue;
            }
            graph.entry(from.clone()).or_default().insert(to);
        }
    }
    graph
}

/// One cycle of the graph, if any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn no_import_cycles_between_modules() {
    for (krate, depth) in [
        ("runtime", 1),
        ("collector", 2),
        ("storer", 2),
        ("control", 1),
        ("cli", 1),
    ] {
        let graph = module_graph(krate, depth);
        assert!(
            find_cycle(&graph).is_none(),
            "{krate}: import cycle {:?}\ngraph: {graph:#?}",
            find_cycle(&graph)
        );
    }
}

#[test]
fn pure_decoders_do_not_use_the_stateful_flow() {
    let src = workspace().join("collector/src/decode");
    for file in rust_files(&src) {
        if file.strip_prefix(&src).unwrap().starts_with("flow") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = text.split("\n#[cfg(test)]").next().unwrap_or_default();
        assert!(
            !code.contains("decode::flow") && !code.contains("super::flow"),
            "{} uses decode::flow",
            file.display()
        );
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&graph), None);
    graph.entry("c".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
