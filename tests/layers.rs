//! The module layers of docs/ARCHITECTURE.md, checked: every `crate::` path in a module's code
//! (comments and `#[cfg(test)]` code aside) names a module on an earlier layer, so dependency
//! arrows point one way and a new import that would close a cycle fails here, naming the file.

use std::path::Path;

/// Bottom first; a module may use only modules before it. Kept in the order of the document.
const LAYERS: &[&str] = &[
    "avro",
    "pii",
    "tokens",
    "telemetry",
    "call",
    "time",
    "shutdown",
    "config",
    "retry",
    "kafka",
    "provider",
    "store",
    "budget",
    "records_io",
    "metering",
    "policy",
    "stage",
    "runner",
    "pipeline",
    "ops",
    "console",
    "devstack",
    "mock_provider",
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|m| *m == module)
}

/// The code of a file without comments and without its trailing `#[cfg(test)]` module.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Modules named right after `crate::`, including each name of a `use crate::{a, b::c}` group.
fn used(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find('}').unwrap_or(group.len())];
            for item in body.split(',') {
                let name = item.trim().split("::").next().unwrap_or_default();
                if !name.is_empty() {
                    out.push(name.to_owned());
                }
            }
        } else {
            let name: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            out.push(name);
        }
    }
    out
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The files a `#[cfg(test)]` module brings in with `#[path = "…"]` (test code, like the
/// trailing module [`code`] leaves out), resolved beside the file that names them.
fn test_files(all: &[std::path::PathBuf]) -> std::collections::BTreeSet<std::path::PathBuf> {
    let mut out = std::collections::BTreeSet::new();
    for path in all {
        let text = std::fs::read_to_string(path).expect("readable");
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for pair in lines.windows(2) {
            let named = pair[1].strip_prefix("#[path = \"").and_then(|r| r.strip_suffix("\"]"));
            if let (Some(name), true) = (named, pair[0] == "#[cfg(test)]") {
                out.insert(path.parent().expect("a directory").join(name));
            }
        }
    }
    out
}

#[test]
fn every_import_points_to_an_earlier_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let tests = test_files(&all);
    let mut wrong = Vec::new();
    let mut unlisted = std::collections::BTreeSet::new();
    for path in &all {
        let rel = path.strip_prefix(&src).expect("under src");
        let top = rel.iter().next().expect("a component").to_string_lossy().replace(".rs", "");
        let test_code = rel.ends_with("tests.rs") || tests.contains(path);
        if matches!(top.as_str(), "lib" | "main" | "cli") || test_code {
            continue;
        }
        let Some(own) = rank(&top) else {
            unlisted.insert(top);
            continue;
        };
        let text = std::fs::read_to_string(path).expect("readable");
        for module in used(&code(&text)) {
            match rank(&module) {
                Some(r) if r < own || module == top => {}
                Some(_) => wrong.push(format!("{} uses crate::{module}", rel.display())),
                None => {
                    unlisted.insert(module);
                }
            }
        }
    }
    assert!(unlisted.is_empty(), "modules missing from LAYERS (and the document): {unlisted:?}");
    assert!(wrong.is_empty(), "imports pointing up the layers:\n{}", wrong.join("\n"));
}

#[test]
fn test_modules_brought_in_by_path_are_test_code_and_nothing_else_is() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let tests = test_files(&all);
    assert!(tests.contains(&src.join("policy/semantic/store_tests.rs")), "{tests:?}");
    assert!(tests.contains(&src.join("runner/partitions_tests.rs")), "{tests:?}");
    assert!(tests
        .iter()
        .all(|t| t.file_name().is_some_and(|n| n.to_string_lossy().ends_with("tests.rs"))));
}

#[test]
fn the_reader_of_imports_sees_groups_and_paths() {
    let found = used("use crate::{avro::Codec, kafka};\nlet x = crate::time::now_ms();");
    assert_eq!(found, ["avro", "kafka", "time"]);
    assert_eq!(code("a\n// crate::x\nb\n#[cfg(test)]\ncrate::y"), "a\nb");
}

/// Sibling files a file of a folder names through `super::<file>` or `crate::<path>::<file>`.
fn siblings(code: &str, folder: &str, names: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let crate_prefix = format!("crate::{}::", folder.replace('/', "::"));
    for prefix in ["super::", crate_prefix.as_str()] {
        for (i, _) in code.match_indices(prefix) {
            let rest = &code[i + prefix.len()..];
            let mut heads = Vec::new();
            if let Some(group) = rest.strip_prefix('{') {
                let body = &group[..group.find('}').unwrap_or(group.len())];
                heads.extend(body.split(',').map(|item| item.trim().split("::").next()));
            } else {
                heads.push(rest.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').next());
            }
            for head in heads.into_iter().flatten() {
                if names.iter().any(|n| n == head) && !out.iter().any(|o| o == head) {
                    out.push(head.to_owned());
                }
            }
        }
    }
    out
}

#[test]
fn no_import_circle_among_the_files_of_a_folder() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut folders: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
    for path in &all {
        let rel = path.strip_prefix(&src).expect("under src");
        let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) else { continue };
        let name = rel.file_stem().expect("a name").to_string_lossy().into_owned();
        if name == "mod" || name == "tests" {
            continue;
        }
        let text = code(&std::fs::read_to_string(path).expect("readable"));
        folders.entry(parent.to_string_lossy().into_owned()).or_default().push((name, text));
    }
    let mut circles = Vec::new();
    for (folder, members) in &folders {
        let names: Vec<String> = members.iter().map(|(n, _)| n.clone()).collect();
        let edges: Vec<(String, Vec<String>)> = members
            .iter()
            .map(|(n, text)| {
                let to = siblings(text, folder, &names).into_iter().filter(|s| s != n).collect();
                (n.clone(), to)
            })
            .collect();
        // Depth-first search for a back edge.
        fn visit(
            n: &str,
            edges: &[(String, Vec<String>)],
            path: &mut Vec<String>,
            done: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|p| p == n) {
                return Some(path[at..].iter().cloned().chain([n.to_owned()]).collect());
            }
            if done.iter().any(|d| d == n) {
                return None;
            }
            path.push(n.to_owned());
            let next = edges.iter().find(|(m, _)| m == n).map(|(_, to)| to.clone());
            for to in next.unwrap_or_default() {
                if let Some(c) = visit(&to, edges, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.push(n.to_owned());
            None
        }
        let mut done = Vec::new();
        for name in &names {
            if let Some(c) = visit(name, &edges, &mut Vec::new(), &mut done) {
                circles.push(format!("src/{folder}: {}", c.join(" → ")));
                break;
            }
        }
    }
    assert!(circles.is_empty(), "import circles between files:\n{}", circles.join("\n"));
}

#[test]
fn sibling_imports_are_read_through_super_and_crate_paths() {
    let names = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
    let code = "use super::{a::X, b};\nlet y = crate::ops::dlq::c::f();\nsuper::d::g()";
    assert_eq!(siblings(code, "ops/dlq", &names), ["a", "b", "c"]);
}
