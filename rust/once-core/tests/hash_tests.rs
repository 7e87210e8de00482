//! BLAKE3 hashing against the official test vectors, on both file paths (read, and mapped in
//! windows), plus tree expansion and b3sum's line format.

use std::fs;
use std::path::{Path, PathBuf};

use once_core::hash::{
    b3sum_line, hash_bytes, hash_file, hash_files, write_b3sum, Digest, B3SUM_CHUNK, MAP_WINDOW,
    MMAP_RAYON_THRESHOLD,
};
use once_core::Error;

/// The official vectors' input: `len` bytes counting 0, 1, ..., 250, 0, 1, ...
fn vector_input(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn official_vectors() -> Vec<(usize, Digest)> {
    let text = include_str!("data/blake3_test_vectors.json");
    let doc: serde_json::Value = serde_json::from_str(text).expect("vector file is JSON");
    doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|case| {
            let len = usize::try_from(case["input_len"].as_u64().expect("input_len")).unwrap();
            let hex = case["hash"].as_str().expect("hash");
            (len, Digest::from_hex(hex).expect("64 hex digits"))
        })
        .collect()
}

#[test]
fn hash_bytes_matches_official_vectors() {
    let vectors = official_vectors();
    assert!(vectors.len() >= 20, "vector file lost its cases");
    for (len, expected) in vectors {
        assert_eq!(hash_bytes(&vector_input(len)), expected, "input_len {len}");
    }
}

#[test]
fn hash_file_matches_official_vectors() {
    let dir = tempfile::tempdir().unwrap();
    for (len, expected) in official_vectors() {
        let path = dir.path().join(format!("vector-{len}"));
        fs::write(&path, vector_input(len)).unwrap();
        assert_eq!(hash_file(&path).unwrap(), expected, "input_len {len}");
    }
}

/// The reference for inputs beyond the official vectors: blake3's incremental hasher fed in
/// uneven pieces, a code path independent of both of ours.
fn incremental_reference(input: &[u8]) -> Digest {
    let mut hasher = blake3::Hasher::new();
    for piece in input.chunks(1000) {
        hasher.update(piece);
    }
    Digest(*hasher.finalize().as_bytes())
}

#[test]
fn hash_file_agrees_across_map_windows() {
    // Files of more than one window are hashed as BLAKE3 subtrees, each from its own map, and
    // merged: just past one window, an uneven split with a partial last chunk, and a tree whose
    // left side is split again.
    let window = usize::try_from(MAP_WINDOW).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for len in [window + 1, 2 * window + 3 * 1024 + 5, 4 * window + 1] {
        let input = vector_input(len);
        let path = dir.path().join(format!("big-{len}"));
        fs::write(&path, &input).unwrap();
        let expected = Digest(*blake3::hash(&input).as_bytes());
        assert_eq!(hash_file(&path).unwrap(), expected, "len {len}");
        assert_eq!(
            b3sum_of(std::slice::from_ref(&path)).unwrap()[0].1,
            expected,
            "len {len}"
        );
        fs::remove_file(&path).unwrap();
    }
}

#[test]
fn hash_file_agrees_across_the_mmap_threshold() {
    let threshold = usize::try_from(MMAP_RAYON_THRESHOLD).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for len in [
        threshold - 1,
        threshold,
        threshold + 1,
        threshold + 1024 * 1024 + 7,
        // Large enough for rayon to split the tree across several threads.
        8 * 1024 * 1024 + 3,
    ] {
        let input = vector_input(len);
        let path = dir.path().join(format!("big-{len}"));
        fs::write(&path, &input).unwrap();
        let expected = incremental_reference(&input);
        assert_eq!(hash_file(&path).unwrap(), expected, "len {len}");
        assert_eq!(hash_bytes(&input), expected, "len {len}");
    }
}

