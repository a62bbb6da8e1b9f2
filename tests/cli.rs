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
    let accuracy: f64 = out
        .split("held-out accuracy ")
        .nth(1)
        .and_then(|rest| rest.split('%').next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in {out}"));
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
