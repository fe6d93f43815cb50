//! The core's modules form layers (`docs/design.md#layers`): each top-level module
//! uses only modules of the layers below its own, so no two modules import each
//! other and the tree reads bottom-up. This test reads the sources and fails on any
//! use of a module from the same or a higher layer, naming the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Bottom to top. A module may use any module of an earlier entry, none of its own
/// entry or later.
const LAYERS: &[&[&str]] = &[
    // Leaves: time sources, metric handles, background tasks, test hooks.
    &["clock", "metrics", "background", "testing"],
    &["decision"],
    &["algorithm"],
    &["config"],
    &["store"],
    &["engine"],
    &["error"],
    &["limiter"],
    &["registry"],
    // Surfaces, and the documentation's examples (doc tests only).
    &["global", "http", "watch", "documentation"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The `.rs` files of a top-level module (a file, or a directory and its file).
fn files_of(module: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let file = src().join(format!("{module}.rs"));
    if file.exists() {
        files.push(file);
    }
    let mut dirs = vec![src().join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("readable source directory").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The code of a file without its comments (doc links may point anywhere).
fn code(path: &Path) -> String {
    fs::read_to_string(path)
        .expect("readable source file")
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first path segment of every `crate::…` in `code`, including each item of a
/// `crate::{a, b::c}` group.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        found.insert(ident_at(&group[i..]));
                        item_start = false;
                    }
                    c if c.is_whitespace() => {}
                    _ => item_start = false,
                }
            }
        } else {
            found.insert(ident_at(rest));
        }
    }
    found
}

fn ident_at(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Items re-exported at the crate root, by the module that defines them
/// (`pub use limiter::{Limiter, …}` in lib.rs).
fn root_reexports() -> BTreeMap<String, String> {
    let lib = code(&src().join("lib.rs"));
    let mut items = BTreeMap::new();
    for statement in lib.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, names)) = path.split_once("::") else {
            continue;
        };
        for name in names.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !name.is_empty() {
                items.insert(name.to_owned(), module.to_owned());
            }
        }
    }
    items
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let reexports = root_reexports();
    let mut violations = Vec::new();
    for (level, layer) in LAYERS.iter().enumerate() {
        for module in *layer {
            let files = files_of(module);
            assert!(!files.is_empty(), "no source files for module `{module}`");
            for file in files {
                for used in crate_paths(&code(&file)) {
                    // A root item stands for the module it comes from; a name that is
                    // both (a module and a re-exported function) is the module.
                    let used = match layer_of(&used) {
                        Some(_) => used,
                        None => match reexports.get(&used) {
                            Some(module) => module.clone(),
                            None => continue,
                        },
                    };
                    if used == *module {
                        continue;
                    }
                    let Some(used_level) = layer_of(&used) else {
                        violations.push(format!(
                            "{}: uses `crate::{used}`, a module missing from LAYERS",
                            file.display()
                        ));
                        continue;
                    };
                    if used_level >= level {
                        violations.push(format!(
                            "{}: `{module}` (layer {level}) uses `{used}` (layer {used_level})",
                            file.display()
                        ));
                    }
                }
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn every_top_level_module_has_a_layer() {
    let lib = code(&src().join("lib.rs"));
    for line in lib.lines() {
        let line = line.trim();
        let declared = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "));
        if let Some(module) = declared {
            let module = module.trim_end_matches(';');
            assert!(
                layer_of(module).is_some(),
                "module `{module}` is in lib.rs but not in LAYERS"
            );
        }
    }
}