#[test]
fn hash_file_of_a_missing_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.txt");
    let err = hash_file(&path).unwrap_err();
    match &err {
        Error::Io {
            path: named,
            source,
        } => {
            assert_eq!(named, &path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert!(err.to_string().contains("absent.txt"), "{err}");
}

#[test]
fn hash_files_keeps_the_order_of_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for i in 0..200 {
        let path = dir.path().join(format!("f{i}"));
        fs::write(&path, format!("content {i}")).unwrap();
        paths.push(path);
    }
    paths.push(dir.path().join("missing"));
    let results = hash_files(&paths);
    assert_eq!(results.len(), 201);
    for (i, result) in results.iter().take(200).enumerate() {
        assert_eq!(
            result.as_ref().unwrap(),
            &hash_bytes(format!("content {i}").as_bytes())
        );
    }
    assert!(results[200].is_err());
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn write_b3sum_expands_folders_sorted_with_hidden_files_and_no_ignore_rules() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("tree/b.txt"), "b");
    write(&root.join("tree/a/z.txt"), "z");
    write(&root.join("tree/.hidden"), "h");
    write(&root.join("tree/.gitignore"), "b.txt\n");
    write(&root.join("tree/a-b"), "dash");
    write(&root.join("single.txt"), "single");

    let hashed = b3sum_of(&[root.join("single.txt"), root.join("tree")]).unwrap();
    let names: Vec<PathBuf> = hashed.iter().map(|(path, _)| path.clone()).collect();
    let tree = root.join("tree");
    assert_eq!(
        names,
        vec![
            root.join("single.txt"),
            tree.join(".gitignore"),
            tree.join(".hidden"),
            tree.join("a-b"),
            tree.join("a/z.txt"),
            tree.join("b.txt"),
        ]
    );
    for (path, digest) in &hashed {
        assert_eq!(digest, &hash_bytes(&fs::read(path).unwrap()));
    }
}

#[test]
fn write_b3sum_of_a_missing_path_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    match b3sum_of(std::slice::from_ref(&missing)) {
        Err(Error::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

#[test]
fn b3sum_line_plain() {
    let digest = hash_bytes(b"");
    assert_eq!(
        b3sum_line(&digest, Path::new("dir/file.txt")),
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262  dir/file.txt"
    );
}

#[test]
fn b3sum_line_escapes_backslash_and_newline() {
    let digest = hash_bytes(b"");
    let hex = digest.to_hex();
    assert_eq!(
        b3sum_line(&digest, Path::new("a\\b")),
        format!("\\{hex}  a\\\\b")
    );
    assert_eq!(
        b3sum_line(&digest, Path::new("line1\nline2")),
        format!("\\{hex}  line1\\nline2")
    );
    assert_eq!(
        b3sum_line(&digest, Path::new("both\\\n")),
        format!("\\{hex}  both\\\\\\n")
    );
    // A carriage return is not one of b3sum's escapes.
    assert_eq!(
        b3sum_line(&digest, Path::new("cr\r")),
        format!("{hex}  cr\r")
    );
}

#[cfg(unix)]
#[test]
fn write_b3sum_includes_git_and_follows_links_to_files_only() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    write(&tree.join(".git/HEAD"), "ref: refs/heads/main");
    write(&tree.join("real/big.bin"), &"x".repeat(300_000));
    write(&tree.join("real/small.txt"), "small");
    symlink("real/small.txt", tree.join("link.txt")).unwrap();
    symlink("real", tree.join("dirlink")).unwrap();
    symlink("nowhere", tree.join("dangling")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(tree.join("pipe"))
        .status()
        .is_ok_and(|status| status.success());
    if fifo {
        symlink("pipe", tree.join("pipe-link")).unwrap();
    }
    let hashed = b3sum_of(std::slice::from_ref(&tree)).unwrap();
    let names: Vec<PathBuf> = hashed.iter().map(|(path, _)| path.clone()).collect();
    assert_eq!(
        names,
        vec![
            tree.join(".git/HEAD"),
            tree.join("link.txt"),
            tree.join("real/big.bin"),
            tree.join("real/small.txt"),
        ]
    );
    for (path, digest) in &hashed {
        assert_eq!(digest, &hash_bytes(&fs::read(path).unwrap()), "{path:?}");
    }
}

/// A pipe reports no size: it is hashed as it streams, never re-opened for a map (which would
/// lose what was read first).
#[cfg(unix)]
#[test]
fn a_pipe_longer_than_the_read_buffer_is_hashed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|status| status.success());
    if !made {
        return;
    }
    let input = vector_input(3 * usize::try_from(MMAP_RAYON_THRESHOLD).unwrap() + 5);
    for round in 0..2 {
        let writer = {
            let (fifo, input) = (fifo.clone(), input.clone());
            std::thread::spawn(move || fs::write(fifo, input).unwrap())
        };
        let digest = if round == 0 {
            hash_file(&fifo).unwrap()
        } else {
            b3sum_of(std::slice::from_ref(&fifo)).unwrap()[0].1
        };
        writer.join().unwrap();
        assert_eq!(digest, incremental_reference(&input), "round {round}");
    }
}

