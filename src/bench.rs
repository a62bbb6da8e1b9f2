//! `resnet bench`: the figures of `scripts/gpu-bench.sh`, on any device, one JSON object per
//! figure. Each figure is a median of timed runs after warm-up; a run of a short operation
//! repeats it until the run lasts about 2 ms, with one device sync at its end, so that the
//! sync's own cost does not count.

use std::time::Instant;

use burn::backend::ops::ModuleOps;
use burn::prelude::*;
use burn::tensor::Distribution;
use serde_json::{Value, json};

use resnet_web::data::Augment;
use resnet_web::ops::device::NativeDevice;
use resnet_web::ops::{
    BatchNormOps, ConvolveOps, GpuConvolutionKernel, gpu_convolution_kernel,
    use_batch_norm_kernels, use_gpu_convolution_kernel,
};
use resnet_web::resnet::{Arch, ResNet, ResNetConfig};
use resnet_web::training::train::{OptimizerKind, Schedule, TrainConfig, Trainer};

/// Which figures, and how many runs each.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub warmup: usize,
    pub runs: usize,
    pub sections: Vec<Section>,
    /// Presets to keep (`resnet18`, …); all where empty.
    pub models: Vec<String>,
    /// Inference batch sizes to keep; all where empty.
    pub batches: Vec<usize>,
}

impl BenchOptions {
    fn keeps(&self, model: &str) -> bool {
        self.models.is_empty() || self.models.iter().any(|kept| kept == model)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Inference,
    Training,
    Convolutions,
    /// Each convolution on each tile of the tiled kernel (a GPU only).
    Tiles,
    BatchNorm,
}

impl Section {
    pub const ALL: [Section; 5] = [
        Section::Inference,
        Section::Training,
        Section::Convolutions,
        Section::Tiles,
        Section::BatchNorm,
    ];
}

impl std::str::FromStr for Section {
    type Err = resnet_web::Error;

