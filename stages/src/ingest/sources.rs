//! Expands `ingest.paths` into source rows: local globs and directories, list files
//! (CSV or JSONL of URIs with metadata columns), `s3://` prefixes and http(s) URLs.
//! Entries that cannot become a source (a bad list line, a path escaping the allowed
//! roots) become rows with a reason, so every input is accounted for.
//!
//! - **List files are only those named in `paths`.** A `.csv`, `.jsonl` or
//!   `.ndjson` given directly is read as a list. One that a crawl finds (inside a
//!   folder, matched by a glob, under an `s3://` prefix) is not read: it becomes a
//!   row rejected as `not_audio: … list file found by a crawl …`, so an LJSpeech
//!   folder (`wavs/*.wav` plus a pipe-separated `metadata.csv`) ingests every wav.
//!   Every other file a crawl finds is a source, whatever its name; `decode` then
//!   rejects what is not audio by its content.
//! - **List files never abort the crawl.** A UTF-8 BOM is skipped, CRLF line
//!   endings read like LF; a line that is not UTF-8, not JSON, lacks a URI, or a CSV
//!   whose header names no URI column becomes a row rejected as
//!   `bad_list_entry: <file> line <n>: …`.
//! - **Metadata names never collide.** List columns are lowercased (other
//!   characters become `_`); one named like an ingest output column (`uri`,
//!   `source_id`, `reason`, …) is carried as `<name>_input`.
//! - **Remote versions.** S3 objects are versioned by size and ETag from the
//!   listing; http(s) sources by a HEAD request (size, ETag, Last-Modified), so a
//!   changed remote file changes the fingerprint.
//! - **Credentials stay out.** `uri` and `origin` are stored with any
//!   `user:token@` replaced by `***` ([`redact_credentials`]); only `fetch_uri`
//!   keeps them, for the fetch.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use speechmill_pipeline::error::one_line;
use speechmill_pipeline::store::s3_builder;

use super::fetch::{FetchConfig, redact_credentials, remote_version, s3_key_path, split_s3_uri};

/// One source to fetch, or an entry already rejected.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRow {
    /// What the `uri` column stores: `s3://bucket/key`, an http(s) URL with any
    /// credentials redacted, or an absolute local path.
    pub uri: String,
    /// What the fetch reads: `uri` with its credentials, if it had any.
    pub fetch_uri: String,
    /// The `paths` entry (glob, list file, prefix) this row came from, redacted.
    pub origin: String,
    /// Metadata columns from a list file.
    pub metadata: BTreeMap<String, String>,
    /// Set when the entry is rejected before fetching.
    pub reject: Option<String>,
    /// What identifies this version of the source for the fingerprint (size,
    /// mtime, ETag, Last-Modified).
    pub version: String,
}

/// Everything `paths` expands to.
#[derive(Debug, Default)]
pub struct Expansion {
    pub rows: Vec<SourceRow>,
    /// Metadata column names across all list files, sorted.
    pub metadata_columns: Vec<String>,
}

/// How to expand `paths`.
#[derive(Clone, Debug)]
pub struct ExpandOptions {
    /// Local folders list entries may point into, besides the list file's own.
    pub allowed_roots: Vec<PathBuf>,
    /// Timeouts, retries and concurrency of the HEAD requests for http(s) sources.
    pub fetch: FetchConfig,
}

/// File name endings read as list files (when named in `paths`).
const LIST_EXTENSIONS: [&str; 3] = ["csv", "jsonl", "ndjson"];

/// Columns a list file may name the source in, in order of preference.
const URI_COLUMNS: [&str; 4] = ["uri", "url", "path", "audio"];

/// Columns ingest itself writes (and `reason`, which every rejects table adds); list
/// columns of the same name are carried as `<name>_input`.
pub const OUTPUT_COLUMNS: [&str; 8] = [
    "source_id",
    "uri",
    "origin",
    "blob",
    "size_bytes",
    "duplicate_uris",
    "reject_reason",
    "reason",
];

