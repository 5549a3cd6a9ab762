//! Expands `ingest.paths` into source rows: local globs and directories, list files
//! (CSV or JSONL of URIs with metadata columns), `s3://` prefixes and http(s) URLs.
//! Entries that cannot become a source (a bad list line, a path escaping the allowed
//! roots) become rows with a reason, so every input is accounted for.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use futures::TryStreamExt;
use object_store::ObjectStore;
use speechmill_pipeline::error::one_line;
use speechmill_pipeline::store::{s3_builder, split_s3_url};

/// One source to fetch, or an entry already rejected.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRow {
    /// `s3://…`, `http(s)://…` or an absolute local path.
    pub uri: String,
    /// The `paths` entry (glob, list file, prefix) this row came from.
    pub origin: String,
    /// Metadata columns from a list file.
    pub metadata: BTreeMap<String, String>,
    /// Set when the entry is rejected before fetching.
    pub reject: Option<String>,
    /// What identifies this version of the source for the fingerprint (size, mtime, etag).
    pub version: String,
}

/// Everything `paths` expands to.
#[derive(Debug, Default)]
pub struct Expansion {
    pub rows: Vec<SourceRow>,
    /// Metadata column names across all list files, sorted.
    pub metadata_columns: Vec<String>,
}

/// File name endings read as list files rather than audio.
const LIST_EXTENSIONS: [&str; 3] = ["csv", "jsonl", "ndjson"];

/// Columns a list file may name the source in, in order of preference.
const URI_COLUMNS: [&str; 4] = ["uri", "url", "path", "audio"];

/// Columns ingest itself writes (and `reason`, which every rejects table adds); list
/// columns of the same name get a `meta_` prefix.
const RESERVED: [&str; 8] = [
    "uri",
    "origin",
    "source_id",
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

/// Expands every entry of `paths`. `allowed_roots` (besides each list file's own
/// folder) are where list entries may point on the local disk.
pub async fn expand(paths: &[String], allowed_roots: &[PathBuf]) -> Result<Expansion, String> {
    let mut rows = Vec::new();
    for entry in paths {
        let entry = entry.trim();
        if entry.starts_with("s3://") {
            rows.extend(list_s3_prefix(entry).await?);
        } else if entry.starts_with("http://") || entry.starts_with("https://") {
            rows.push(remote_row(entry, entry));
        } else if entry.contains("://") {
            return Err(format!(
                "paths: `{entry}`: unsupported scheme (use a local path or glob, s3://bucket/prefix, or http(s)://)"
            ));
        } else {
            for file in expand_local(entry)? {
                let display = file.display().to_string();
                if is_list_file(&display) {
                    rows.extend(read_list_file(&file, allowed_roots)?);
                } else {
                    rows.push(local_row(&file, entry));
                }
            }
        }
    }
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

/// A glob, a file or a directory (all files below it), sorted.
fn expand_local(entry: &str) -> Result<Vec<PathBuf>, String> {
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
    SourceRow {
        uri: file.display().to_string(),
        origin: origin.to_string(),
        metadata: BTreeMap::new(),
        reject: None,
        version,
    }
}

fn remote_row(uri: &str, origin: &str) -> SourceRow {
    SourceRow {
        uri: uri.to_string(),
        origin: origin.to_string(),
        metadata: BTreeMap::new(),
        reject: None,
        version: String::new(),
    }
}

async fn list_s3_prefix(entry: &str) -> Result<Vec<SourceRow>, String> {
    let (bucket, prefix) = split_s3_url(entry).map_err(|e| format!("paths: {e}"))?;
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
        .map(|meta| SourceRow {
            uri: format!("s3://{bucket}/{}", meta.location),
            origin: entry.to_string(),
            metadata: BTreeMap::new(),
            reject: None,
            version: format!("{}:{}", meta.size, meta.e_tag.unwrap_or_default()),
        })
        .collect();
    if rows.is_empty() {
        return Err(format!("paths: `{entry}` holds no object"));
    }
    rows.sort_by(|a, b| a.uri.cmp(&b.uri));
    Ok(rows)
}

/// Reads a CSV (with a header) or JSONL list file.
fn read_list_file(file: &Path, allowed_roots: &[PathBuf]) -> Result<Vec<SourceRow>, String> {
    let display = file.display().to_string();
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("paths: `{display}`: cannot read list file: {e}"))?;
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut roots: Vec<PathBuf> = vec![base.clone()];
    roots.extend(allowed_roots.iter().map(|r| absolute(r)));
    let roots: Vec<PathBuf> = roots
        .iter()
        .map(|r| std::fs::canonicalize(r).unwrap_or_else(|_| r.clone()))
        .collect();

    let entries = if display.to_ascii_lowercase().ends_with(".csv") {
        parse_csv(&text, &display)?
    } else {
        parse_jsonl(&text)
    };
    Ok(entries
        .into_iter()
        .map(|(line, parsed)| {
            let origin = display.clone();
            match parsed {
                Err(reason) => SourceRow {
                    uri: format!("{display}#L{line}"),
                    origin,
                    metadata: BTreeMap::new(),
                    reject: Some(format!("bad_list_entry: line {line}: {reason}")),
                    version: String::new(),
                },
                Ok((uri, metadata)) => {
                    let mut row = resolve_list_uri(&uri, &base, &roots, &origin);
                    row.metadata = metadata;
                    row
                }
            }
        })
        .collect())
}

type ListEntry = (usize, Result<(String, BTreeMap<String, String>), String>);

fn parse_csv(text: &str, display: &str) -> Result<Vec<ListEntry>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| format!("paths: `{display}`: bad CSV header: {e}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let uri_index = URI_COLUMNS
        .iter()
        .find_map(|name| headers.iter().position(|h| h.eq_ignore_ascii_case(name)))
        .ok_or_else(|| {
            format!(
                "paths: `{display}`: the CSV header needs a `uri` column (found: {})",
                headers.join(", ")
            )
        })?;
    let mut entries = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let entry = match record {
            Err(e) => Err(format!("unreadable CSV record: {e}")),
            Ok(record) => match record
                .get(uri_index)
                .map(str::trim)
                .filter(|u| !u.is_empty())
            {
                None => Err("empty uri".to_string()),
                Some(uri) => {
                    let metadata = headers
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| *j != uri_index)
                        .filter_map(|(j, h)| {
                            record.get(j).map(|v| (metadata_name(h), v.to_string()))
                        })
                        .collect();
                    Ok((uri.to_string(), metadata))
                }
            },
        };
        entries.push((line, entry));
    }
    Ok(entries)
}

