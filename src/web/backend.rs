#[cfg(webgpu)]
use std::cell::RefCell;

use burn::prelude::*;
#[cfg(webgpu)]
use burn::tensor::wgpu::wgpu;

use crate::error::{Error, Result};
use crate::inference::classifier::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// burn's wgpu backend on the browser's WebGPU.
    WebGpu,
    /// burn's flex backend: pure Rust on the CPU, in wasm.
    Cpu,
}

impl BackendKind {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "webgpu" => Ok(BackendKind::WebGpu),
            "cpu" => Ok(BackendKind::Cpu),
            other => Err(Error::InvalidInput(format!(
                "unknown backend '{other}': use webgpu or cpu"
            ))),
        }
    }
}

impl std::str::FromStr for BackendKind {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::parse(name)
    }
}

/// A ready device, and what it runs on in words.
#[derive(Debug, Clone)]
pub struct Backend {
    pub kind: BackendKind,
    pub device: Device,
    pub description: String,
    /// For WebGPU: the adapter, so callers can tell a real WebGPU adapter from a fallback.
    #[cfg(webgpu)]
    pub adapter: Option<wgpu::AdapterInfo>,
}

#[cfg(webgpu)]
thread_local! {
    // burn's wgpu runtime can be initialised once per page; later callers share it.
    static WEBGPU: RefCell<Option<Backend>> = const { RefCell::new(None) };
}

impl Backend {
    /// Which engine classifies on this backend: our CPU kernels on the CPU.
    pub fn engine(&self) -> Engine {
        match self.kind {
            BackendKind::Cpu => Engine::Packed,
            BackendKind::WebGpu => Engine::Burn,
        }
    }

    /// What a prediction runs on, in words, now: on the CPU, the threads its convolutions
    /// are split over (`setCpuThreads`). `description` is what training runs on: the whole
    /// pool.
    pub fn describe(&self) -> String {
        match self.kind {
            BackendKind::Cpu => cpu_description(cpu_kernels::threads()),
            BackendKind::WebGpu => self.description.clone(),
        }
    }

    pub async fn init(kind: BackendKind) -> Result<Self> {
        run_constructors_once();
        match kind {
            BackendKind::WebGpu => Self::webgpu().await,
            BackendKind::Cpu => Ok(Self {
                kind,
                device: Device::flex(),
                description: cpu_description(pool_threads()),
                #[cfg(webgpu)]
                adapter: None,
            }),
        }
    }

    #[cfg(not(webgpu))]
    async fn webgpu() -> Result<Self> {
        Err(Error::Unsupported(
            "this is the threaded CPU module, without WebGPU: load pkg/ for WebGPU".into(),
        ))
    }

    #[cfg(webgpu)]
    async fn webgpu() -> Result<Self> {
        if let Some(ready) = WEBGPU.with(|cell| cell.borrow().clone()) {
            return Ok(ready);
        }
        let (device, setup) = Device::wgpu_options()
            .init_with_setup_async()
            .await
            .map_err(|e| {
                // burn lists every native API it did not try; in a browser, one fact matters.
                let reason = e.to_string();
                let reason = if !browser_has_webgpu() {
                    // Firefox on Linux, Safari before 26, older Chromium.
                    "this browser has no WebGPU: navigator.gpu is missing".to_string()
                } else if reason.contains("No adapter available") {
                    "the browser offers no WebGPU adapter".to_string()
                } else {
                    reason
                };
                Error::Unsupported(format!(
                    "WebGPU is not available ({reason}): use the CPU backend, or a browser with WebGPU enabled"
                ))
            })?;
        let info = setup.adapter.get_info();
        crate::ops::use_gpu_convolution_kernel(crate::ops::GpuConvolutionKernel::for_adapter(
            info.device_type == wgpu::DeviceType::Cpu,
        ));
        let backend = Self {
            kind: BackendKind::WebGpu,
            device,
            // Browsers hide the adapter's name; its type still tells a software renderer
            // (SwiftShader, in headless Chromium) from a GPU.
            description: match info.device_type {
                wgpu::DeviceType::Cpu => "WebGPU (software adapter on the CPU)".to_string(),
                other => format!("WebGPU ({other:?} GPU)"),
            },
            adapter: Some(info),
        };
        WEBGPU.with(|cell| *cell.borrow_mut() = Some(backend.clone()));
        Ok(backend)
    }
}

/// What burn's GPU memory pool holds on the WebGPU device, `{reserved, inUse}` in bytes: the
/// pages it keeps (it gives none back unasked), and what live tensors use of them; undefined
/// before WebGPU is open. A run measures its own need on the CPU (js/worker/training.js).
#[cfg(webgpu)]
#[wasm_bindgen::prelude::wasm_bindgen(js_name = webgpuPoolBytes)]
pub fn webgpu_pool_bytes() -> wasm_bindgen::JsValue {
    let usage = WEBGPU.with(|cell| {
        cell.borrow()
            .as_ref()
            .and_then(|backend| backend.device.memory_pool_usage())
    });
    let Some(usage) = usage else {
        return wasm_bindgen::JsValue::UNDEFINED;
    };
    let bytes = js_sys::Object::new();
    for (name, value) in [
        ("reserved", usage.bytes_reserved),
        ("inUse", usage.bytes_in_use),
    ] {
        let _ = js_sys::Reflect::set(&bytes, &name.into(), &(value as f64).into());
    }
    bytes.into()
}

/// Whether the browser has WebGPU at all (`navigator.gpu`), in a page or a worker.
#[cfg(webgpu)]
fn browser_has_webgpu() -> bool {
    let property = |object: &wasm_bindgen::JsValue, name: &str| {
        js_sys::Reflect::get(object, &name.into()).unwrap_or(wasm_bindgen::JsValue::UNDEFINED)
    };
    let navigator = property(&js_sys::global(), "navigator");
    !navigator.is_undefined() && !property(&navigator, "gpu").is_undefined()
}

/// The threads of the pool (the threaded module's Web Workers), which training uses.
fn pool_threads() -> usize {
    #[cfg(target_feature = "atomics")]
    return rayon::current_num_threads();
    #[cfg(not(target_feature = "atomics"))]
    1
}

/// "CPU (wasm, 2 threads)", or "CPU (wasm FMA, 2 threads)" from a module with relaxed SIMD's
/// fused multiply-add.
fn cpu_description(threads: usize) -> String {
    let module = if cfg!(feature = "fma") {
        "wasm FMA"
    } else {
        "wasm"
    };
    match threads {
        1 => format!("CPU ({module}, 1 thread)"),
        threads => format!("CPU ({module}, {threads} threads)"),
    }
}

/// Runs the static constructors (the `inventory` registrations of cubecl's `pliron`) once.
/// A module that never calls `__wasm_call_ctors` itself has wasm-ld wrap every export to run
/// them again on each call ("command" linkage): that was a quarter of the time of a ResNet-20
/// prediction on the CPU. Called from `start` and, as tests do not run `start`, before any
/// backend is used.
pub(crate) fn run_constructors_once() {
    unsafe extern "C" {
        fn __wasm_call_ctors();
    }
    static DONE: std::sync::Once = std::sync::Once::new();
    // SAFETY: wasm-ld defines it; it runs each constructor, and `Once` makes that happen once.
    DONE.call_once(|| unsafe { __wasm_call_ctors() });
}
