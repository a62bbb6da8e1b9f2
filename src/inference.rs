//! Arrays in, logits out, with the checks that keep bad input from reaching a kernel.

use burn::prelude::*;

use crate::error::{Error, Result};
use crate::resnet::ResNet;

/// A batch of images `[batch, channels, height, width]` from a flat C-ordered buffer.
pub fn images_tensor(data: Vec<f32>, shape: [usize; 4], device: &Device) -> Result<Tensor<4>> {
    let expected = shape
        .iter()
        .try_fold(1usize, |acc, &dim| acc.checked_mul(dim))
        .ok_or_else(|| Error::InvalidInput(format!("shape {shape:?} is too large")))?;
    if expected != data.len() {
        return Err(Error::InvalidInput(format!(
            "shape {shape:?} needs {expected} values but {} were given",
            data.len()
        )));
    }
    if let Some(index) = data.iter().position(|value| !value.is_finite()) {
        return Err(Error::InvalidInput(format!(
            "value {index} is {}: inputs must be finite numbers",
            data[index]
        )));
    }
    Ok(Tensor::from_data(TensorData::new(data, shape), device))
}

/// Logits `[batch, classes]` as a flat vector, read back synchronously (native backends).
#[cfg(not(target_arch = "wasm32"))]
pub fn logits(model: &ResNet, images: Tensor<4>) -> Result<Vec<f32>> {
    let data = model
        .try_forward(images)?
        .try_into_data()
        .map_err(|e| Error::Backend(format!("reading the logits failed: {e:?}")))?;
    data.try_to_vec::<f32>()
        .map_err(|e| Error::Backend(format!("the logits are not float32: {e:?}")))
}

/// Logits `[batch, classes]` as a flat vector, read back asynchronously (any backend,
/// required on WebGPU in the browser).
pub async fn logits_async(model: &ResNet, images: Tensor<4>) -> Result<Vec<f32>> {
    let data = model
        .try_forward(images)?
        .into_data_async()
        .await
        .map_err(|e| Error::Backend(format!("reading the logits failed: {e:?}")))?;
    data.try_to_vec::<f32>()
        .map_err(|e| Error::Backend(format!("the logits are not float32: {e:?}")))
}
