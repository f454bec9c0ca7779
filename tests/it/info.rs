//! `resnet-cuda info`: runs on any machine, says which backends are here, and never panics.

use assert_cmd::Command;
use resnet_cuda::backend::gpu::cuda_info::{self, DriverStatus};
use resnet_cuda::backend::gpu::embedded;

fn info() -> (String, String) {
    let out = Command::cargo_bin("resnet-cuda")
        .unwrap()
        .arg("info")
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        out.status.success(),
        "info exited with {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "info panicked:\n{stderr}");
    (stdout, stderr)
}

#[test]
fn info_lists_the_cpu_backend() {
    let (stdout, _) = info();
    assert!(stdout.contains("cpu backend: available"), "{stdout}");
}

#[test]
fn info_reports_the_embedded_kernels() {
    let (stdout, _) = info();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("cuda kernels:"))
        .unwrap_or_else(|| panic!("no kernels line in:\n{stdout}"));
    // CI builds with nvcc and sets this, so that a build that silently lost the kernels fails.
    if std::env::var("RESNET_EXPECT_KERNELS").as_deref() == Ok("1") {
        assert!(embedded::present(), "RESNET_EXPECT_KERNELS=1 but {line}");
    }
    if embedded::present() {
        // Built with nvcc: the default architectures, unless CUDA_ARCHS chose others.
        for arch in embedded::ARCHS {
            assert!(line.contains(arch), "{line}");
        }
        if option_env!("CUDA_ARCHS").is_none() {
            assert_eq!(embedded::ARCHS, ["sm_80", "sm_90"]);
            assert!(line.contains("sm_80, sm_90"), "{line}");
        }
        assert!(!embedded::FATBINS.is_empty());
        assert!(embedded::FATBINS.iter().all(|(_, bytes)| !bytes.is_empty()));
    } else {
        assert!(line.contains("absent"), "{line}");
        assert!(line.contains("tools/install-nvcc.sh"), "{line}");
        assert!(line.contains("NVCC="), "{line}");
    }
}

#[test]
fn info_reports_the_driver_without_panicking() {
    let (stdout, _) = info();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("cuda driver:"))
        .unwrap_or_else(|| panic!("no driver line in:\n{stdout}"));
    match cuda_info::probe() {
        DriverStatus::NotFound { .. } => {
            assert!(line.contains("no CUDA driver found"), "{line}");
            assert!(line.contains("could not be loaded"), "{line}");
            assert!(!stdout.contains("  gpu "), "{stdout}");
        }
        DriverStatus::Unusable { .. } => assert!(line.contains("not usable"), "{line}"),
        DriverStatus::Found { gpus, .. } => {
            assert!(line.contains(&format!("{} GPU", gpus.len())), "{line}");
            for g in &gpus {
                let (major, minor) = g.capability;
                assert!(
                    stdout.contains(&format!("compute capability {major}.{minor}")),
                    "{stdout}"
                );
                assert!(stdout.contains(&g.name), "{stdout}");
            }
        }
    }
}
