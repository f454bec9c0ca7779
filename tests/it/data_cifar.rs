//! CIFAR-10 binaries: records decode to the exact pixels and labels, and bad files (missing,
//! truncated, a label of 10 or more) fail when opened with a message naming the file and record.

use crate::common;

use common::data_gen::{cifar_file, cifar_label, cifar_pixel, write_cifar};
use resnet_cuda::data::cifar10;

#[test]
fn records_decode_to_the_exact_pixels_in_hwc_order() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 3);
    let splits = cifar10::splits(dir.path()).unwrap();
    assert_eq!(splits.train.len(), 15);
    assert_eq!(splits.test.len(), 3);
    assert_eq!(splits.train.image_size(), (32, 32));
    let mut image = vec![0u8; 32 * 32 * 3];
    // Training index 7 is record 1 of the third file (data_batch_3.bin).
    for (ds, index, f, r) in [
        (&splits.train, 0, 1, 0),
        (&splits.train, 7, 3, 1),
        (&splits.train, 14, 5, 2),
        (&splits.test, 2, 0, 2),
    ] {
        let label = ds.load(index, &mut image).unwrap();
        assert_eq!(label, cifar_label(f, r) as u32);
        for p in 0..1024 {
            for c in 0..3 {
                assert_eq!(
                    image[p * 3 + c],
                    cifar_pixel(f, r, c, p),
                    "image {index}, pixel {p}, channel {c}"
                );
            }
        }
    }
}

fn open_error(dir: &std::path::Path) -> String {
    match cifar10::splits(dir) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 2);
    std::fs::remove_file(dir.path().join("data_batch_4.bin")).unwrap();
    let e = open_error(dir.path());
    assert!(e.contains("data_batch_4.bin"), "{e}");
}

#[test]
fn a_truncated_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 2);
    let mut bytes = cifar_file(2, 2);
    bytes.truncate(3073 + 1000);
    std::fs::write(dir.path().join("data_batch_2.bin"), bytes).unwrap();
    let e = open_error(dir.path());
    assert!(e.contains("data_batch_2.bin"), "{e}");
    assert!(e.contains("4073 bytes"), "{e}");
}

#[test]
fn a_label_of_ten_names_the_file_and_record() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 3);
    let mut bytes = cifar_file(0, 3);
    bytes[2 * 3073] = 10;
    std::fs::write(dir.path().join("test_batch.bin"), bytes).unwrap();
    let e = open_error(dir.path());
    assert!(e.contains("test_batch.bin"), "{e}");
    assert!(e.contains("record 2 has label 10"), "{e}");
}
