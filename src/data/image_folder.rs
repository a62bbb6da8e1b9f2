//! Image folders in torchvision's `ImageFolder` layout, read natively: one subfolder per
//! class, PNG and JPEG files in it. `DIR/train` and `DIR/val` when the folder has them,
//! else `DIR` itself (the caller splits off a validation share). Files that are not images
//! are skipped and counted; an image too large to decode safely is refused by its header
//! alone, before any pixel is decoded.

use std::path::{Path, PathBuf};

use crate::data::Dataset;
use crate::data::preprocess::{InputKind, Rgba, decode_image};
use crate::error::{Error, Result};

/// A folder's pictures, prepared for one input kind.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    pub train: Dataset,
    /// From `val/` beside `train/`, when there is one.
    pub validation: Option<Dataset>,
    /// Files left out, with why.
    pub skipped: Vec<(PathBuf, String)>,
}

fn io_error(path: &Path, error: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

/// The class subfolders of `dir`, sorted by name (torchvision's class order).
fn class_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let path = entry.map_err(|e| io_error(dir, e))?.path();
        if path.is_dir() {
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if !name.starts_with('.') {
                classes.push((name, path));
            }
        }
    }
    classes.sort();
    Ok(classes)
}

/// Reads `dir` (see the module's comment) for `input`.
pub fn read(dir: &Path, input: InputKind) -> Result<ImageFolder> {
    let (train_dir, val_dir) = if dir.join("train").is_dir() {
        let val = dir.join("val");
        (dir.join("train"), val.is_dir().then_some(val))
    } else {
        (dir.to_path_buf(), None)
    };
    let classes = class_dirs(&train_dir)?;
    if classes.len() < 2 {
        return Err(Error::Training(format!(
            "'{}' has {} class folder(s): an image folder needs one subfolder per class, at least two",
            train_dir.display(),
            classes.len()
        )));
    }
    let names: Vec<String> = classes.iter().map(|(name, _)| name.clone()).collect();
    let mut skipped = Vec::new();
    let train = read_classes(&classes, &names, input, &mut skipped)?;
    let validation = match val_dir {
        None => None,
        Some(val_dir) => {
            let val_classes = class_dirs(&val_dir)?;
            if let Some((extra, _)) = val_classes.iter().find(|(name, _)| !names.contains(name)) {
                return Err(Error::Training(format!(
                    "'{}' has a class '{extra}' that '{}' does not",
                    val_dir.display(),
                    train_dir.display()
                )));
            }
            Some(read_classes(&val_classes, &names, input, &mut skipped)?)
        }
    };
    if let Some(empty) = train.class_counts().iter().position(|&count| count == 0) {
        return Err(Error::Training(format!(
            "class '{}' ({}) has no pictures: add some, or remove the folder",
            names[empty],
            train_dir.join(&names[empty]).display()
        )));
    }
    Ok(ImageFolder {
        train,
        validation,
        skipped,
    })
}

fn read_classes(
    classes: &[(String, PathBuf)],
    names: &[String],
    input: InputKind,
    skipped: &mut Vec<(PathBuf, String)>,
) -> Result<Dataset> {
    let mut dataset = Dataset::for_input(input, names.to_vec());
    for (name, dir) in classes {
        let label = names
            .iter()
            .position(|n| n == name)
            .expect("a listed class");
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io_error(dir, e))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        for file in files {
            match picture(&file, input) {
                Ok(image) => dataset.push(&image, label)?,
                Err(reason) => skipped.push((file, reason)),
            }
        }
    }
    Ok(dataset)
}

/// One file decoded and prepared, or why it was left out.
fn picture(path: &Path, input: InputKind) -> std::result::Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (rgba, width, height) = decode_image(&bytes).map_err(|e| match e {
        Error::InvalidInput(reason) => reason,
        other => other.to_string(),
    })?;
    let image = Rgba::new(&rgba, width, height).map_err(|e| e.to_string())?;
    Ok(input.pixels(&image))
}
