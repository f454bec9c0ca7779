//! `plot`: reading `metrics.jsonl` and drawing the training curves of run folders to a PNG.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use resnet_cuda::plot::{
    plot_runs, plot_runs_with, read_metrics, run_colour, PlotOptions, DEFAULT_SIZE, METRICS_FILE,
};
use resnet_cuda::Error;

/// Writes `dir/metrics.jsonl` with `lines` (creating `dir`) and returns `dir`.
fn write_run(parent: &Path, name: &str, lines: &[String]) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(METRICS_FILE), lines.join("\n") + "\n").unwrap();
    dir
}

/// A short run: a training interval every 100 iterations and an evaluation every 500, errors falling
/// from `start` towards `end`.
fn run_lines(iters: u64, start: f64, end: f64) -> Vec<String> {
    let mut lines = Vec::new();
    for it in (100..=iters).step_by(100) {
        let t = it as f64 / iters as f64;
        let train = end + (start - end) * (-4.0 * t).exp();
        lines.push(format!(
            r#"{{"iter": {it}, "epoch": {}, "lr": 0.1, "loss": 1.23, "train_err": {train}, "img_per_s": 512.0}}"#,
            it / 400 + 1
        ));
        if it % 500 == 0 {
            lines.push(format!(
                r#"{{"iter": {it}, "test_err": {}, "test_top5_err": 0.05}}"#,
                train + 0.03
            ));
        }
    }
    lines
}

/// Decodes an 8-bit RGB(A) PNG: (width, height, its pixel colours row by row).
fn decode_png(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let pixels = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, pixels)
}

fn count_colour(pixels: &[[u8; 3]], (r, g, b): (u8, u8, u8)) -> usize {
    pixels.iter().filter(|&&p| p == [r, g, b]).count()
}

#[test]
fn plots_two_runs_to_a_png_of_the_default_size_with_each_runs_colour() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = write_run(tmp.path(), "plain-20", &run_lines(3000, 0.9, 0.15));
    // The second run was resumed from an earlier checkpoint: its iterations go back once.
    let mut resumed = run_lines(2000, 0.9, 0.05);
    resumed.extend(run_lines(4000, 0.9, 0.05).into_iter().skip(18));
    let resnet = write_run(tmp.path(), "resnet-20", &resumed);
    let out = tmp.path().join("curves.png");

    plot_runs(&[plain, resnet], &out).unwrap();

    let (width, height, pixels) = decode_png(&out);
    assert_eq!((width, height), DEFAULT_SIZE);
    assert_eq!(pixels.len(), (width * height) as usize);
    let distinct: HashSet<[u8; 3]> = pixels.iter().copied().collect();
    assert!(
        distinct.len() > 20,
        "only {} distinct colours: a blank plot?",
        distinct.len()
    );
    let white = count_colour(&pixels, (255, 255, 255));
    assert!(
        white > pixels.len() / 2,
        "the background should be mostly white"
    );
    for run in 0..2 {
        let n = count_colour(&pixels, run_colour(run));
        assert!(
            n > 500,
            "run {run}'s colour {:?} covers only {n} pixels",
            run_colour(run)
        );
    }
    // No third run: its colour is absent.
    assert_eq!(count_colour(&pixels, run_colour(2)), 0);
    // Text (axis labels, legend) is drawn in black, anti-aliased into greys.
    assert!(count_colour(&pixels, (0, 0, 0)) > 200);
}

#[test]
fn plot_size_and_a_zoomed_error_axis_can_be_chosen() {
    let tmp = tempfile::tempdir().unwrap();
    let run = write_run(tmp.path(), "resnet-56", &run_lines(2000, 0.9, 0.07));
    let out = tmp.path().join("zoom.png");
    let options = PlotOptions {
        width: 640,
        height: 400,
        y_max_percent: Some(20.0),
    };
    plot_runs_with(&[run], &out, &options).unwrap();
    let (width, height, pixels) = decode_png(&out);
    assert_eq!((width, height), (640, 400));
    assert!(count_colour(&pixels, run_colour(0)) > 100);

    let bad = PlotOptions {
        y_max_percent: Some(0.0),
        ..PlotOptions::default()
    };
    let err = plot_runs_with(&[tmp.path().join("resnet-56")], &out, &bad).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

#[test]
fn a_run_with_a_single_evaluation_and_no_training_lines_still_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let run = write_run(
        tmp.path(),
        "eval-only",
        &[r#"{"iter": 0, "test_err": 0.9, "test_top5_err": 0.5}"#.into()],
    );
    let out = tmp.path().join("one.png");
    plot_runs(&[run], &out).unwrap();
    let (_, _, pixels) = decode_png(&out);
    assert!(
        count_colour(&pixels, run_colour(0)) > 10,
        "the lone point should be drawn"
    );
}

#[test]
fn read_metrics_keeps_the_last_value_of_each_iteration_and_drops_an_abandoned_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let lines: Vec<String> = [
        r#"{"iter": 100, "epoch": 1, "lr": 0.1, "loss": 2.0, "train_err": 0.8, "img_per_s": 1.0}"#,
        r#"{"iter": 200, "epoch": 1, "lr": 0.1, "loss": 2.0, "train_err": 0.7, "img_per_s": 1.0}"#,
        r#"{"iter": 200, "test_err": 0.75, "test_top5_err": 0.3}"#,
        r#"{"iter": 300, "epoch": 1, "lr": 0.1, "loss": 2.0, "train_err": 0.6, "img_per_s": 1.0}"#,
        r#"{"iter": 400, "epoch": 1, "lr": 0.1, "loss": 2.0, "train_err": 0.5, "img_per_s": 1.0}"#,
        r#"{"iter": 400, "test_err": 0.55, "test_top5_err": 0.2}"#,
        "",
        // Resumed from the checkpoint at 200: 300 is written again, 400 not yet.
        r#"{"iter": 300, "epoch": 1, "lr": 0.1, "loss": 2.0, "train_err": 0.65, "img_per_s": 1.0}"#,
        // A diverged interval: NaN is written as null and skipped.
        r#"{"iter": 350, "epoch": 1, "lr": 0.1, "loss": null, "train_err": null, "img_per_s": 1.0}"#,
        r#"{"iter": 400, "test_err": 0.5, "test_top5_err": 0.2}"#,
        r#"{"iter": 400, "some_future_field": 1}"#,
    ]
    .map(String::from)
    .to_vec();
    let run = write_run(tmp.path(), "run", &lines);
    let curves = read_metrics(&run.join(METRICS_FILE)).unwrap();
    assert_eq!(curves.train, vec![(100, 0.8), (200, 0.7), (300, 0.65)]);
    assert_eq!(curves.test, vec![(200, 0.75), (400, 0.5)]);
}