fn parse_jsonl(text: &str) -> Vec<ListEntry> {
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let entry = match serde_json::from_str::<serde_json::Value>(raw) {
            Err(e) => Err(format!("not JSON: {e}")),
            Ok(serde_json::Value::Object(map)) => {
                let uri_key = URI_COLUMNS
                    .iter()
                    .find(|k| map.get(**k).is_some_and(|v| v.is_string()));
                match uri_key {
                    None => Err("no string `uri` field".to_string()),
                    Some(key) => {
                        let uri = map[*key].as_str().unwrap_or_default().trim().to_string();
                        let metadata = map
                            .iter()
                            .filter(|(k, _)| k.as_str() != *key)
                            .map(|(k, v)| {
                                let value = match v {
                                    serde_json::Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                };
                                (metadata_name(k), value)
                            })
                            .collect();
                        if uri.is_empty() {
                            Err("empty uri".to_string())
                        } else {
                            Ok((uri, metadata))
                        }
                    }
                }
            }
            Ok(_) => Err("not a JSON object".to_string()),
        };
        entries.push((line, entry));
    }
    entries
}

fn metadata_name(name: &str) -> String {
    let cleaned: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if RESERVED.contains(&cleaned.as_str()) || cleaned.is_empty() {
        format!("meta_{cleaned}")
    } else {
        cleaned
    }
}

/// A list entry: remote URIs pass; local paths resolve against the list file's
/// folder and must stay inside the allowed roots (no `..` or symlink escapes).
fn resolve_list_uri(uri: &str, base: &Path, roots: &[PathBuf], origin: &str) -> SourceRow {
    if uri.starts_with("s3://") || uri.starts_with("http://") || uri.starts_with("https://") {
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
        let got = expand(&[list.display().to_string()], &[]).await.unwrap();
        assert_eq!(got.rows.len(), 4);
        assert!(got.rows[0].reject.is_none());
        assert_eq!(got.rows[0].metadata["language"], "en");
        assert!(
            got.rows[1]
                .reject
                .as_deref()
                .unwrap()
                .starts_with("outside_allowed_roots")
        );
        assert!(
            got.rows[2]
                .reject
                .as_deref()
                .unwrap()
                .starts_with("bad_list_entry: line 3")
        );
        assert!(
            got.rows[3]
                .reject
                .as_deref()
                .unwrap()
                .starts_with("bad_list_entry: line 4")
        );
        assert_eq!(got.metadata_columns, vec!["language".to_string()]);
    }

    #[tokio::test]
    async fn csv_lists_carry_extra_columns_as_metadata() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.wav"), b"x").unwrap();
        let list = dir.path().join("l.csv");
        std::fs::write(&list, "uri,language,license,source_id\na.wav,de,cc-by,7\nhttps://example.invalid/b.mp3,fr,cc0,8\n").unwrap();
        let got = expand(&[list.display().to_string()], &[]).await.unwrap();
        assert_eq!(got.rows.len(), 2);
        assert_eq!(
            got.rows[0].uri,
            dir.path().join("a.wav").display().to_string()
        );
        assert_eq!(got.rows[1].uri, "https://example.invalid/b.mp3");
        assert_eq!(got.rows[1].metadata["license"], "cc0");
        assert_eq!(
            got.metadata_columns,
            vec!["language", "license", "meta_source_id"]
        );
    }

    #[tokio::test]
    async fn a_glob_matching_nothing_is_an_error_naming_it() {
        let err = expand(&["/nonexistent-dir-xyz/*.wav".to_string()], &[])
            .await
            .unwrap_err();
        assert!(err.contains("/nonexistent-dir-xyz/*.wav"), "{err}");
    }
}