fn is_list_file(path: &str) -> bool {
    Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| LIST_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_remote(uri: &str) -> bool {
    uri.starts_with("s3://") || uri.starts_with("http://") || uri.starts_with("https://")
}

fn is_http(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

/// Expands every entry of `paths`. Errors (one line, credentials redacted) are
/// for entries that name nothing: a missing file, a glob matching nothing, an
/// empty or unreachable S3 prefix, an unknown scheme.
pub async fn expand(paths: &[String], options: &ExpandOptions) -> Result<Expansion, String> {
    let mut rows = Vec::new();
    for entry in paths {
        let entry = entry.trim();
        if entry.starts_with("s3://") {
            rows.extend(list_s3_prefix(entry).await?);
        } else if is_http(entry) {
            rows.push(remote_row(entry, entry));
        } else if entry.contains("://") {
            return Err(format!(
                "paths: `{}`: unsupported scheme (use a local path or glob, s3://bucket/prefix, or http(s)://)",
                redact_credentials(entry)
            ));
        } else if Path::new(entry).is_file() && is_list_file(entry) {
            rows.extend(read_list_file(
                &absolute(Path::new(entry)),
                &options.allowed_roots,
            )?);
        } else {
            for file in expand_local(entry)? {
                let mut row = local_row(&file, entry);
                if is_list_file(&row.uri) {
                    row.reject = Some(crawled_list_file(&row.uri, entry));
                }
                rows.push(row);
            }
        }
    }
    head_http_sources(&mut rows, &options.fetch).await;
    let mut metadata_columns: Vec<String> = rows
        .iter()
        .flat_map(|r| r.metadata.keys().cloned())
        .collect();
    metadata_columns.sort();
    metadata_columns.dedup();
    Ok(Expansion {
        rows,
        metadata_columns,
    })
}

/// The reason a list file found by a crawl is not read.
fn crawled_list_file(uri: &str, entry: &str) -> String {
    let name = uri.rsplit('/').next().unwrap_or(uri);
    format!(
        "not_audio: {name} is a list file found by a crawl of `{}`; name it in paths to read it as a list",
        redact_credentials(entry)
    )
}

/// Versions http(s) sources by a HEAD request each, many at once.
async fn head_http_sources(rows: &mut [SourceRow], config: &FetchConfig) {
    let wanted: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.reject.is_none() && is_http(&r.fetch_uri))
        .map(|(i, _)| i)
        .collect();
    let versions: Vec<(usize, String)> = futures::stream::iter(wanted)
        .map(|i| {
            let uri = rows[i].fetch_uri.clone();
            async move { (i, remote_version(&uri, config).await) }
        })
        .buffered(config.concurrency.max(1))
        .collect()
        .await;
    for (i, version) in versions {
        rows[i].version = version;
    }
}

/// A glob, a file or a directory (all files below it), sorted.
pub(crate) fn expand_local(entry: &str) -> Result<Vec<PathBuf>, String> {
    let path = Path::new(entry);
    if path.is_dir() {
        let pattern = format!("{}/**/*", entry.trim_end_matches('/'));
        return glob_files(&pattern, entry);
    }
    if path.is_file() {
        return Ok(vec![absolute(path)]);
    }
    if entry.contains(['*', '?', '[']) {
        let files = glob_files(entry, entry)?;
        if files.is_empty() {
            return Err(format!("paths: `{entry}` matches no file"));
        }
        return Ok(files);
    }
    Err(format!("paths: `{entry}`: no such file or directory"))
}

fn glob_files(pattern: &str, entry: &str) -> Result<Vec<PathBuf>, String> {
    let matches = glob::glob(pattern).map_err(|e| format!("paths: `{entry}`: bad glob: {e}"))?;
    let mut files = Vec::new();
    for m in matches {
        let p = m.map_err(|e| format!("paths: `{entry}`: {e}"))?;
        if p.is_file() {
            files.push(absolute(&p));
        }
    }
    files.sort();
    Ok(files)
}

fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    normalize(&joined)
}

/// Removes `.` and resolves `..` lexically (the path may not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn local_row(file: &Path, origin: &str) -> SourceRow {
    let version = std::fs::metadata(file)
        .map(|m| {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("{}:{mtime}", m.len())
        })
        .unwrap_or_default();
    let uri = file.display().to_string();
    SourceRow {
        fetch_uri: uri.clone(),
        uri,
        origin: redact_credentials(origin).into_owned(),
        metadata: BTreeMap::new(),
        reject: None,
        version,
    }
}

fn remote_row(uri: &str, origin: &str) -> SourceRow {
    SourceRow {
        uri: redact_credentials(uri).into_owned(),
        fetch_uri: uri.to_string(),
        origin: redact_credentials(origin).into_owned(),
        metadata: BTreeMap::new(),
        reject: None,
        version: String::new(),
    }
}

