use std::io::{Cursor, Write};
use std::path::Path;

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use super::*;

const MANIFEST: &str = "name = \"hello\"\ncommand = [\"sh\", \"run.sh\"]\n";

fn options() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

fn zip_with(build: impl FnOnce(&mut ZipWriter<Cursor<Vec<u8>>>)) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    build(&mut writer);
    writer.finish().unwrap().into_inner()
}

/// Names ending with `/` become directory entries, the others files.
fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    zip_with(|writer| {
        for (name, content) in entries {
            if name.ends_with('/') {
                writer.add_directory(*name, options()).unwrap();
            } else {
                writer.start_file(*name, options()).unwrap();
                writer.write_all(content).unwrap();
            }
        }
    })
}

/// A zip holding `robot.toml` plus one more entry named `name`.
fn package_with(name: &str) -> Vec<u8> {
    zip_of(&[("robot.toml", MANIFEST.as_bytes()), (name, b"x")])
}

/// A zip with `robot.toml` and `zeros.bin`, `size` zeros written in chunks.
fn package_with_zeros(size: usize) -> Vec<u8> {
    zip_with(|writer| {
        writer.start_file("zeros.bin", options()).unwrap();
        let chunk = vec![0; 1024 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len());
            writer.write_all(&chunk[..n]).unwrap();
            left -= n;
        }
        writer.start_file("robot.toml", options()).unwrap();
        writer.write_all(MANIFEST.as_bytes()).unwrap();
    })
}

fn header_offset(zip: &[u8], signature: &[u8; 4], name_at: usize, name: &str) -> usize {
    (0..zip.len() - name_at)
        .find(|&at| {
            zip[at..].starts_with(signature) && zip[at + name_at..].starts_with(name.as_bytes())
        })
        .unwrap_or_else(|| panic!("no header for {name:?}"))
}

fn local_header(zip: &[u8], name: &str) -> usize {
    header_offset(zip, b"PK\x03\x04", 30, name)
}

fn central_header(zip: &[u8], name: &str) -> usize {
    header_offset(zip, b"PK\x01\x02", 46, name)
}

