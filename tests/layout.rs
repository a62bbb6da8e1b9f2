//! The library's folders are layers (`src/lib.rs` lists them): a module imports only its own
//! folder, the folders below it and `error`, and the module graph has no circle: no module of
//! `src/` imports a module that imports it back, directly or through others. Imports are read
//! from the source: every `crate::a::b` and `super::x` path (braced groups included) names the
//! deepest module it reaches; a `mod x;` declaration is not an import, a `pub use x::Y` is.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path ("web::backend") to its source, for every file of the library.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                walk(&path, &[prefix, &[name]].concat(), out);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let module = match name.as_str() {
                "lib" | "mod" => prefix.to_vec(),
                // The binary is a crate of its own, on top of the library.
                "main" | "cli" | "bench" if prefix.is_empty() => continue,
                _ => [prefix, &[name]].concat(),
            };
            let source = std::fs::read_to_string(&path).unwrap();
            // Unit tests may import what they like.
            let source = match source.find("#[cfg(test)]\nmod tests") {
                Some(end) => source[..end].to_string(),
                None => source,
            };
            out.insert(module.join("::"), source);
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut out,
    );
    out
}

/// The paths that follow `anchor` ("crate::" or "super::") in `source`, braced groups
/// expanded: `super::{a::{B, C}, d}` gives "a::B", "a::C" and "d".
fn paths_after(source: &str, anchor: &str) -> Vec<String> {
    fn expand(text: &str, prefix: &str, out: &mut Vec<String>) -> usize {
        // Reads one path (or group) from `text`, returns how many bytes it took.
        let mut i = 0;
        let bytes = text.as_bytes();
        let mut path = prefix.to_string();
        while i < bytes.len() {
            let c = bytes[i] as char;
            if c.is_alphanumeric() || c == '_' || c == ':' {
                path.push(c);
                i += 1;
            } else if c == '{' {
                i += 1;
                loop {
                    while i < bytes.len() && (bytes[i] as char).is_whitespace() {
                        i += 1;
                    }
                    if i >= bytes.len() || bytes[i] == b'}' {
                        return i + 1;
                    }
                    i += expand(&text[i..], &path, out);
                    while i < bytes.len()
                        && (bytes[i] == b',' || (bytes[i] as char).is_whitespace())
                    {
                        i += 1;
                    }
                }
            } else {
                break;
            }
        }
        out.push(path);
        i
    }
    let mut out = Vec::new();
    for (start, _) in source.match_indices(anchor) {
        expand(&source[start + anchor.len()..], "", &mut out);
    }
    out
}

/// The deepest module of `modules` that `path` (relative to the crate root) lies in.
fn module_of(path: &[&str], modules: &BTreeMap<String, String>) -> String {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|candidate| modules.contains_key(candidate))
        .unwrap_or_default()
}

fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    modules
        .iter()
        .map(|(module, source)| {
            let own: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
            // `super::` in a mod.rs is its own parent module's parent too: `mod.rs` is the module.
            let parent = &own[..own.len().saturating_sub(1)];
            let mut targets = BTreeSet::new();
            for path in paths_after(source, "crate::") {
                let parts: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
                targets.insert(module_of(&parts, modules));
            }
            for path in paths_after(source, "super::") {
                let parts: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
                targets.insert(module_of(&[parent, &parts[..]].concat(), modules));
            }
            // `pub use child::X` and `use child::X` in a parent.
            for line in source.lines().map(str::trim) {
                let rest = line.strip_prefix("pub use ").or(line.strip_prefix("use "));
                if let Some(first) = rest.and_then(|r| r.split("::").next()) {
                    let child = [&own[..], &[first]].concat().join("::");
                    if modules.contains_key(&child) {
                        targets.insert(child);
                    }
                }
            }
            targets.remove(module);
            (module.clone(), targets)
        })
        .collect()
}

/// The library's folders, lowest first: each may import only itself and those before it.
const LAYERS: [&str; 8] = [
    "error",
    "ops",
    "resnet",
    "weights",
    "data",
    "inference",
    "training",
    "web",
];

fn layer(module: &str) -> Option<usize> {
    let folder = module.split("::").next().unwrap_or_default();
    LAYERS.iter().position(|layer| *layer == folder)
}

/// Every import that reaches a folder above the importer's own, as "from -> to"; the crate
/// root (`lib.rs`, which only declares the folders and re-exports `error`) is not a layer.
fn upward_imports(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut upward = Vec::new();
    for (module, targets) in graph.iter().filter(|(module, _)| !module.is_empty()) {
        let own = layer(module).unwrap_or_else(|| panic!("{module} lies in no folder of LAYERS"));
        for target in targets {
            if target.is_empty() || layer(target).is_none_or(|to| to > own) {
                upward.push(format!("{module} -> {target}"));
            }
        }
    }
    upward
}

/// A circle through `start`, if there is one.
fn circle_through(start: &str, graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn search(
        at: &str,
        start: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in &graph[at] {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if search(next, start, graph, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    search(start, start, graph, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn each_folder_imports_only_itself_the_folders_below_and_error() {
    let modules = modules();
    let graph = imports(&modules);
    // Every folder is there and holds modules; the reader sees imports across folders.
    for folder in LAYERS {
        assert!(modules.contains_key(folder), "no {folder} module");
    }
    assert!(graph["training::session"].contains("training::finetune"));
    assert!(graph["inference::classifier"].contains("data::preprocess"));
    assert!(graph["resnet::block"].contains("ops"));
    let upward = upward_imports(&graph);
    assert!(
        upward.is_empty(),
        "imports of a folder above:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_reader_finds_an_import_upward() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("ops::convolve", vec!["error"]),
        (
            "resnet::block",
            vec!["ops", "resnet::config", "training::train"],
        ),
        ("training::train", vec!["resnet", ""]),
    ]
    .into_iter()
    .map(|(module, targets)| {
        let targets = targets.into_iter().map(String::from).collect();
        (module.to_string(), targets)
    })
    .collect();
    assert_eq!(
        upward_imports(&graph),
        ["resnet::block -> training::train", "training::train -> "]
    );
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let modules = modules();
    assert!(modules.contains_key("web::training") && modules.contains_key("training::session"));
    let graph = imports(&modules);
    // The reader sees what it must: these imports exist.
    assert!(
        graph["training::session"].contains("training::finetune"),
        "{:?}",
        graph["training::session"]
    );
    assert!(
        graph["web::training"].contains("web::convert"),
        "{:?}",
        graph["web::training"]
    );
    assert!(graph[""].contains("error"), "lib.rs re-exports error");
    let circles: Vec<String> = modules
        .keys()
        .filter_map(|module| circle_through(module, &graph))
        .map(|circle| circle.join(" -> "))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_reader_finds_a_circle() {
    let modules: BTreeMap<String, String> = [
        ("".to_string(), "pub use a::X;".to_string()),
        ("a".to_string(), "use super::b::Y;".to_string()),
        ("b".to_string(), "use crate::{a::X, Z};".to_string()),
    ]
    .into_iter()
    .collect();
    let graph = imports(&modules);
    assert_eq!(
        graph["b"],
        BTreeSet::from(["a".to_string(), "".to_string()])
    );
    assert!(circle_through("a", &graph).is_some());
}