async fn list_s3_prefix(entry: &str) -> Result<Vec<SourceRow>, String> {
    let (bucket, prefix) = split_s3_uri(entry).map_err(|e| format!("paths: `{entry}`: {e}"))?;
    let prefix = s3_key_path(&prefix).map_err(|e| format!("paths: `{entry}`: {e}"))?;
    let store = s3_builder(&bucket).build().map_err(|e| {
        format!(
            "paths: `{entry}`: cannot configure S3: {}",
            one_line(&e.to_string())
        )
    })?;
    let listing: Vec<_> = store.list(Some(&prefix)).try_collect().await.map_err(|e| {
        format!(
            "paths: `{entry}`: cannot list: {}",
            one_line(&e.to_string())
        )
    })?;
    let mut rows: Vec<SourceRow> = listing
        .into_iter()
        .map(|meta| {
            // The listing's key, verbatim: the fetch reads it back the same way.
            let mut row = remote_row(&format!("s3://{bucket}/{}", meta.location), entry);
            row.version = format!("{}:{}", meta.size, meta.e_tag.unwrap_or_default());
            if is_list_file(&row.uri) {
                row.reject = Some(crawled_list_file(&row.uri, entry));
            }
            row
        })
        .collect();
    if rows.is_empty() {
        return Err(format!("paths: `{entry}` holds no object"));
    }
    rows.sort_by(|a, b| a.uri.cmp(&b.uri));
    Ok(rows)
}

/// Reads a CSV (with a header) or JSONL list file. Only an unreadable file is an
/// error; bad content becomes rejected rows.
fn read_list_file(file: &Path, allowed_roots: &[PathBuf]) -> Result<Vec<SourceRow>, String> {
    let display = file.display().to_string();
    let bytes = std::fs::read(file)
        .map_err(|e| format!("paths: `{display}`: cannot read list file: {e}"))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut roots: Vec<PathBuf> = vec![base.clone()];
    roots.extend(allowed_roots.iter().map(|r| absolute(r)));
    let roots: Vec<PathBuf> = roots
        .iter()
        .map(|r| std::fs::canonicalize(r).unwrap_or_else(|_| r.clone()))
        .collect();

    let entries = if display.to_ascii_lowercase().ends_with(".csv") {
        parse_csv(bytes)
    } else {
        parse_jsonl(bytes)
    };
    Ok(entries
        .into_iter()
        .map(|(line, parsed)| {
            let origin = display.clone();
            match parsed {
                Err(reason) => {
                    let uri = format!("{display}#L{line}");
                    SourceRow {
                        fetch_uri: uri.clone(),
                        uri,
                        origin,
                        metadata: BTreeMap::new(),
                        reject: Some(format!("bad_list_entry: {display} line {line}: {reason}")),
                        version: String::new(),
                    }
                }
                Ok((uri, metadata)) => {
                    let mut row = resolve_list_uri(&uri, &base, &roots, &origin);
                    row.metadata = metadata;
                    row
                }
            }
        })
        .collect())
}

/// A list line: its number, and its URI and metadata or why it is unusable.
type ListEntry = (u64, Result<(String, BTreeMap<String, String>), String>);

fn parse_csv(bytes: &[u8]) -> Vec<ListEntry> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let raw_headers: Vec<String> = match reader.byte_headers() {
        Ok(h) => h
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect(),
        Err(e) => return vec![(1, Err(format!("unreadable CSV header: {}", csv_error(&e))))],
    };
    let Some(uri_index) = URI_COLUMNS.iter().find_map(|name| {
        raw_headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    }) else {
        let found: Vec<String> = raw_headers.iter().take(6).map(|h| column_name(h)).collect();
        return vec![(
            1,
            Err(format!(
                "the CSV header names no source column ({}; found: {})",
                URI_COLUMNS.join(", "),
                found.join(", ")
            )),
        )];
    };
    let names = metadata_names(
        raw_headers
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != uri_index)
            .map(|(_, h)| h.as_str()),
    );
    let mut entries = Vec::new();
    for record in reader.byte_records() {
        let (line, entry) = match record {
            Err(e) => (
                e.position().map_or(0, |p| line_at(bytes, p)),
                Err(format!("unreadable CSV record: {}", csv_error(&e))),
            ),
            Ok(record) => {
                let line = record.position().map_or(0, |p| line_at(bytes, p));
                (line, csv_entry(&record, uri_index, &names))
            }
        };
        entries.push((line, entry));
    }
    entries
}