    fn from_str(name: &str) -> resnet_web::Result<Self> {
        match name {
            "inference" => Ok(Section::Inference),
            "training" => Ok(Section::Training),
            "convolutions" => Ok(Section::Convolutions),
            "tiles" => Ok(Section::Tiles),
            "batch-norm" => Ok(Section::BatchNorm),
            other => Err(resnet_web::Error::InvalidInput(format!(
                "unknown bench section '{other}': use inference, training, convolutions, tiles \
                 or batch-norm"
            ))),
        }
    }
}

/// Runs `work` (what one timed run does) `warmup` times, then `runs` times timed, and returns
/// the median milliseconds of one `work`. What `work` returns is kept until the device has
/// synced: a lazy backend (burn's fusion) need not compute what nobody holds.
fn median_ms<T>(device: &Device, options: &BenchOptions, mut work: impl FnMut() -> T) -> f64 {
    let sync = |device: &Device| device.sync().expect("the device failed");
    for _ in 0..options.warmup.max(1) {
        let kept = work();
        sync(device);
        drop(kept);
    }
    // How many repeats make a run of about 2 ms.
    let start = Instant::now();
    let kept = work();
    sync(device);
    drop(kept);
    let once = start.elapsed().as_secs_f64() * 1e3;
    let repeats = ((2.0 / once.max(1e-3)).ceil() as usize).clamp(1, 50);
    let mut times: Vec<f64> = (0..options.runs.max(1))
        .map(|_| {
            let start = Instant::now();
            let kept: Vec<T> = (0..repeats).map(|_| work()).collect();
            sync(device);
            let ms = start.elapsed().as_secs_f64() * 1e3 / repeats as f64;
            drop(kept);
            ms
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Every figure `options` asks for, each handed to `emit` as it is measured.
pub fn run(native: &NativeDevice, options: &BenchOptions, mut emit: impl FnMut(Value)) {
    emit(match &native.adapter {
        Some(adapter) => json!({
            "figure": "adapter", "name": adapter.name, "type": adapter.device_type,
            "backend": adapter.backend, "is_cpu": adapter.is_cpu,
        }),
        None => json!({"figure": "adapter", "name": native.description, "type": "Cpu",
            "backend": "flex", "is_cpu": true}),
    });
    let device = &native.device;
    let gpu = native.adapter.is_some();
    for section in &options.sections {
        match section {
            Section::Inference => inference(device, gpu, options, &mut emit),
            Section::Training => training(device, gpu, options, &mut emit),
            Section::Convolutions => convolutions(device, gpu, options, &mut emit),
            Section::Tiles => tiles(device, gpu, options, &mut emit),
            Section::BatchNorm => batch_norms(device, gpu, options, &mut emit),
        }
    }
}

fn arch_name(arch: Arch) -> String {
    format!("{arch:?}").to_lowercase()
}

/// A GPU convolution kernel's name in the figures.
fn kernel_name(kernel: GpuConvolutionKernel) -> String {
    format!("{kernel:?}").to_lowercase()
}

/// Runs `work` with each GPU convolution kernel and its name, then gives the device back the
/// kernel the adapter's rule chose; on the CPU, once, with no name.
fn with_each_kernel(gpu: bool, mut work: impl FnMut(Value)) {
    if !gpu {
        return work(Value::Null);
    }
    let chosen = gpu_convolution_kernel();
    for kernel in [GpuConvolutionKernel::Direct, GpuConvolutionKernel::Tiled] {
        use_gpu_convolution_kernel(kernel);
        work(json!(kernel_name(kernel)));
    }
    use_gpu_convolution_kernel(chosen);
}

/// A folded model's forward pass, as the page predicts.
fn inference(device: &Device, gpu: bool, options: &BenchOptions, emit: &mut impl FnMut(Value)) {
    let cases = [
        (Arch::ResNet18, 224, 1),
        (Arch::ResNet18, 224, 8),
        (Arch::ResNet18, 224, 64),
        (Arch::ResNet50, 224, 1),
        (Arch::ResNet50, 224, 32),
        (Arch::ResNet20, 32, 1),
        (Arch::ResNet20, 32, 64),
    ];
    for (arch, size, batch) in cases {
        if !options.keeps(&arch_name(arch))
            || !(options.batches.is_empty() || options.batches.contains(&batch))
        {
            continue;
        }
        let classes = if size == 224 { 1000 } else { 10 };
        let config = ResNetConfig::new(arch, classes, 3);
        let model = ResNet::new(&config, device)
            .expect("a preset builds")
            .fold_batch_norm();
        let images = Tensor::<4>::random(
            [batch, 3, size, size],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        with_each_kernel(gpu, |gpu_kernel| {
            let ms = median_ms(device, options, || model.forward(images.clone()));
            emit(json!({
                "figure": "inference", "arch": arch_name(arch), "size": size, "batch": batch,
                "gpu_kernel": gpu_kernel, "median_ms": ms, "images_per_s": batch as f64 / ms * 1e3,
            }));
        });
    }
}

/// One optimisation step (forward, loss, backward, update), with our BatchNorm and with
/// burn's, on the convolution kernel the adapter's rule chose.
fn training(device: &Device, gpu: bool, options: &BenchOptions, emit: &mut impl FnMut(Value)) {
    let gpu_kernel = gpu.then(|| kernel_name(gpu_convolution_kernel()));
    let cases = [
        (Arch::ResNet20, 28, 1, 64, OptimizerKind::Adam, 10),
        (
            Arch::ResNet18,
            224,
            3,
            32,
            OptimizerKind::Sgd { momentum: 0.9 },
            1000,
        ),
    ];
    let autodiff = device.clone().autodiff();
    for (arch, size, channels, batch, optimizer, classes) in cases {
        if !options.keeps(&arch_name(arch)) {
            continue;
        }
        for ours in [true, false] {
            use_batch_norm_kernels(ours);
            let config = ResNetConfig::new(arch, classes, channels);
            let model = ResNet::new(&config, &autodiff).expect("a preset builds");
            let train = TrainConfig {
                epochs: 1,
                batch_size: batch,
                learning_rate: 0.01,
                weight_decay: 0.0,
                optimizer,
                schedule: Schedule::Constant,
                augment: Augment::NONE,
                seed: 1,
            };
            let mut trainer = Trainer::new(model, train, 1_000_000).expect("a valid config");
            let images = Tensor::<4>::random(
                [batch, channels, size, size],
                Distribution::Normal(0.0, 1.0),
                &autodiff,
            );
            let labels = Tensor::<1, Int>::from_data(
                TensorData::new(
                    (0..batch as i64).map(|i| i % classes as i64).collect(),
                    [batch],
                ),
                &autodiff,
            );
            let ms = median_ms(device, options, || {
                trainer
                    .step(images.clone(), labels.clone(), false)
                    .expect("the bench's batch fits its model")
                    .loss
            });
            emit(json!({
                "figure": "training_step", "arch": arch_name(arch),
                "input": format!("{size}x{size}x{channels}"), "batch": batch,
                "optimizer": optimizer.to_string(),
                "batch_norm": if ours { "ours" } else { "burn" }, "gpu_kernel": gpu_kernel,
                "median_ms": ms, "images_per_s": batch as f64 / ms * 1e3,
            }));
        }
    }
    use_batch_norm_kernels(true);
}

/// A convolution's shape: batch, in channels, input size, out channels, kernel, stride.
struct ConvCase {
    model: &'static str,
    batch: usize,
    in_channels: usize,
    size: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
}

/// Each distinct convolution of ResNet-18 (224 px, batch 32) and ResNet-20 (32 px, batch 64).
fn conv_cases() -> Vec<ConvCase> {
    let case = |model, batch, in_channels, size, out_channels, kernel, stride| ConvCase {
        model,
        batch,
        in_channels,
        size,
        out_channels,
        kernel,
        stride,
    };
    vec![
        case("resnet18", 32, 3, 224, 64, 7, 2),
        case("resnet18", 32, 64, 56, 64, 3, 1),
        case("resnet18", 32, 64, 56, 128, 3, 2),
        case("resnet18", 32, 64, 56, 128, 1, 2),
        case("resnet18", 32, 128, 28, 128, 3, 1),
        case("resnet18", 32, 128, 28, 256, 3, 2),
        case("resnet18", 32, 128, 28, 256, 1, 2),
        case("resnet18", 32, 256, 14, 256, 3, 1),
        case("resnet18", 32, 256, 14, 512, 3, 2),
        case("resnet18", 32, 256, 14, 512, 1, 2),
        case("resnet18", 32, 512, 7, 512, 3, 1),
        case("resnet20", 64, 3, 32, 16, 3, 1),
        case("resnet20", 64, 16, 32, 16, 3, 1),
        case("resnet20", 64, 16, 32, 32, 3, 2),
        case("resnet20", 64, 32, 16, 32, 3, 1),
        case("resnet20", 64, 32, 16, 64, 3, 2),
        case("resnet20", 64, 64, 8, 64, 3, 1),
    ]
}

/// Our convolution through `ConvolveOps`, as the model calls it.
fn convolve(
    input: Tensor<4>,
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    padding: usize,
) -> Tensor<4> {
    Tensor::from_dispatch(<burn::backend::Dispatch as ConvolveOps>::convolve(
        input.into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
        [stride, stride],
        [padding, padding],
    ))
}

impl ConvCase {
    fn padding(&self) -> usize {
        self.kernel / 2
    }

    fn out_size(&self) -> usize {
        (self.size + 2 * self.padding() - self.kernel) / self.stride + 1
    }

    /// Its shape's fields in a figure.
    fn fields(&self) -> Value {
        json!({
            "model": self.model, "batch": self.batch, "in_channels": self.in_channels,
            "size": self.size, "out_channels": self.out_channels, "kernel": self.kernel,
            "stride": self.stride,
        })
    }

    /// Median milliseconds of the forward pass, and of the forward pass with both gradients
    /// (the backward pass seeded with ones), and the TFLOP/s of each, as figure fields.
    fn timings(&self, device: &Device, options: &BenchOptions) -> Value {
        let padding = self.padding();
        let out_size = self.out_size();
        let flops = 2.0
            * (self.batch * out_size * out_size * self.out_channels) as f64
            * (self.in_channels * self.kernel * self.kernel) as f64;
        let input_shape = [self.batch, self.in_channels, self.size, self.size];
        let weight_shape = [
            self.out_channels,
            self.in_channels,
            self.kernel,
            self.kernel,
        ];
        let normal = Distribution::Normal(0.0, 1.0);
        let input = Tensor::<4>::random(input_shape, normal, device);
        let weight = Tensor::<4>::random(weight_shape, normal, device);
        let bias = Tensor::<1>::zeros([self.out_channels], device);
        let forward = median_ms(device, options, || {
            convolve(
                input.clone(),
                weight.clone(),
                bias.clone(),
                self.stride,
                padding,
            )
        });
        let autodiff = device.clone().autodiff();
        let input = Tensor::<4>::random(input_shape, normal, &autodiff).require_grad();
        let weight = Tensor::<4>::random(weight_shape, normal, &autodiff).require_grad();
        let bias = Tensor::<1>::zeros([self.out_channels], &autodiff);
        let both = median_ms(device, options, || {
            let output = convolve(
                input.clone(),
                weight.clone(),
                bias.clone(),
                self.stride,
                padding,
            );
            let grads = output.backward();
            (input.grad(&grads), weight.grad(&grads))
        });
        json!({
            "forward_ms": forward, "forward_tflops": flops / forward / 1e9,
            "forward_backward_ms": both, "forward_backward_tflops": 3.0 * flops / both / 1e9,
        })
    }
}

/// `a`'s fields, then `b`'s.
fn merged(a: Value, b: Value) -> Value {
    let mut fields = a.as_object().cloned().unwrap_or_default();
    fields.extend(b.as_object().cloned().unwrap_or_default());
    Value::Object(fields)
}

/// Forward, and forward with both gradients, per shape.
fn convolutions(device: &Device, gpu: bool, options: &BenchOptions, emit: &mut impl FnMut(Value)) {
    for case in conv_cases()
        .into_iter()
        .filter(|case| options.keeps(case.model))
    {
        with_each_kernel(gpu, |gpu_kernel| {
            let figure = json!({"figure": "convolution", "gpu_kernel": gpu_kernel});
            emit(merged(
                merged(figure, case.fields()),
                case.timings(device, options),
            ));
        });
    }
}

/// Each shape on the tiled kernel with each tile fixed for the forward pass and the input
/// gradient (the weight gradient has tiles of its own), with and without prefetching the next
/// stage, and whether the rule picks the tile for the forward pass: what the rule is tuned by.
/// A GPU only; the rule's choices are given back after.
fn tiles(device: &Device, gpu: bool, options: &BenchOptions, emit: &mut impl FnMut(Value)) {
    #[cfg(feature = "gpu")]
    if gpu {
        use resnet_web::ops::{GpuTile, gpu_prefetch, rule_tile, use_gpu_prefetch, use_gpu_tile};
        let chosen = gpu_convolution_kernel();
        let prefetch_chosen = gpu_prefetch();
        use_gpu_convolution_kernel(GpuConvolutionKernel::Tiled);
        for case in conv_cases()
            .into_iter()
            .filter(|case| options.keeps(case.model))
        {
            let pixels = case.batch * case.out_size() * case.out_size();
            let rule = rule_tile(pixels, case.out_channels);
            for tile in GpuTile::ALL {
                for prefetch in [false, true] {
                    use_gpu_tile(Some(tile));
                    use_gpu_prefetch(prefetch);
                    let figure = json!({
                        "figure": "convolution", "gpu_kernel": "tiled", "tile": tile_name(tile),
                        "rule_tile": tile == rule, "prefetch": prefetch,
                    });
                    emit(merged(
                        merged(figure, case.fields()),
                        case.timings(device, options),
                    ));
                }
            }
        }
        use_gpu_tile(None);
        use_gpu_prefetch(prefetch_chosen);
        use_gpu_convolution_kernel(chosen);
    }
    let _ = (device, gpu, options, emit);
}

#[cfg(feature = "gpu")]
fn tile_name(tile: resnet_web::ops::GpuTile) -> String {
    format!("{tile:?}").to_lowercase()
}

/// BatchNorm in training mode at each shape ResNet-18 (batch 32) and ResNet-20 (batch 64)
/// normalise: ours and burn's default (its `ModuleOps`), forward (the batch's statistics and
/// the output), and forward with the backward pass (the input's, gamma's and beta's
/// gradients), on an input and an output gradient laid out as the device's convolutions leave
/// them (ours on a GPU: NHWC in memory; burn's on the CPU: NCHW); and a plain copy of the
/// largest, the bandwidth to compare with.
fn batch_norms(device: &Device, gpu: bool, options: &BenchOptions, emit: &mut impl FnMut(Value)) {
    type D = burn::backend::Dispatch;
    let shapes = [
        [32, 64, 112, 112],
        [32, 64, 56, 56],
        [32, 128, 28, 28],
        [32, 256, 14, 14],
        [32, 512, 7, 7],
        [64, 16, 32, 32],
        [64, 32, 16, 16],
        [64, 64, 8, 8],
    ];
    let normal = Distribution::Normal(0.5, 2.0);
    // [n, c, h, w], NHWC in memory on a GPU.
    let activation = |[n, c, h, w]: [usize; 4]| match gpu {
        true => Tensor::<4>::random([n, h, w, c], normal, device).permute([0, 3, 1, 2]),
        false => Tensor::<4>::random([n, c, h, w], normal, device),
    };
    let layout = if gpu { "nhwc" } else { "nchw" };
    let first = activation(shapes[0]);
    let bytes = (shapes[0].iter().product::<usize>() * 4) as f64;
    let copy = median_ms(device, options, || first.clone().add_scalar(1.0));
    emit(json!({
        "figure": "copy", "bytes": bytes, "layout": layout, "median_ms": copy,
        "gb_per_s": 2.0 * bytes / copy / 1e6,
    }));
    drop(first);
    let epsilon = 1e-5;
    for shape in shapes {
        let size = (shape.iter().product::<usize>() * 4) as f64;
        let channels = shape[1];
        let (x, output_grad) = (activation(shape), activation(shape));
        let gamma = Tensor::<1>::ones([channels], device);
        let beta = Tensor::<1>::zeros([channels], device);
        for ours in [true, false] {
            // The output, and with `backward` the input's gradient and gamma's and beta's
            // (ours in one [5, channels] tensor).
            let pass = |backward: bool| -> Vec<Tensor<2>> {
                let flat = |t: Tensor<4>| t.reshape([shape[0] * channels, shape[2] * shape[3]]);
                if ours {
                    let statistics = <D as BatchNormOps>::batch_norm_statistics(
                        x.clone().into_dispatch(),
                        gamma.clone().into_dispatch(),
                        beta.clone().into_dispatch(),
                        epsilon,
                    );
                    let output =
                        Tensor::<4>::from_dispatch(<D as BatchNormOps>::batch_norm_normalize(
                            x.clone().into_dispatch(),
                            statistics.clone(),
                            gamma.clone().into_dispatch(),
                            beta.clone().into_dispatch(),
                            epsilon,
                        ));
                    if !backward {
                        return vec![flat(output), Tensor::from_dispatch(statistics)];
                    }
                    let sums = <D as BatchNormOps>::batch_norm_grad_sums(
                        x.clone().into_dispatch(),
                        statistics,
                        gamma.clone().into_dispatch(),
                        output_grad.clone().into_dispatch(),
                        epsilon,
                    );
                    let input_grad =
                        Tensor::<4>::from_dispatch(<D as BatchNormOps>::batch_norm_input_grad(
                            x.clone().into_dispatch(),
                            output_grad.clone().into_dispatch(),
                            sums.clone(),
                        ));
                    vec![flat(output), flat(input_grad), Tensor::from_dispatch(sums)]
                } else {
                    let train = <D as ModuleOps<D>>::batch_norm_train(
                        x.clone().into_dispatch(),
                        gamma.clone().into_dispatch(),
                        beta.clone().into_dispatch(),
                        epsilon,
                    );
                    let output = flat(Tensor::<4>::from_dispatch(train.output));
                    let [mean, variance] =
                        [train.mean, train.variance].map(Tensor::<1>::from_dispatch);
                    if !backward {
                        return vec![output, mean.unsqueeze(), variance.unsqueeze()];
                    }
                    let grads = <D as ModuleOps<D>>::batch_norm_train_backward(
                        x.clone().into_dispatch(),
                        gamma.clone().into_dispatch(),
                        mean.into_dispatch(),
                        variance.into_dispatch(),
                        epsilon,
                        output_grad.clone().into_dispatch(),
                    );
                    let [gamma_grad, beta_grad] = [grads.gamma_grad, grads.beta_grad]
                        .map(|t| Tensor::<1>::from_dispatch(t).unsqueeze());
                    let input_grad = flat(Tensor::<4>::from_dispatch(grads.x_grad));
                    vec![output, input_grad, gamma_grad, beta_grad]
                }
            };
            let forward = median_ms(device, options, || pass(false));
            let both = median_ms(device, options, || pass(true));
            // What the passes must read and write at the least: forward x twice and y once;
            // backward x and dy twice, dx once.
            emit(json!({
                "figure": "batch_norm", "shape": shape, "layout": layout,
                "implementation": if ours { "ours" } else { "burn" },
                "forward_ms": forward, "forward_gb_per_s": 3.0 * size / forward / 1e6,
                "forward_backward_ms": both, "forward_backward_gb_per_s": 8.0 * size / both / 1e6,
            }));
        }
    }
}
