//! `kenning precompress`: brotli and gzip copies of the built UI files, written once after a
//! build. The static file handler serves `x.wasm.br` or `x.wasm.gz` for `x.wasm` when the
//! browser accepts it, so a 1 MB bundle is never compressed per request, and brotli (which
//! is too slow at its best level to run per request) is offered at all.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Files worth compressing: text and WASM. Images other than SVG are compressed already.
const EXTENSIONS: [&str; 5] = ["wasm", "js", "css", "svg", "json"];

/// Below this a copy gains less than its headers cost. Anything above it would otherwise be
/// gzipped per request by the compression layer: the split bundle has dozens of chunks of a few
/// hundred bytes each, all fetched with the page.
const MIN_BYTES: u64 = 128;

/// Brotli's best quality and a 4 MiB window: slow to write, fast to read, done once per build.
const BROTLI_QUALITY: u32 = 11;
const BROTLI_WINDOW: u32 = 22;

/// What one run did, for the summary line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Files compressed now.
    pub written: usize,
    /// Files whose copies were already newer than them.
    pub fresh: usize,
    pub raw_bytes: u64,
    pub brotli_bytes: u64,
    pub gzip_bytes: u64,
}

/// Compresses every eligible file under `dir` and prints what it did.
pub async fn run(dir: &Path) -> anyhow::Result<()> {
    let dir = dir.to_path_buf();
    let summary = tokio::task::spawn_blocking(move || precompress(&dir)).await??;
    println!(
        "precompressed {} files ({} already current): {} KB raw, {} KB brotli, {} KB gzip",
        summary.written,
        summary.fresh,
        summary.raw_bytes / 1024,
        summary.brotli_bytes / 1024,
        summary.gzip_bytes / 1024,
    );
    Ok(())
}

/// Writes `<file>.br` and `<file>.gz` beside each eligible file whose copies are missing or
/// older than it. Each copy is written under a temporary name and renamed into place, so a
/// server reading the directory never serves half a file.
pub fn precompress(dir: &Path) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        dir.is_dir(),
        "{} is not a directory (build the site first: cargo leptos build --release --split)",
        dir.display()
    );
    let mut summary = Summary::default();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry?;
        let path = entry.path();
        let eligible = entry.file_type().is_file()
            && path
                .extension()
                .and_then(OsStr::to_str)
                .is_some_and(|e| EXTENSIONS.contains(&e))
            && entry.metadata()?.len() >= MIN_BYTES;
        if !eligible {
            continue;
        }
        let br = with_suffix(path, "br");
        let gz = with_suffix(path, "gz");
        if is_current(&br, path) && is_current(&gz, path) {
            summary.fresh += 1;
            continue;
        }
        let raw = std::fs::read(path)?;
        let brotli = brotli_bytes(&raw)?;
        let gzip = gzip_bytes(&raw)?;
        replace(&br, &brotli)?;
        replace(&gz, &gzip)?;
        summary.written += 1;
        summary.raw_bytes += raw.len() as u64;
        summary.brotli_bytes += brotli.len() as u64;
        summary.gzip_bytes += gzip.len() as u64;
    }
    Ok(summary)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether `copy` exists and is at least as new as `source`.
fn is_current(copy: &Path, source: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(copy), modified(source)), (Some(c), Some(s)) if c >= s)
}

fn brotli_bytes(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len() / 3);
    {
        let mut writer =
            brotli::CompressorWriter::new(&mut out, 64 * 1024, BROTLI_QUALITY, BROTLI_WINDOW);
        writer.write_all(raw)?;
        writer.flush()?;
    }
    Ok(out)
}

fn gzip_bytes(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 3),
        flate2::Compression::best(),
    );
    encoder.write_all(raw)?;
    encoder.finish()
}

fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn bundle(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"fn main() { let x = 1; }\n"[i % 25])
            .collect()
    }

    #[test]
    fn copies_decode_to_the_file_and_only_stale_ones_are_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("pkg");
        std::fs::create_dir(&pkg).unwrap();
        let wasm = bundle(200_000);
        std::fs::write(pkg.join("kenning.wasm"), &wasm).unwrap();
        std::fs::write(pkg.join("tiny.js"), b"x()").unwrap();
        std::fs::write(pkg.join("photo.png"), bundle(5_000)).unwrap();

        let first = precompress(dir.path()).unwrap();
        assert_eq!((first.written, first.fresh), (1, 0));
        assert!(first.brotli_bytes < first.gzip_bytes && first.gzip_bytes < 20_000);

        let mut unbrotli = Vec::new();
        brotli::Decompressor::new(
            std::fs::File::open(pkg.join("kenning.wasm.br")).unwrap(),
            4096,
        )
        .read_to_end(&mut unbrotli)
        .unwrap();
        assert_eq!(unbrotli, wasm);
        let mut ungzip = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(pkg.join("kenning.wasm.gz")).unwrap())
            .read_to_end(&mut ungzip)
            .unwrap();
        assert_eq!(ungzip, wasm);
        // Small and already-compressed files get no copies.
        assert!(!pkg.join("tiny.js.br").exists());
        assert!(!pkg.join("photo.png.br").exists());

        let again = precompress(dir.path()).unwrap();
        assert_eq!((again.written, again.fresh), (0, 1));

        // A rebuilt file is compressed again.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let rebuilt = bundle(100_000);
        std::fs::write(pkg.join("kenning.wasm"), &rebuilt).unwrap();
        let after = precompress(dir.path()).unwrap();
        assert_eq!((after.written, after.fresh), (1, 0));
    }

    #[test]
    fn a_missing_site_is_a_clear_error() {
        let err = precompress(Path::new("/nonexistent/site")).unwrap_err();
        assert!(err.to_string().contains("build the site first"), "{err}");
    }
}