/// The 1-based line a CSV record starts on. Counted from its byte offset, which
/// may point at the end of the previous record's CRLF terminator (csv's own line
/// count lags behind by one there).
fn line_at(bytes: &[u8], position: &csv::Position) -> u64 {
    let mut at = (position.byte() as usize).min(bytes.len());
    while at < bytes.len() && matches!(bytes[at], b'\r' | b'\n') {
        at += 1;
    }
    bytes[..at].iter().filter(|b| **b == b'\n').count() as u64 + 1
}

fn csv_entry(
    record: &csv::ByteRecord,
    uri_index: usize,
    names: &[String],
) -> Result<(String, BTreeMap<String, String>), String> {
    let mut fields = Vec::with_capacity(record.len());
    for (j, field) in record.iter().enumerate() {
        fields.push(utf8(field).map_err(|e| format!("{e} in column {}", j + 1))?);
    }
    let uri = fields
        .get(uri_index)
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| "empty uri".to_string())?
        .to_string();
    let metadata = fields
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != uri_index)
        .zip(names)
        .map(|((_, v), name)| (name.clone(), v.to_string()))
        .collect();
    Ok((uri, metadata))
}

/// A csv error without the record's content.
fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(io) => io.to_string(),
        csv::ErrorKind::Utf8 { err, .. } => format!("not UTF-8: {err}"),
        _ => one_line(&e.to_string()),
    }
}

/// `bytes` as UTF-8, or where the first invalid byte is.
fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        format!("not UTF-8 (byte 0x{:02X} at offset {at})", bytes[at])
    })
}

fn parse_jsonl(bytes: &[u8]) -> Vec<ListEntry> {
    let mut entries = Vec::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = i as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        entries.push((line, utf8(raw).and_then(jsonl_entry)));
    }
    entries
}

fn jsonl_entry(text: &str) -> Result<(String, BTreeMap<String, String>), String> {
    let map = match serde_json::from_str::<serde_json::Value>(text) {
        Err(e) => return Err(format!("not JSON: {e}")),
        Ok(serde_json::Value::Object(map)) => map,
        Ok(_) => return Err("not a JSON object".to_string()),
    };
    let key = URI_COLUMNS
        .iter()
        .find(|k| map.get(**k).is_some_and(|v| v.is_string()))
        .ok_or_else(|| "no string `uri` field".to_string())?;
    let uri = map[*key].as_str().unwrap_or_default().trim().to_string();
    if uri.is_empty() {
        return Err("empty uri".to_string());
    }
    let others: Vec<(&String, &serde_json::Value)> =
        map.iter().filter(|(k, _)| k.as_str() != *key).collect();
    let names = metadata_names(others.iter().map(|(k, _)| k.as_str()));
    let metadata = others
        .into_iter()
        .zip(names)
        .map(|((_, v), name)| {
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name, value)
        })
        .collect();
    Ok((uri, metadata))
}

/// A list column name as a table column: lowercase ASCII letters, digits and `_`.
fn column_name(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Table column names for one list's metadata columns, in order: cleaned, named
/// `column_<n>` when nothing is left, and suffixed `_input` while they collide with
/// an ingest output column or an earlier name of the same list.
fn metadata_names<'a>(raw: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut taken: BTreeSet<String> = BTreeSet::new();
    raw.enumerate()
        .map(|(i, name)| {
            let mut name = column_name(name);
            if name.is_empty() {
                name = format!("column_{}", i + 1);
            }
            while OUTPUT_COLUMNS.contains(&name.as_str()) || taken.contains(&name) {
                name.push_str("_input");
            }
            taken.insert(name.clone());
            name
        })
        .collect()
}

