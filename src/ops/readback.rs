//! Tensors read back into host memory: synchronously where a backend allows it (native),
//! asynchronously everywhere (WebGPU in a browser allows nothing else), with failures in words.

use burn::prelude::*;
use burn::tensor::Transaction;

use crate::error::{Error, Result};

/// A tensor's values as f32, read back synchronously (native backends only: on WebGPU in
/// the browser a synchronous read panics).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_floats<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let data = tensor.try_into_data().map_err(read_failed)?;
    floats(data)
}

/// A tensor's values as f32, read back asynchronously (any backend).
pub async fn read_floats_async<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let data = tensor.into_data_async().await.map_err(read_failed)?;
    floats(data)
}

/// An integer tensor's values, read back asynchronously (any backend).
pub async fn read_ints_async<const D: usize>(tensor: Tensor<D, Int>) -> Result<Vec<i64>> {
    let data = tensor.into_data_async().await.map_err(read_failed)?;
    data.convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(|e| Error::Backend(format!("unexpected tensor data: {e:?}")))
}

/// Several tensors read back at once (any backend): on WebGPU every read waits for the
/// queue, so one read of many beats many reads.
pub async fn read_together(transaction: Transaction) -> Result<Vec<TensorData>> {
    transaction.execute_async().await.map_err(read_failed)
}

/// A failed read back, in words: burn's report names the cause on its last "Caused by" line
/// (on WebGPU, a lost device: "The device is poisoned ... Destroyed: Device was destroyed.").
fn read_failed(error: impl std::fmt::Debug) -> Error {
    let report = format!("{error:?}");
    let lines: Vec<&str> = report
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Backtrace"))
        .filter(|line| !line.is_empty() && *line != "Caused by:")
        .collect();
    let cause = match lines.as_slice() {
        [] => "no reason given".to_string(),
        [only] => only.to_string(),
        [first, .., last] if first.contains("poisoned") => {
            format!("the GPU device was lost ({last})")
        }
        [first, .., last] => format!("{first} ({last})"),
    };
    Error::Backend(format!("reading a tensor back failed: {cause}"))
}

/// Read-back values as f32, whatever their stored type.
pub fn floats(data: TensorData) -> Result<Vec<f32>> {
    data.convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Backend(format!("unexpected tensor data: {e:?}")))
}

/// Runs a future to completion on this thread. For native callers of the async API: on the
/// CPU backend every read is ready at once.
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}
