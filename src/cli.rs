use std::collections::HashMap;
use std::process::ExitCode;

use burn::prelude::*;
use resnet_web::inference::{images_tensor, logits};
use resnet_web::resnet::{Arch, ResNetConfig, Shortcut, Stem};
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

ARCH: resnet18 resnet34 resnet50 resnet101 resnet152 (ImageNet) or
      resnet20 resnet32 resnet44 resnet56 resnet110 (CIFAR)";

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

fn count_flag(flags: &HashMap<String, String>, name: &str, default: usize) -> Result<usize> {
    match flags.get(name) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|_| usage_error(&format!("--{name} takes a whole number, not '{text}'"))),
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
        count_flag(flags, "num-classes", default_classes)?,
        count_flag(flags, "in-channels", 3)?,
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