/// A list entry: remote URIs pass; local paths resolve against the list file's
/// folder and must stay inside the allowed roots (no `..` or symlink escapes).
fn resolve_list_uri(uri: &str, base: &Path, roots: &[PathBuf], origin: &str) -> SourceRow {
    if is_remote(uri) {
        return remote_row(uri, origin);
    }
    let local = match uri.strip_prefix("file://") {
        Some(rest) => PathBuf::from(rest),
        None if uri.contains("://") => {
            let mut row = remote_row(uri, origin);
            row.reject = Some("unsupported_uri: use s3://, http(s):// or a local path".to_string());
            return row;
        }
        None => PathBuf::from(uri),
    };
    let joined = normalize(&if local.is_absolute() {
        local
    } else {
        base.join(local)
    });
    // Symlinks can point anywhere: check where the file really is when it exists.
    let real = std::fs::canonicalize(&joined).unwrap_or_else(|_| joined.clone());
    let mut row = local_row(&joined, origin);
    if !roots.iter().any(|root| real.starts_with(root)) {
        row.reject = Some(format!(
            "outside_allowed_roots: {} is outside {}",
            real.display(),
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> ExpandOptions {
        ExpandOptions {
            allowed_roots: Vec::new(),
            fetch: FetchConfig {
                store: String::new(),
                max_bytes: 1 << 20,
                concurrency: 4,
                timeout_ms: 2_000,
                retries: 0,
            },
        }
    }

    async fn expand_one(path: &Path) -> Expansion {
        expand(&[path.display().to_string()], &options())
            .await
            .unwrap()
    }

    fn reason(row: &SourceRow) -> &str {
        row.reject.as_deref().unwrap_or("")
    }

    #[tokio::test]
    async fn list_entries_escaping_the_list_folder_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let lists = dir.path().join("lists");
        std::fs::create_dir_all(&lists).unwrap();
        std::fs::write(dir.path().join("secret.wav"), b"x").unwrap();
        std::fs::write(lists.join("ok.wav"), b"x").unwrap();
        let list = lists.join("l.jsonl");
        std::fs::write(
            &list,
            "{\"uri\": \"ok.wav\", \"language\": \"en\"}\n{\"uri\": \"../secret.wav\"}\nnot json\n{\"license\": 1}\n",
        )
        .unwrap();
        let got = expand_one(&list).await;
        assert_eq!(got.rows.len(), 4);
        assert!(got.rows[0].reject.is_none());
        assert_eq!(got.rows[0].metadata["language"], "en");
        assert!(reason(&got.rows[1]).starts_with("outside_allowed_roots"));
        let file = list.display();
        assert!(
            reason(&got.rows[2]).starts_with(&format!("bad_list_entry: {file} line 3: not JSON")),
            "{}",
            reason(&got.rows[2])
        );
        assert!(reason(&got.rows[3]).starts_with(&format!("bad_list_entry: {file} line 4")));
        assert_eq!(got.rows[2].uri, format!("{file}#L3"));
        assert_eq!(got.metadata_columns, vec!["language".to_string()]);
    }

    #[tokio::test]
    async fn csv_lists_carry_extra_columns_as_metadata() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wav"), b"x").unwrap();
        let list = dir.path().join("l.csv");
        std::fs::write(&list, "uri,language,license,source_id\na.wav,de,cc-by,7\nhttps://example.invalid/b.mp3,fr,cc0,8\n").unwrap();
        let got = expand_one(&list).await;
        assert_eq!(got.rows.len(), 2);
        assert_eq!(
            got.rows[0].uri,
            dir.path().join("a.wav").display().to_string()
        );
        assert_eq!(got.rows[1].uri, "https://example.invalid/b.mp3");
        assert_eq!(got.rows[1].metadata["license"], "cc0");
        assert_eq!(got.rows[0].metadata["source_id_input"], "7");
        assert_eq!(
            got.metadata_columns,
            vec!["language", "license", "source_id_input"]
        );
    }

    #[tokio::test]
    async fn a_glob_matching_nothing_is_an_error_naming_it() {
        let err = expand(&["/nonexistent-dir-xyz/*.wav".to_string()], &options())
            .await
            .unwrap_err();
        assert!(err.contains("/nonexistent-dir-xyz/*.wav"), "{err}");
    }

    /// An LJSpeech-style corpus: `wavs/*.wav` and a headerless, pipe-separated
    /// `metadata.csv` beside them.
    fn ljspeech_folder(root: &Path) -> usize {
        let wavs = root.join("wavs");
        std::fs::create_dir_all(&wavs).unwrap();
        for i in 1..=3 {
            std::fs::write(wavs.join(format!("LJ001-000{i}.wav")), format!("RIFF {i}")).unwrap();
        }
        std::fs::write(
            root.join("metadata.csv"),
            "LJ001-0001|Printing, in the only sense|Printing, in the only sense\n\
             LJ001-0002|in being comparatively modern.|in being comparatively modern.\n",
        )
        .unwrap();
        3
    }

    #[tokio::test]
    async fn a_crawled_folder_ingests_every_wav_and_does_not_read_its_metadata_csv() {
        let dir = tempfile::tempdir().unwrap();
        let wavs = ljspeech_folder(dir.path());
        let got = expand_one(dir.path()).await;
        let sources: Vec<&SourceRow> = got.rows.iter().filter(|r| r.reject.is_none()).collect();
        assert_eq!(sources.len(), wavs);
        assert!(sources.iter().all(|r| r.uri.ends_with(".wav")));
        // The csv is accounted for, not read and not an error.
        let csv: Vec<&SourceRow> = got.rows.iter().filter(|r| r.reject.is_some()).collect();
        assert_eq!(csv.len(), 1);
        assert!(csv[0].uri.ends_with("metadata.csv"));
        assert!(
            reason(csv[0]).starts_with("not_audio: metadata.csv is a list file found by a crawl"),
            "{}",
            reason(csv[0])
        );
        assert!(got.metadata_columns.is_empty());
    }

    #[tokio::test]
    async fn a_glob_matching_a_list_file_does_not_read_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wav"), b"a").unwrap();
        std::fs::write(dir.path().join("l.jsonl"), "{\"uri\": \"a.wav\"}\n").unwrap();
        let glob = format!("{}/*", dir.path().display());
        let got = expand(&[glob], &options()).await.unwrap();
        assert_eq!(got.rows.len(), 2);
        assert!(got.rows[0].reject.is_none());
        assert!(reason(&got.rows[1]).starts_with("not_audio: l.jsonl"));
        // Named directly, the same file is a list.
        let listed = expand_one(&dir.path().join("l.jsonl")).await;
        assert_eq!(listed.rows.len(), 1);
        assert!(listed.rows[0].uri.ends_with("a.wav") && listed.rows[0].reject.is_none());
    }

    #[tokio::test]
    async fn a_list_file_with_a_bom_and_crlf_line_endings_reads_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wav"), b"a").unwrap();
        std::fs::write(dir.path().join("b.wav"), b"b").unwrap();
        let csv = dir.path().join("l.csv");
        std::fs::write(&csv, "\u{feff}uri,language\r\na.wav,en\r\nb.wav,de\r\n").unwrap();
        let jsonl = dir.path().join("l.jsonl");
        std::fs::write(
            &jsonl,
            "\u{feff}{\"uri\": \"a.wav\", \"language\": \"en\"}\r\n{\"uri\": \"b.wav\", \"language\": \"de\"}\r\n",
        )
        .unwrap();
        for list in [csv, jsonl] {
            let got = expand_one(&list).await;
            assert_eq!(got.rows.len(), 2, "{}", list.display());
            for (row, (name, language)) in got.rows.iter().zip([("a.wav", "en"), ("b.wav", "de")]) {
                assert_eq!(row.reject, None, "{}", list.display());
                assert!(row.uri.ends_with(name), "{}", row.uri);
                assert_eq!(row.metadata["language"], language);
            }
            assert_eq!(got.metadata_columns, vec!["language"]);
        }
    }

    #[tokio::test]
    async fn a_non_utf8_byte_rejects_only_its_line_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wav"), b"a").unwrap();
        std::fs::write(dir.path().join("c.wav"), b"c").unwrap();
        let csv = dir.path().join("l.csv");
        std::fs::write(&csv, b"uri,speaker\na.wav,x\nb.wav,caf\xE9\nc.wav,y\n").unwrap();
        let jsonl = dir.path().join("l.jsonl");
        std::fs::write(
            &jsonl,
            b"{\"uri\": \"a.wav\"}\n{\"uri\": \"b\xFF.wav\"}\n{\"uri\": \"c.wav\"}\n",
        )
        .unwrap();
        for (list, line, column) in [(csv, 3, " in column 2"), (jsonl, 2, "")] {
            let got = expand_one(&list).await;
            assert_eq!(got.rows.len(), 3);
            assert!(got.rows[0].reject.is_none() && got.rows[2].reject.is_none());
            let want = format!(
                "bad_list_entry: {} line {line}: not UTF-8 (byte 0x",
                list.display()
            );
            assert!(
                reason(&got.rows[1]).starts_with(&want),
                "{}",
                reason(&got.rows[1])
            );
            assert!(
                reason(&got.rows[1]).ends_with(column),
                "{}",
                reason(&got.rows[1])
            );
        }
    }

    #[tokio::test]
    async fn a_bad_line_in_a_crlf_csv_is_named_by_its_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("l.csv");
        std::fs::write(&csv, b"uri,x\r\na.wav,1\r\nb.wav,\xE9\r\n\r\nc.wav,3\r\n").unwrap();
        let got = expand_one(&csv).await;
        assert_eq!(got.rows.len(), 3);
        let want = format!("bad_list_entry: {} line 3: not UTF-8", csv.display());
        assert!(
            reason(&got.rows[1]).starts_with(&want),
            "{}",
            reason(&got.rows[1])
        );
    }

    #[tokio::test]
    async fn a_csv_header_without_a_source_column_is_one_reject_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        ljspeech_folder(dir.path());
        let list = dir.path().join("metadata.csv");
        let got = expand_one(&list).await;
        assert_eq!(got.rows.len(), 1);
        assert!(
            reason(&got.rows[0]).starts_with(&format!(
                "bad_list_entry: {} line 1: the CSV header names no source column",
                list.display()
            )),
            "{}",
            reason(&got.rows[0])
        );
    }

    #[tokio::test]
    async fn metadata_named_like_an_output_column_is_carried_as_name_input() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wav"), b"a").unwrap();
        let csv = dir.path().join("l.csv");
        std::fs::write(
            &csv,
            "path,uri,Source ID,blob,reject_reason,reason,pre_reason,f,__sm_row,,uri_input\n\
             a.wav,u,s,b,r,why,p,ff,7,blank,ui\n",
        )
        .unwrap();
        let got = expand_one(&csv).await;
        assert_eq!(got.rows.len(), 1);
        let row = &got.rows[0];
        // `uri` wins over `path` as the source column; `path` is metadata.
        assert_eq!(row.reject, None);
        let meta: Vec<(&str, &str)> = row
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            meta,
            vec![
                ("__sm_row", "7"),
                ("blob_input", "b"),
                ("column_9", "blank"),
                ("f", "ff"),
                ("path", "a.wav"),
                ("pre_reason", "p"),
                ("reason_input", "why"),
                ("reject_reason_input", "r"),
                ("source_id_input", "s"),
                ("uri_input", "ui"),
            ]
        );
        // The source is `u` (the `uri` column), resolved in the list's folder.
        assert!(row.uri.ends_with("/u"), "{}", row.uri);
    }

    #[tokio::test]
    async fn credentials_are_redacted_from_uri_and_origin_but_kept_for_fetching() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("l.jsonl");
        std::fs::write(
            &list,
            "{\"uri\": \"https://bob:hunter2@127.0.0.1:9/a.wav\"}\n",
        )
        .unwrap();
        let entry = "https://bob:hunter2@127.0.0.1:9/b.wav".to_string();
        let got = expand(&[list.display().to_string(), entry], &options())
            .await
            .unwrap();
        assert_eq!(got.rows.len(), 2);
        assert_eq!(got.rows[0].uri, "https://***@127.0.0.1:9/a.wav");
        assert_eq!(got.rows[1].uri, "https://***@127.0.0.1:9/b.wav");
        assert_eq!(got.rows[1].origin, "https://***@127.0.0.1:9/b.wav");
        assert_eq!(
            got.rows[1].fetch_uri,
            "https://bob:hunter2@127.0.0.1:9/b.wav"
        );
        for row in &got.rows {
            // Nothing listens on port 9: the HEAD fails, and says so without the secret.
            assert!(row.version.starts_with("head_failed"), "{}", row.version);
            for text in [&row.uri, &row.origin, &row.version] {
                assert!(!text.contains("hunter2"), "{text}");
            }
        }
    }

    #[tokio::test]
    async fn an_unknown_scheme_error_does_not_echo_credentials() {
        let err = expand(&["ftp://bob:hunter2@host/x.wav".to_string()], &options())
            .await
            .unwrap_err();
        assert!(
            err.contains("ftp://***@host/x.wav") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
