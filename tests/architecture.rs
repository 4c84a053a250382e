//! The layering rule of ARCHITECTURE.md, checked: every `crate::…` path in `src/` names a
//! module of a lower layer than the file's own (or the file's own module), as the table in
//! ARCHITECTURE.md assigns them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layer of each top-level module, read from ARCHITECTURE.md's table: rows
/// `| <layer> | `a`, `b` | … |`.
fn layers() -> BTreeMap<String, u32> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut layers = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(layer), Some(modules)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Ok(layer) = layer.parse::<u32>() else {
            continue;
        };
        for module in modules.split(',') {
            let module = module.trim().trim_matches('`');
            assert!(
                layers.insert(module.to_owned(), layer).is_none(),
                "{module} appears twice in ARCHITECTURE.md"
            );
        }
    }
    assert!(!layers.is_empty(), "no layer table in ARCHITECTURE.md");
    layers
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`lib` and `main` for the crate roots).
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .expect("a path")
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules a line of code names through `crate::`, `crate::{a, b::c}` included.
fn crate_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for item in inner.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

/// Every `(file, line number, used module)` that breaks the rule.
fn violations(layers: &BTreeMap<String, u32>) -> Vec<String> {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut broken = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let module = module_of(relative);
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(&own) = layers.get(&module) else {
            broken.push(format!(
                "src/{}: module `{module}` has no layer in ARCHITECTURE.md",
                relative.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable");
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for used in crate_paths(line) {
                if used == module {
                    continue;
                }
                match layers.get(&used) {
                    Some(&layer) if layer < own => {}
                    Some(&layer) => broken.push(format!(
                        "src/{}:{}: `{module}` (layer {own}) uses `{used}` (layer {layer})",
                        relative.display(),
                        number + 1
                    )),
                    None => broken.push(format!(
                        "src/{}:{}: `{module}` uses `{used}`, which has no layer in ARCHITECTURE.md",
                        relative.display(),
                        number + 1
                    )),
                }
            }
        }
    }
    broken
}

#[test]
fn no_module_uses_one_of_its_own_layer_or_above() {
    let broken = violations(&layers());
    assert!(
        broken.is_empty(),
        "layering broken (see ARCHITECTURE.md):\n{}",
        broken.join("\n")
    );
}

#[test]
fn every_top_level_module_has_a_layer() {
    let layers = layers();
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).expect("lib.rs");
    for line in lib.lines() {
        let declared = line
            .trim()
            .strip_prefix("pub mod ")
            .or_else(|| line.trim().strip_prefix("mod "))
            .and_then(|rest| rest.strip_suffix(';'));
        if let Some(module) = declared {
            assert!(
                layers.contains_key(module),
                "src/lib.rs declares `{module}`, which ARCHITECTURE.md gives no layer"
            );
        }
    }
}

#[test]
fn the_check_sees_paths_in_every_spelling() {
    assert_eq!(crate_paths("use crate::imap::encode::PartId;"), ["imap"]);
    assert_eq!(
        crate_paths("use crate::{http::AppState, imap::{Connection}};"),
        ["http", "imap"]
    );
    assert_eq!(
        crate_paths("let x = crate::events::EventHub::new(crate::mail::x());"),
        ["events", "mail"]
    );
    assert!(crate_paths("use async_imap::imap_proto::Response;").is_empty());
    assert!(crate_paths("let pub_crate::x = 1;").is_empty());
}

#[test]
fn a_lower_layer_using_a_higher_one_is_caught() {
    let mut layers = layers();
    // With `imap` moved to layer 0, its uses of `telemetry` (now its own layer) and of
    // `mail` (now above it) are both reported.
    layers.insert("imap".to_owned(), 0);
    let broken = violations(&layers);
    assert!(
        broken
            .iter()
            .any(|b| b.contains("`imap` (layer 0) uses `telemetry` (layer 0)")),
        "{broken:#?}"
    );
    assert!(
        broken
            .iter()
            .any(|b| b.contains("`imap` (layer 0) uses `mail` (layer 1)")),
        "{broken:#?}"
    );
}