#[test]
fn no_runs_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = plot_runs(&[], &tmp.path().join("x.png")).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
}

#[test]
fn a_missing_run_folder_is_an_io_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ok = write_run(tmp.path(), "ok", &run_lines(1000, 0.9, 0.1));
    let missing = tmp.path().join("no-such-run");
    let out = tmp.path().join("x.png");
    let err = plot_runs(&[ok, missing.clone()], &out).unwrap_err();
    match &err {
        Error::Io { path, cause } => {
            assert_eq!(path, &missing);
            assert_eq!(cause.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected an Io error, got {other:?}"),
    }
    assert!(err.to_string().contains("no-such-run"), "{err}");
    assert!(
        !out.exists(),
        "no plot is written when a run cannot be read"
    );
}

#[test]
fn a_run_without_metrics_jsonl_is_an_io_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let empty_dir = tmp.path().join("fresh");
    std::fs::create_dir(&empty_dir).unwrap();
    let err = plot_runs(std::slice::from_ref(&empty_dir), &tmp.path().join("x.png")).unwrap_err();
    match &err {
        Error::Io { path, cause } => {
            assert_eq!(path, &empty_dir.join(METRICS_FILE));
            assert_eq!(cause.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected an Io error, got {other:?}"),
    }
}

#[test]
fn a_run_whose_metrics_hold_no_errors_is_a_config_error() {
    let tmp = tempfile::tempdir().unwrap();
    let run = write_run(tmp.path(), "started", &[]);
    let err = plot_runs(&[run], &tmp.path().join("x.png")).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("started"), "{err}");
}

#[test]
fn a_malformed_line_is_a_data_error_naming_the_file_and_line() {
    let cases = [
        (r#"{"iter": 300, "train_err": 0.5"#, "invalid JSON"),
        (r#"[1, 2]"#, "object"),
        (r#"{"train_err": 0.5}"#, "iter"),
        (r#"{"iter": -3, "train_err": 0.5}"#, "iter"),
        (r#"{"iter": 300, "train_err": "high"}"#, "train_err"),
        (r#"{"iter": 300, "test_err": 31.0}"#, "test_err"),
    ];
    for (bad, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let mut lines = run_lines(200, 0.9, 0.1);
        assert_eq!(lines.len(), 2);
        lines.push(bad.to_string());
        lines.extend(run_lines(200, 0.9, 0.1));
        let run = write_run(tmp.path(), "broken", &lines);
        let metrics = run.join(METRICS_FILE);
        let err = plot_runs(&[run], &tmp.path().join("x.png")).unwrap_err();
        match &err {
            Error::Data { path, message } => {
                assert_eq!(path, &metrics);
                assert!(message.starts_with("line 3: "), "{bad}: {message}");
                assert!(message.contains(expected), "{bad}: {message}");
            }
            other => panic!("{bad}: expected a Data error, got {other:?}"),
        }
        let shown = err.to_string();
        assert!(
            shown.contains(&metrics.display().to_string()) && shown.contains("line 3"),
            "{shown}"
        );
    }
}

#[test]
fn an_unwritable_output_is_an_io_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run = write_run(tmp.path(), "ok", &run_lines(1000, 0.9, 0.1));
    let out = tmp.path().join("no-such-folder").join("curves.png");
    let err = plot_runs(&[run], &out).unwrap_err();
    match &err {
        Error::Io { path, .. } => assert_eq!(path, &out),
        other => panic!("expected an Io error, got {other:?}"),
    }
}

#[test]
fn runs_with_the_same_folder_name_are_told_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write_run(
        &tmp.path().join("a"),
        "resnet-20",
        &run_lines(1000, 0.9, 0.1),
    );
    let b = write_run(
        &tmp.path().join("b"),
        "resnet-20",
        &run_lines(1000, 0.9, 0.2),
    );
    let out = tmp.path().join("same.png");
    plot_runs(&[a, b], &out).unwrap();
    let (_, _, pixels) = decode_png(&out);
    assert!(count_colour(&pixels, run_colour(0)) > 100);
    assert!(count_colour(&pixels, run_colour(1)) > 100);
}
