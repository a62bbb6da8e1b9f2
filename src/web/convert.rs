//! Values across the JavaScript boundary: our errors as JavaScript `Error`s, pixels checked
//! before they are copied in, fields read from options objects, result objects built.

use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::data::preprocess::Rgba;
use crate::error::{Error, Result};
use crate::training::train::Evaluation;

/// Every exported function fails with a JavaScript `Error` carrying our message and its
/// stable `code` (`Error::code`), never with a panic, which would kill the module.
pub fn js_error(error: Error) -> JsValue {
    let value: JsValue = JsError::new(&error.to_string()).into();
    // Setting a property on a fresh Error object cannot fail.
    let _ = Reflect::set(
        &value,
        &JsValue::from_str("code"),
        &JsValue::from_str(error.code()),
    );
    value
}

/// RGBA bytes from JavaScript, checked before they are copied into wasm memory: an
/// 8000x8000 picture is refused without allocating its 256 MB here.
pub fn rgba_bytes(
    pixels: &js_sys::Uint8Array,
    width: usize,
    height: usize,
) -> std::result::Result<Vec<u8>, JsValue> {
    Rgba::check(pixels.length() as usize, width, height).map_err(js_error)?;
    Ok(pixels.to_vec())
}

/// A PNG or JPEG file decoded: `{rgba, width, height}`, for runtimes without a canvas to
/// decode with (Deno, Node.js). The size in its header is checked before it is decoded.
#[wasm_bindgen(js_name = decodeImage)]
pub fn decode_image(bytes: &[u8]) -> std::result::Result<JsValue, JsValue> {
    let (rgba, width, height) = crate::data::preprocess::decode_image(bytes).map_err(js_error)?;
    let decoded = Object::new();
    set(
        &decoded,
        "rgba",
        &js_sys::Uint8Array::from(rgba.as_slice()).into(),
    )
    .map_err(js_error)?;
    set(&decoded, "width", &JsValue::from(width)).map_err(js_error)?;
    set(&decoded, "height", &JsValue::from(height)).map_err(js_error)?;
    Ok(decoded.into())
}

/// A field of an options object, absent when undefined or null.
pub fn option(options: &JsValue, name: &str) -> Option<JsValue> {
    Reflect::get(options, &JsValue::from_str(name))
        .ok()
        .filter(|value| !value.is_undefined() && !value.is_null())
}

pub fn number(options: &JsValue, name: &str, default: f64) -> Result<f64> {
    match option(options, name) {
        None => Ok(default),
        Some(value) => value.as_f64().filter(|v| v.is_finite()).ok_or_else(|| {
            Error::InvalidConfig(format!("option '{name}' must be a number, not {value:?}"))
        }),
    }
}

pub fn count(options: &JsValue, name: &str, default: usize) -> Result<usize> {
    let value = number(options, name, default as f64)?;
    if value < 0.0 || value.fract() != 0.0 || value > 1e9 {
        return Err(Error::InvalidConfig(format!(
            "option '{name}' must be a whole number, not {value}"
        )));
    }
    Ok(value as usize)
}

/// A string field parsed by `T`'s own parser (the one the CLI uses), or `default`.
pub fn parsed<T: std::str::FromStr<Err = Error>>(
    options: &JsValue,
    name: &str,
    default: T,
) -> Result<T> {
    match option(options, name) {
        None => Ok(default),
        Some(value) => value
            .as_string()
            .ok_or_else(|| {
                Error::InvalidConfig(format!("option '{name}' must be a string, not {value:?}"))
            })?
            .parse(),
    }
}

/// A boolean field, or `default`.
pub fn flag(options: &JsValue, name: &str, default: bool) -> Result<bool> {
    match option(options, name) {
        None => Ok(default),
        Some(value) => value.as_bool().ok_or_else(|| {
            Error::InvalidConfig(format!(
                "option '{name}' must be true or false, not {value:?}"
            ))
        }),
    }
}

pub fn set(object: &Object, name: &str, value: &JsValue) -> Result<()> {
    Reflect::set(object, &JsValue::from_str(name), value)
        .map(|_| ())
        .map_err(|_| Error::Backend(format!("cannot set '{name}' on a result object")))
}

/// An evaluation as `{accuracy, loss, count, confusion, perClass}`.
pub fn evaluation_object(evaluation: &Evaluation) -> Result<JsValue> {
    let object = Object::new();
    set(
        &object,
        "accuracy",
        &JsValue::from_f64(evaluation.accuracy()),
    )?;
    set(&object, "loss", &JsValue::from_f64(evaluation.loss))?;
    set(
        &object,
        "count",
        &JsValue::from_f64(evaluation.count() as f64),
    )?;
    let confusion: Vec<u32> = evaluation.confusion.iter().map(|&n| n as u32).collect();
    set(
        &object,
        "confusion",
        &js_sys::Uint32Array::from(confusion.as_slice()).into(),
    )?;
    set(
        &object,
        "perClass",
        &js_sys::Float64Array::from(evaluation.per_class_accuracy().as_slice()).into(),
    )?;
    Ok(object.into())
}