fn patch_u32(zip: &mut [u8], at: usize, value: u32) {
    zip[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn invalid(result: Result<InspectedPackage, PackageError>) -> String {
    match result {
        Err(PackageError::Invalid(message)) => message,
        other => panic!("expected PackageError::Invalid, got {other:?}"),
    }
}

fn too_large(result: Result<InspectedPackage, PackageError>) -> String {
    match result {
        Err(PackageError::TooLarge(message)) => message,
        other => panic!("expected PackageError::TooLarge, got {other:?}"),
    }
}

fn is_empty_dir(path: &Path) -> bool {
    fs::read_dir(path).unwrap().next().is_none()
}

#[test]
fn a_valid_package_at_the_root_is_inspected_and_unpacked() {
    let zip = zip_of(&[
        ("robot.toml", MANIFEST.as_bytes()),
        ("run.sh", b"echo hi\n"),
        ("lib/", b""),
        ("lib/util.sh", b"util\n"),
        ("data/deep/file.txt", b"deep\n"),
    ]);
    let inspected = inspect(&zip, &Limits::default()).unwrap();
    assert_eq!(inspected.root, "");
    assert_eq!(inspected.manifest.name, "hello");
    assert_eq!(inspected.manifest.command, ["sh", "run.sh"]);
    assert_eq!(inspected.manifest_text, MANIFEST);
    assert_eq!(inspected.sha256, sha256_hex(&zip));

    let base = tempfile::tempdir().unwrap();
    let target = base.path().join("packages").join("hello");
    let unpacked = unpack(&zip, &target, &Limits::default()).unwrap();
    assert_eq!(unpacked, inspected);
    assert_eq!(
        fs::read_to_string(target.join("robot.toml")).unwrap(),
        MANIFEST
    );
    assert_eq!(
        fs::read_to_string(target.join("run.sh")).unwrap(),
        "echo hi\n"
    );
    assert_eq!(
        fs::read_to_string(target.join("lib/util.sh")).unwrap(),
        "util\n"
    );
    assert_eq!(
        fs::read_to_string(target.join("data/deep/file.txt")).unwrap(),
        "deep\n"
    );
    // The staging directory was renamed into place: only the target remains.
    let siblings: Vec<_> = fs::read_dir(base.path().join("packages"))
        .unwrap()
        .collect();
    assert_eq!(siblings.len(), 1);
}

#[test]
fn a_package_inside_one_top_level_folder_unpacks_with_robot_toml_at_the_target_root() {
    let zip = zip_of(&[
        ("my-robot/", b""),
        ("my-robot/robot.toml", MANIFEST.as_bytes()),
        ("my-robot/lib/", b""),
        ("my-robot/lib/util.sh", b"util\n"),
    ]);
    let inspected = inspect(&zip, &Limits::default()).unwrap();
    assert_eq!(inspected.root, "my-robot/");

    let base = tempfile::tempdir().unwrap();
    let target = base.path().join("pkg");
    unpack(&zip, &target, &Limits::default()).unwrap();
    assert_eq!(
        fs::read_to_string(target.join("robot.toml")).unwrap(),
        MANIFEST
    );
    assert_eq!(
        fs::read_to_string(target.join("lib/util.sh")).unwrap(),
        "util\n"
    );
    assert!(!target.join("my-robot").exists());

    // Zippers that write no directory entries are understood too.
    let without_directories = zip_of(&[("f/robot.toml", MANIFEST.as_bytes()), ("f/a/b", b"")]);
    let inspected = inspect(&without_directories, &Limits::default()).unwrap();
    assert_eq!(inspected.root, "f/");
}

#[test]
fn a_package_without_robot_toml_is_refused() {
    let expected = "the package has no robot.toml at its root or in its single top-level folder";
    let cases = [
        zip_of(&[("main.py", b"print()")]),
        zip_of(&[("a/b/robot.toml", MANIFEST.as_bytes())]),
        zip_of(&[("a/robot.toml", MANIFEST.as_bytes()), ("b/other", b"")]),
        zip_of(&[
            ("a/robot.toml", MANIFEST.as_bytes()),
            ("top-level-file", b""),
        ]),
        zip_of(&[("robot.toml/", b"")]),
        zip_of(&[]),
    ];
    for zip in cases {
        assert_eq!(invalid(inspect(&zip, &Limits::default())), expected);
    }
}

#[test]
fn a_bad_manifest_is_refused_with_the_manifest_error() {
    let zip = zip_of(&[("robot.toml", b"name = \"bad name\"\ncommand = [\"x\"]\n")]);
    let error = inspect(&zip, &Limits::default()).unwrap_err();
    assert!(matches!(error, PackageError::Manifest(_)), "{error:?}");
    assert!(
        error.to_string().contains("name \"bad name\" is invalid"),
        "{error}"
    );

    let zip = zip_of(&[("robot.toml", b"not = [toml")]);
    let error = inspect(&zip, &Limits::default()).unwrap_err();
    assert!(
        matches!(error, PackageError::Manifest(ManifestError::Syntax(_))),
        "{error:?}"
    );
}

#[test]
fn a_manifest_that_is_too_large_or_not_utf8_is_refused() {
    let mut large = MANIFEST.to_owned();
    large.push_str(&"# padding\n".repeat(7000));
    let message = invalid(inspect(
        &zip_of(&[("robot.toml", large.as_bytes())]),
        &Limits::default(),
    ));
    assert_eq!(
        message,
        "entry \"robot.toml\" is larger than 64 KiB, the limit for robot.toml"
    );

    let message = invalid(inspect(
        &zip_of(&[("robot.toml", b"name = \"\xff\"")]),
        &Limits::default(),
    ));
    assert_eq!(message, "entry \"robot.toml\" is not valid utf-8");
}

#[test]
fn a_parent_directory_entry_is_refused_by_inspect_and_by_unpack_without_writing_anything() {
    for name in ["../evil", "a/../../evil", "a/.."] {
        let zip = package_with(name);
        let message = invalid(inspect(&zip, &Limits::default()));
        assert_eq!(
            message,
            format!("entry {name:?} has a '..' path component, which escapes the package")
        );

        let base = tempfile::tempdir().unwrap();
        let target = base.path().join("pkg");
        invalid(unpack(&zip, &target, &Limits::default()));
        assert!(
            is_empty_dir(base.path()),
            "unpack wrote into {:?}",
            base.path()
        );
    }
}

#[test]
fn an_absolute_path_is_refused() {
    let message = invalid(inspect(&package_with("/etc/x"), &Limits::default()));
    assert_eq!(message, "entry \"/etc/x\" is an absolute path");
}

#[test]
fn a_backslash_in_a_name_is_refused() {
    for name in ["..\\evil", "\\evil", "dir\\file"] {
        let message = invalid(inspect(&package_with(name), &Limits::default()));
        assert_eq!(
            message,
            format!("entry {name:?} contains a backslash, which could be read as a path separator")
        );
    }
}

#[test]
fn a_drive_letter_nul_or_empty_component_is_refused() {
    let message = invalid(inspect(&package_with("C:/windows/x"), &Limits::default()));
    assert!(
        message.starts_with("entry \"C:/windows/x\" contains a colon"),
        "{message}"
    );
    let message = invalid(inspect(&package_with("a\0b"), &Limits::default()));
    assert_eq!(message, "entry \"a\\0b\" contains a NUL character");
    let message = invalid(inspect(&package_with("a//b"), &Limits::default()));
    assert_eq!(message, "entry \"a//b\" has an empty path component");
    let message = invalid(inspect(&package_with("./b"), &Limits::default()));
    assert_eq!(message, "entry \"./b\" has a '.' path component");
}

#[test]
fn a_symlink_entry_is_refused() {
    let zip = zip_with(|writer| {
        writer.start_file("robot.toml", options()).unwrap();
        writer.write_all(MANIFEST.as_bytes()).unwrap();
        writer
            .add_symlink("link", "/etc/passwd", SimpleFileOptions::default())
            .unwrap();
    });
    let message = invalid(inspect(&zip, &Limits::default()));
    assert_eq!(
        message,
        "entry \"link\" is a symbolic link, which packages may not contain"
    );

    let base = tempfile::tempdir().unwrap();
    invalid(unpack(&zip, &base.path().join("pkg"), &Limits::default()));
    assert!(is_empty_dir(base.path()));
}

#[test]
fn a_special_file_entry_is_refused() {
    let mut zip = package_with("fifo");
    let at = central_header(&zip, "fifo");
    // External attributes: the unix mode of a fifo in the high 16 bits.
    patch_u32(&mut zip, at + 38, 0o010_644 << 16);
    let message = invalid(inspect(&zip, &Limits::default()));
    assert_eq!(
        message,
        "entry \"fifo\" is a special file (type 10000), only regular files and directories are allowed"
    );
}

#[test]
fn a_file_also_used_as_a_directory_is_refused() {
    let zip = zip_of(&[
        ("robot.toml", MANIFEST.as_bytes()),
        ("a", b""),
        ("a/b", b""),
    ]);
    let message = invalid(inspect(&zip, &Limits::default()));
    assert_eq!(
        message,
        "entry \"a\" is a file, but other entries use it as a directory"
    );
}

#[test]
fn a_zip_bomb_is_refused_at_inspection_as_too_large() {
    let zip = package_with_zeros(20 * 1024 * 1024);
    assert!(zip.len() < 100 * 1024, "20 MiB of zeros compress well");
    let limits = Limits {
        max_unpacked_bytes: 1024 * 1024,
        ..Limits::default()
    };
    let message = too_large(inspect(&zip, &limits));
    assert!(message.starts_with("entry \"zeros.bin\""), "{message}");

    let base = tempfile::tempdir().unwrap();
    too_large(unpack(&zip, &base.path().join("pkg"), &limits));
    assert!(is_empty_dir(base.path()));
}

#[test]
fn an_entry_whose_declared_size_lies_is_still_bounded() {
    let actual_size: u32 = 2 * 1024 * 1024;
    let mut zip = package_with_zeros(actual_size as usize);
    // Declare 10 bytes instead, in the local and in the central header.
    let local = local_header(&zip, "zeros.bin");
    patch_u32(&mut zip, local + 22, 10);
    let central = central_header(&zip, "zeros.bin");
    patch_u32(&mut zip, central + 24, 10);

    let limits = Limits {
        max_unpacked_bytes: 1024 * 1024,
        ..Limits::default()
    };
    let message = too_large(inspect(&zip, &limits));
    assert_eq!(
        message,
        "entry \"zeros.bin\" unpacks past the limit of 1048576 bytes for the whole package"
    );
    let base = tempfile::tempdir().unwrap();
    too_large(unpack(&zip, &base.path().join("pkg"), &limits));
    assert!(is_empty_dir(base.path()));

    // Under the limit, the lie itself is refused.
    let message = invalid(inspect(&zip, &Limits::default()));
    assert_eq!(
        message,
        format!("entry \"zeros.bin\" unpacks to {actual_size} bytes but declares 10")
    );
}

#[test]
fn too_many_entries_are_refused() {
    let zip = zip_of(&[("robot.toml", MANIFEST.as_bytes()), ("a", b""), ("b", b"")]);
    let limits = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    let message = too_large(inspect(&zip, &limits));
    assert_eq!(
        message,
        "the package has 3 entries, more than the limit of 2"
    );
    assert!(inspect(
        &zip,
        &Limits {
            max_entries: 3,
            ..limits
        }
    )
    .is_ok());
}

#[test]
fn a_zip64_directory_declaring_too_many_entries_is_refused_before_listing() {
    // At every alignment, behind some package bytes.
    for junk in 0..9 {
        let mut bytes = package_with("main.py");
        bytes.extend(std::iter::repeat_n(6, junk));
        bytes.extend_from_slice(b"PK\x06\x06");
        bytes.extend_from_slice(&[0; 28]);
        bytes.extend_from_slice(&5_000_000u64.to_le_bytes());
        bytes.extend_from_slice(&[0; 16]);
        let message = too_large(inspect(&bytes, &Limits::default()));
        assert_eq!(
            message,
            "the package's zip64 directory declares 5000000 entries, more than the limit of 10000"
        );
    }
}

#[test]
fn a_package_over_the_size_limit_is_refused() {
    let zip = package_with("main.py");
    let limits = Limits {
        max_package_bytes: zip.len() as u64 - 1,
        ..Limits::default()
    };
    let message = too_large(inspect(&zip, &limits));
    assert_eq!(
        message,
        format!(
            "the package is {} bytes, more than the limit of {} bytes",
            zip.len(),
            zip.len() - 1
        )
    );
    let exact = Limits {
        max_package_bytes: zip.len() as u64,
        ..limits
    };
    assert!(inspect(&zip, &exact).is_ok());
}

#[test]
fn bytes_that_are_not_a_zip_are_refused() {
    let message = invalid(inspect(b"hello, not a zip", &Limits::default()));
    assert!(
        message.starts_with("the package is not a zip archive: "),
        "{message}"
    );
}

#[cfg(unix)]
#[test]
fn the_executable_bit_survives_unpack() {
    use std::os::unix::fs::PermissionsExt;

    let zip = zip_with(|writer| {
        writer.start_file("robot.toml", options()).unwrap();
        writer.write_all(MANIFEST.as_bytes()).unwrap();
        writer
            .start_file("run.sh", options().unix_permissions(0o755))
            .unwrap();
        writer.write_all(b"#!/bin/sh\necho hi\n").unwrap();
        writer
            .start_file("data.txt", options().unix_permissions(0o666))
            .unwrap();
        writer.write_all(b"data").unwrap();
    });
    let base = tempfile::tempdir().unwrap();
    let target = base.path().join("pkg");
    unpack(&zip, &target, &Limits::default()).unwrap();
    let mode = |name: &str| {
        fs::metadata(target.join(name))
            .unwrap()
            .permissions()
            .mode()
    };
    assert_eq!(mode("run.sh") & 0o111, 0o111);
    assert_eq!(mode("data.txt") & 0o111, 0);
    // Group and other never get write access from the package.
    assert_eq!(mode("data.txt") & 0o022, 0);
}

#[test]
fn unpack_refuses_a_target_directory_that_is_not_empty() {
    let zip = package_with("main.py");
    let base = tempfile::tempdir().unwrap();
    let target = base.path().join("pkg");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("old"), "old").unwrap();
    let error = unpack(&zip, &target, &Limits::default()).unwrap_err();
    match &error {
        PackageError::Io(e) => assert_eq!(e.kind(), io::ErrorKind::AlreadyExists),
        other => panic!("expected PackageError::Io, got {other:?}"),
    }
    assert!(
        error
            .to_string()
            .ends_with("already exists and is not empty"),
        "{error}"
    );
    let left: Vec<_> = fs::read_dir(&target).unwrap().collect();
    assert_eq!(left.len(), 1);
    assert_eq!(fs::read_dir(base.path()).unwrap().count(), 1);
}

#[test]
fn unpack_fills_an_existing_empty_target_directory() {
    let zip = package_with("main.py");
    let base = tempfile::tempdir().unwrap();
    let target = base.path().join("pkg");
    fs::create_dir(&target).unwrap();
    unpack(&zip, &target, &Limits::default()).unwrap();
    assert_eq!(fs::read_to_string(target.join("main.py")).unwrap(), "x");
    assert_eq!(fs::read_dir(base.path()).unwrap().count(), 1);
}

#[test]
fn sha256_hex_of_known_bytes_is_the_known_digest() {
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// A zip with two entries of one name: written under two names of the same
/// length (the writer refuses duplicates), then the second renamed in both
/// its headers.
fn zip_with_twice(name: &str, first: &[u8], second: &[u8]) -> Vec<u8> {
    let other = format!("{}#", &name[..name.len() - 1]);
    let mut zip = zip_of(&[
        (name, first),
        (other.as_str(), second),
        ("run.sh", b"echo hi"),
    ]);
    for at in [
        local_header(&zip, &other) + 30,
        central_header(&zip, &other) + 46,
    ] {
        zip[at..at + name.len()].copy_from_slice(name.as_bytes());
    }
    zip
}

#[test]
fn an_entry_name_given_twice_is_refused_by_inspect_and_by_unpack() {
    let evil = "name = \"evil\"\ncommand = [\"sh\", \"-c\", \"rm -rf ~\"]\n";
    for (name, first, second) in [
        ("robot.toml", MANIFEST.as_bytes(), evil.as_bytes()),
        ("run.sh2", b"a".as_slice(), b"b".as_slice()),
    ] {
        let zip = zip_with_twice(name, first, second);
        let message = invalid(inspect(&zip, &Limits::default()));
        assert_eq!(
            message,
            format!("entry {name:?} appears more than once in the package")
        );
        let base = tempfile::tempdir().unwrap();
        let target = base.path().join("pkg");
        invalid(unpack(&zip, &target, &Limits::default()));
        assert!(
            is_empty_dir(base.path()),
            "unpack wrote into {:?}",
            base.path()
        );
    }
}
