//! The devices a native program runs on (`--device cpu|gpu`): the CPU (burn's flex), or a
//! GPU through burn's wgpu runtime (Vulkan, Metal or DX12) with the page's own kernels. A
//! machine that cannot open a GPU gets an error that says what is missing and how to get it.

use std::sync::OnceLock;

use burn::prelude::*;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Gpu,
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "cpu" => Ok(DeviceChoice::Cpu),
            "gpu" => Ok(DeviceChoice::Gpu),
            other => Err(Error::InvalidInput(format!(
                "unknown device '{other}': use cpu or gpu"
            ))),
        }
    }
}

/// A ready device, and what it is in words.
#[derive(Debug, Clone)]
pub struct NativeDevice {
    pub device: Device,
    pub description: String,
    /// For a GPU: the adapter's name, its type (a CPU adapter such as lavapipe is not a
    /// GPU) and the graphics API.
    pub adapter: Option<AdapterSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    pub name: String,
    pub device_type: String,
    pub backend: String,
    /// Whether the adapter is software on the CPU (lavapipe, SwiftShader): its times say
    /// nothing about a GPU.
    pub is_cpu: bool,
}

/// Opens `kind`. A GPU is opened once per process; later calls share it.
pub fn open(kind: DeviceChoice) -> Result<NativeDevice> {
    match kind {
        DeviceChoice::Cpu => Ok(NativeDevice {
            device: Device::flex(),
            description: format!("CPU (flex, {} threads)", cpu_kernels::threads()),
            adapter: None,
        }),
        DeviceChoice::Gpu => {
            static GPU: OnceLock<Result<NativeDevice>> = OnceLock::new();
            GPU.get_or_init(open_gpu).clone()
        }
    }
}

#[cfg(not(feature = "gpu"))]
fn open_gpu() -> Result<NativeDevice> {
    Err(Error::Unsupported(
        "this build has no GPU support: build resnet-web with its default `gpu` feature".into(),
    ))
}

#[cfg(feature = "gpu")]
fn open_gpu() -> Result<NativeDevice> {
    if let Some(missing) = missing_vulkan_loader() {
        return Err(Error::Unsupported(missing));
    }
    use burn::tensor::wgpu::WgpuBackend;
    // One API per system, so that a machine without Vulkan says so instead of opening an
    // OpenGL adapter our compute kernels do not run on.
    let api = if cfg!(target_os = "macos") {
        WgpuBackend::Metal
    } else {
        WgpuBackend::Vulkan
    };
    let (device, setup) = Device::wgpu_options()
        .graphics_api(api)
        .init_with_setup()
        .map_err(|e| Error::Unsupported(no_adapter_message(&e.to_string())))?;
    let info = setup.adapter.get_info();
    let is_cpu = info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu;
    crate::ops::use_gpu_convolution_kernel(crate::ops::GpuConvolutionKernel::for_adapter(is_cpu));
    let adapter = AdapterSummary {
        name: info.name.clone(),
        device_type: format!("{:?}", info.device_type),
        backend: format!("{:?}", info.backend),
        is_cpu,
    };
    let description = format!(
        "{} ({}, {}{})",
        adapter.name,
        adapter.backend,
        adapter.device_type,
        if is_cpu {
            ": software on the CPU, its times say nothing about a GPU"
        } else {
            ""
        }
    );
    Ok(NativeDevice {
        device,
        description,
        adapter: Some(adapter),
    })
}

/// The Vulkan loader's file name. `RESNET_WEB_VULKAN_LOADER` names another (the tests name
/// one that does not exist, to see the message of a machine without it).
#[cfg(feature = "gpu")]
fn vulkan_loader_name() -> String {
    std::env::var("RESNET_WEB_VULKAN_LOADER").unwrap_or_else(|_| {
        if cfg!(windows) {
            "vulkan-1.dll".into()
        } else {
            "libvulkan.so.1".into()
        }
    })
}

/// On Linux and Windows, where the GPU is reached through Vulkan (DX12 too on Windows): the
/// message for a machine without the Vulkan loader, or `None` where it loads.
#[cfg(feature = "gpu")]
fn missing_vulkan_loader() -> Option<String> {
    if cfg!(target_os = "macos") {
        return None;
    }
    let name = vulkan_loader_name();
    // SAFETY: the Vulkan loader's initialisers only set up its own state.
    match unsafe { libloading::Library::new(&name) } {
        Ok(_) => None,
        Err(e) => Some(format!(
            "no Vulkan loader: {name} could not be loaded ({e}). Install it with your GPU's \
             Vulkan driver (Debian and Ubuntu: apt-get install libvulkan1, and \
             mesa-vulkan-drivers for AMD, Intel or the CPU; NVIDIA's driver brings its own), \
             or use --device cpu"
        )),
    }
}

/// The message for a machine whose Vulkan loader finds no adapter.
pub fn no_adapter_message(reason: &str) -> String {
    format!(
        "no GPU adapter: the graphics drivers offer no device ({reason}). Install your GPU's \
         Vulkan driver (Debian and Ubuntu: mesa-vulkan-drivers for AMD, Intel or a software \
         adapter on the CPU; NVIDIA's own driver), check that VK_DRIVER_FILES or \
         VK_ICD_FILENAMES name a driver that exists, or use --device cpu"
    )
}