/// Each write `write_b3sum` makes, kept apart.
#[derive(Default)]
struct Writes(Vec<Vec<u8>>);

impl std::io::Write for Writes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf.to_vec());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What `write_b3sum` prints for `paths`, read back as (path, digest): none of the names in
/// these tests needs b3sum's escapes.
fn b3sum_of(paths: &[PathBuf]) -> Result<Vec<(PathBuf, Digest)>, Error> {
    let mut out = Vec::new();
    write_b3sum(paths, &mut out)?;
    Ok(String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|line| {
            let (hex, path) = line.split_once("  ").unwrap();
            (PathBuf::from(path), Digest::from_hex(hex).unwrap())
        })
        .collect())
}

/// The lines b3sum prints for these files, each hashed on its own.
fn expected_lines(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|path| b3sum_line(&hash_file(path).unwrap(), path) + "\n")
        .collect()
}

#[test]
fn write_b3sum_writes_each_chunk_as_it_is_hashed_in_path_order() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    // Folders of a few files and one large folder, so that chunks end inside folders.
    let mut files = Vec::new();
    for folder in 0..40 {
        for file in 0..(if folder == 7 { B3SUM_CHUNK } else { 30 }) {
            files.push(tree.join(format!("d{folder:02}/f{file:05}")));
        }
    }
    for (i, path) in files.iter().enumerate() {
        write(path, &format!("file {i}"));
    }
    let single = dir.path().join("single");
    write(&single, "single");

    let mut writes = Writes::default();
    write_b3sum(&[tree, single.clone()], &mut writes).unwrap();
    files.push(single);
    assert_eq!(writes.0.len(), files.len().div_ceil(B3SUM_CHUNK));
    assert!(writes.0.iter().all(|chunk| chunk.ends_with(b"\n")));
    assert_eq!(
        String::from_utf8(writes.0.concat()).unwrap(),
        expected_lines(&files)
    );
}

#[test]
fn write_b3sum_writes_the_lines_before_a_missing_path_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    write(&first, "1");
    write(&second, "2");
    let missing = dir.path().join("missing");
    let mut out = Vec::new();
    match write_b3sum(&[first.clone(), missing.clone(), second], &mut out) {
        Err(Error::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected Error::Io, got {other:?}"),
    }
    assert_eq!(String::from_utf8(out).unwrap(), expected_lines(&[first]));
}

#[test]
fn write_b3sum_escapes_names_as_b3sum_does() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let files = [tree.join("a\\b"), tree.join("c"), tree.join("new\nline")];
    for path in &files {
        write(path, "x");
    }
    let mut out = Vec::new();
    write_b3sum(&[tree], &mut out).unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert_eq!(printed, expected_lines(&files));
    assert_eq!(
        printed
            .lines()
            .filter(|line| line.starts_with('\\'))
            .count(),
        2
    );
}
