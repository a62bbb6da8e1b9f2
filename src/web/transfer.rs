//! Transfer learning as JavaScript sees it: a head trained on the embeddings the worker kept
//! (`Classifier.embedImage`, once per picture), and the whole model with it as a weight file.

use wasm_bindgen::prelude::*;

use super::convert::{count, evaluation_object, js_error, number};
use crate::training::transfer::{self, HeadOptions, HeadReport};

/// A classifier trained on embeddings, and how its training went.
#[wasm_bindgen]
pub struct TrainedHead {
    report: HeadReport,
}

/// `trainHead(embeddings, labels, numClasses, options)`: embeddings flat, one per label;
/// options: epochs, learningRate, weightDecay, validationFraction, seed. Milliseconds for a
/// hundred pictures, so it answers at once.
#[wasm_bindgen(js_name = trainHead)]
pub fn train_head(
    embeddings: Vec<f32>,
    labels: Vec<u32>,
    num_classes: usize,
    options: JsValue,
) -> std::result::Result<TrainedHead, JsValue> {
    let defaults = HeadOptions::DEFAULT;
    let options = HeadOptions {
        epochs: count(&options, "epochs", defaults.epochs).map_err(js_error)?,
        learning_rate: number(&options, "learningRate", defaults.learning_rate)
            .map_err(js_error)?,
        weight_decay: number(&options, "weightDecay", defaults.weight_decay).map_err(js_error)?,
        validation_fraction: number(&options, "validationFraction", defaults.validation_fraction)
            .map_err(js_error)?,
        seed: count(&options, "seed", defaults.seed as usize).map_err(js_error)? as u64,
    };
    let labels: Vec<usize> = labels.into_iter().map(|label| label as usize).collect();
    let report =
        transfer::train_head(&embeddings, &labels, num_classes, &options).map_err(js_error)?;
    Ok(TrainedHead { report })
}

#[wasm_bindgen]
impl TrainedHead {
    /// `{accuracy, loss, count, confusion, perClass}` on the held-out embeddings, or null.
    #[wasm_bindgen(getter)]
    pub fn validation(&self) -> std::result::Result<JsValue, JsValue> {
        match &self.report.validation {
            Some(evaluation) => evaluation_object(evaluation).map_err(js_error),
            None => Ok(JsValue::NULL),
        }
    }

    #[wasm_bindgen(getter)]
    pub fn train(&self) -> std::result::Result<JsValue, JsValue> {
        evaluation_object(&self.report.train).map_err(js_error)
    }

    /// The training loss after each epoch.
    #[wasm_bindgen(getter)]
    pub fn losses(&self) -> Vec<f32> {
        self.report.losses.clone()
    }

    /// The burnpack file of the whole ResNet: `base_weights`' backbone (any weight file we
    /// read) with this head as its classifier.
    #[wasm_bindgen(js_name = withBackbone)]
    pub fn with_backbone(&self, base_weights: Vec<u8>) -> std::result::Result<Vec<u8>, JsValue> {
        transfer::weights_with_head(base_weights, &self.report.head).map_err(js_error)
    }
}
