//! Real-data formats through the command line: train then `eval --crops 10` and `multiscale` on a
//! generated ImageNet-style folder with resnet18 (with a truncated JPEG in train, a corrupt JPEG
//! and a PNG without its end chunk in val, and an exact resume on another number of decode
//! threads), train and eval on generated CIFAR-10 files with resnet20, `data-bench`, and bad CIFAR
//! files failing with one line naming the file.

use crate::common;

use std::path::Path;
use std::process::Output;

use common::data_gen::{
    cifar_file, corrupt_jpeg, png_rgb, smooth, truncated_jpeg, write_cifar, write_imagenet,
};

use crate::common::runs;
use crate::common::runs::cli;
use runs::latest;

fn run(args: &[&str]) -> Output {
    cli().args(args).output().expect("the binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn eval_json(checkpoint: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "eval",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let o = run(&args);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap()
}

#[test]
fn imagenet_folder_trains_and_evaluates_with_10_crops_and_multiscale() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("imagenet");
    // 2 classes x 4 training images, 1 validation image each (48 px, square, so the 640 scale of
    // multiscale stays 640x640), plus a damaged JPEG in each split: in train a real one cut to a
    // third (an interrupted download, which the decoder would otherwise fill with grey), in val
    // garbage after a JPEG header and a PNG cut before its IEND chunk.
    write_imagenet(&data, 4, 1, 48);
    std::fs::write(data.join("train/a/999-truncated.jpg"), truncated_jpeg()).unwrap();
    std::fs::write(data.join("val/b/999-broken.jpg"), corrupt_jpeg()).unwrap();
    let png = png_rgb(&smooth(48, 48, 3), 48, 48);
    std::fs::write(data.join("val/a/999-no-end.png"), &png[..png.len() - 12]).unwrap();
    let out = dir.path().join("run");
    let spec = format!("imagenet:{}", data.display());
    let o = run(&[
        "train",
        "--model",
        "resnet18",
        "--data",
        &spec,
        "--batch-size",
        "2",
        "--iters",
        "3",
        "--eval-every",
        "3",
        "--workers",
        "2",
        "--no-shuffle",
        "--out",
        out.to_str().unwrap(),
    ]);
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    // Unshuffled, 9 training images in batches of 2: the truncated one (the fifth of class a) falls
    // in iteration 2 and is replaced, named once and counted at the end.
    assert!(
        log.contains("999-truncated.jpg") && log.contains("truncated:"),
        "{log}"
    );
    assert_eq!(
        log.matches("warning: skipping an unreadable training image")
            .count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("1 unreadable training images skipped"),
        "{log}"
    );
    // The evaluation during training names the damaged PNG.
    assert!(log.contains("999-no-end.png"), "{log}");
    // The mean image's sample (every training image here) leaves it out too.
    assert!(
        log.contains("mean image: 1 unreadable images skipped"),
        "{log}"
    );
    assert!(data.join("resnet-cuda-mean-224.json").exists());
    let checkpoint = latest(&out);
    // The same run on one decode thread, stopped after 2 iterations and resumed to 3, ends with the
    // same weights bit for bit: views depend on the seed and their place in the run only.
    let out2 = dir.path().join("run2");
    let o = run(&[
        "train",
        "--model",
        "resnet18",
        "--data",
        &spec,
        "--batch-size",
        "2",
        "--iters",
        "2",
        "--eval-every",
        "3",
        "--workers",
        "1",
        "--no-shuffle",
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = run(&["train", "--resume", out2.to_str().unwrap(), "--iters", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    let weights = |c: &Path| std::fs::read(c.join("model.safetensors")).unwrap();
    assert!(
        weights(&latest(&out2)) == weights(&checkpoint),
        "resumed weights differ"
    );
    for crops in ["10", "multiscale"] {
        let r = eval_json(&checkpoint, &["--crops", crops, "--batch-size", "10"]);
        assert_eq!(r["images"], 2, "{crops}: {r}");
        assert_eq!(r["skipped"], 2, "{crops}: {r}");
        let top1 = r["top1_err"].as_f64().unwrap();
        assert!([0.0, 0.5, 1.0].contains(&top1), "{crops}: {r}");
        // Two classes: the label is always in the top 5.
        assert_eq!(r["top5_err"].as_f64().unwrap(), 0.0);
    }
    let bad = run(&[
        "eval",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--crops",
        "12",
    ]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("--crops"), "{}", text(&bad));
}

#[test]
fn data_bench_reports_images_per_second_per_core() {
    let dir = tempfile::tempdir().unwrap();
    write_imagenet(dir.path(), 2, 1, 40);
    let spec = format!("imagenet:{}", dir.path().display());
    let o = run(&[
        "data-bench",
        "--data",
        &spec,
        "--workers",
        "2",
        "--images",
        "8",
        "--batch-size",
        "4",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let r: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap();
    assert_eq!(r["workers"], 2);
    assert!(r["images"].as_u64().unwrap() >= 8);
    assert!(r["decode_images_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["pipeline_images_per_s"].as_f64().unwrap() > 0.0);
    let cifar = run(&["data-bench", "--data", "synthetic"]);
    assert!(!cifar.status.success());
    assert!(text(&cifar).contains("imagenet:DIR"), "{}", text(&cifar));
}

#[test]
fn cifar10_trains_and_evaluates_with_resnet20() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    write_cifar(&data, 4);
    let out = dir.path().join("run");
    let spec = format!("cifar10:{}", data.display());
    let o = run(&[
        "train",
        "--model",
        "resnet20",
        "--data",
        &spec,
        "--batch-size",
        "4",
        "--iters",
        "3",
        "--eval-every",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("cifar10"), "{}", text(&o));
    let r = eval_json(&latest(&out), &[]);
    assert_eq!(r["images"], 4);
    let ten = run(&[
        "eval",
        "--checkpoint",
        latest(&out).to_str().unwrap(),
        "--crops",
        "10",
    ]);
    assert!(!ten.status.success());
    assert!(text(&ten).contains("--crops 10"), "{}", text(&ten));
}

#[test]
fn bad_cifar10_files_fail_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 2);
    let mut truncated = cifar_file(3, 2);
    truncated.pop();
    std::fs::write(dir.path().join("data_batch_3.bin"), truncated).unwrap();
    let spec = format!("cifar10:{}", dir.path().display());
    let out = dir.path().join("run");
    let o = run(&[
        "train",
        "--data",
        &spec,
        "--iters",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success());
    assert!(!err.contains("panicked"), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_default();
    assert!(line.contains("data_batch_3.bin"), "{err}");
    // A missing split folder of an ImageNet-style set is named the same way.
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(empty.path().join("train/a")).unwrap();
    std::fs::write(empty.path().join("train/a/x.png"), b"x").unwrap();
    let spec = format!("imagenet:{}", empty.path().display());
    let o = run(&[
        "train",
        "--model",
        "resnet18",
        "--data",
        &spec,
        "--iters",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success());
    let line = err
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_default();
    assert!(line.contains("val") && line.contains("missing"), "{err}");
}
