//! Helpers for end-to-end tests of the `speechmill` binary.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const LIBRIVOX: &str = "/usr/share/pocketsphinx/test/data/librivox";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn cache_dir() -> PathBuf {
    std::env::var("SPEECHMILL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".cache/speechmill"))
}

/// A `speechmill` command run from `cwd`.
pub fn speechmill(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_speechmill"));
    cmd.current_dir(cwd)
        .env("SPEECHMILL_CACHE", cache_dir())
        .env_remove("SPEECHMILL_LOG");
    cmd
}

/// Runs a command and returns its output, failing the test on a spawn error.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs and asserts success, returning stdout.
pub fn ok(cmd: &mut Command) -> String {
    let o = output(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed:\nstdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Requires a program that `bash scripts/setup.sh` installs.
pub fn require_program(name: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{name}` is missing: run `bash scripts/setup.sh` first"
    );
}

/// Makes an audio file with ffmpeg from a lavfi source (e.g. `sine=frequency=440:duration=2`).
pub fn ffmpeg_make(source: &str, args: &[&str], out: &Path) {
    require_program("ffmpeg");
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            source,
        ])
        .args(args)
        .arg(out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make {}", out.display());
}

/// A folder of good audio in several formats plus broken files. Returns
/// (good file count, broken file count).
pub fn mixed_audio_dir(dir: &Path) -> (usize, usize) {
    std::fs::create_dir_all(dir).unwrap();
    let good: [(&str, &str, &[&str]); 5] = [
        (
            "tone.wav",
            "sine=frequency=440:duration=1.5",
            &["-ar", "16000", "-ac", "1"],
        ),
        (
            "tone44k.wav",
            "sine=frequency=523:duration=2",
            &["-ar", "44100", "-ac", "2"],
        ),
        (
            "tone.flac",
            "sine=frequency=330:duration=1",
            &["-ar", "22050"],
        ),
        (
            "tone.mp3",
            "sine=frequency=660:duration=2",
            &["-ar", "44100", "-b:a", "64k"],
        ),
        (
            "tone.webm",
            "sine=frequency=250:duration=1.2",
            &["-c:a", "libopus", "-b:a", "32k"],
        ),
    ];
    for (name, source, args) in good {
        ffmpeg_make(source, args, &dir.join(name));
    }
    // Broken: empty, random bytes, a FLAC cut after its header, text with an audio name.
    std::fs::write(dir.join("empty.wav"), b"").unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("noise.mp3"), &noise).unwrap();
    let flac = std::fs::read(dir.join("tone.flac")).unwrap();
    std::fs::write(dir.join("cut.flac"), &flac[..60.min(flac.len())]).unwrap();
    std::fs::write(dir.join("notes.ogg"), b"these are not audio bytes at all\n").unwrap();
    (5, 4)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `port`.
pub fn wait_for_port(port: u16, within: Duration) {
    let start = Instant::now();
    while start.elapsed() < within {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {within:?}");
}

/// A server process killed when dropped.
pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the moto S3 server (installed by setup) on a free loopback port.
pub fn start_moto() -> Server {
    start_moto_with(&[])
}

/// Starts moto with extra environment, e.g. `INITIAL_NO_AUTH_ACTION_COUNT=0`, which
/// makes it check credentials.
pub fn start_moto_with(env: &[(&str, &str)]) -> Server {
    let bin = cache_dir().join("venv/bin/moto_server");
    assert!(
        bin.is_file(),
        "{} is missing: run `bash scripts/setup.sh` first",
        bin.display()
    );
    let port = free_port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts");
    wait_for_port(port, Duration::from_secs(30));
    Server { child, port }
}

/// Environment for talking to a moto server at `port`.
pub fn s3_env(cmd: &mut Command, port: u16) -> &mut Command {
    cmd.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_ALLOW_HTTP", "true")
}

/// Creates a bucket on moto with a plain HTTP PUT (no AWS client needed).
pub fn create_bucket(port: u16, bucket: &str) {
    http_request(port, "PUT", &format!("/{bucket}"), b"");
}

/// Puts an object on moto.
pub fn put_object(port: u16, bucket: &str, key: &str, body: &[u8]) {
    http_request(port, "PUT", &format!("/{bucket}/{key}"), body);
}

/// An object's bytes from moto, read by boto3 (setup's venv has it, for moto).
pub fn get_object(port: u16, bucket: &str, key: &str) -> Vec<u8> {
    let python = cache_dir().join("venv/bin/python");
    let out = Command::new(python)
        .arg("-c")
        .arg(
            "import sys, boto3\n\
             s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',\n\
                               aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             sys.stdout.buffer.write(s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])['Body'].read())",
        )
        .args([&format!("http://127.0.0.1:{port}"), bucket, key])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "get s3://{bucket}/{key}: {}",
        stderr(&out)
    );
    out.stdout
}

fn http_request(port: u16, method: &str, path: &str, body: &[u8]) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "{method} {path}: {response}"
    );
}

/// Writes a DAG file and returns its path.
pub fn write_dag(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The ingest → decode DAG over `paths`.
pub fn ingest_decode_dag(dir: &Path, paths: &[&str]) -> PathBuf {
    let list: Vec<String> = paths.iter().map(|p| format!("{p:?}")).collect();
    write_dag(
        dir,
        "dag.toml",
        &format!(
            "[nodes.ingest]\nstage = \"ingest\"\nparams = {{ paths = [{}] }}\n\n[nodes.decode]\nstage = \"decode\"\ninputs = [\"ingest\"]\n",
            list.join(", ")
        ),
    )
}

/// `speechmill sql --format csv` rows (header first).
/// The rows of `speechmill sql --format json` on `store`.
pub fn sql_json(cwd: &Path, store: &str, query: &str) -> Vec<serde_json::Value> {
    let out = ok(speechmill(cwd).args(["sql", "--store", store, "--format", "json", query]));
    serde_json::from_str(out.trim()).unwrap()
}

pub fn sql_csv(cwd: &Path, store: &str, query: &str) -> Vec<String> {
    let out = ok(speechmill(cwd).args(["sql", "--store", store, "--format", "csv", query]));
    out.lines().map(str::to_string).collect()
}

/// The single number a `SELECT count(*)`-style query returns from an S3 store on
/// the moto server at `s3_port`.
pub fn s3_sql_number(cwd: &Path, s3_port: u16, store: &str, query: &str) -> i64 {
    let out = ok(s3_env(&mut speechmill(cwd), s3_port)
        .args(["sql", "--store", store, "--format", "csv", query]));
    out.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{query}: expected one number, got {out}"))
}

/// The single number a `SELECT count(*)`-style query returns.
pub fn sql_number(cwd: &Path, store: &str, query: &str) -> i64 {
    sql_value(cwd, store, query)
}

/// The single value a one-row, one-column query returns, parsed (`avg(…)` as `f64`).
pub fn sql_value<T: std::str::FromStr>(cwd: &Path, store: &str, query: &str) -> T {
    let lines = sql_csv(cwd, store, query);
    lines
        .get(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("{query}: expected one value, got {lines:?}"))
}

/// Puts an object on moto under a key that may hold any character (spaces, `%`,
/// `#`, `?`, `+`, non-ASCII): the key is percent-encoded in the request path.
pub fn put_object_raw_key(port: u16, bucket: &str, key: &str, body: &[u8]) {
    let encoded: String = key
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    http_request(port, "PUT", &format!("/{bucket}/{encoded}"), body);
}

/// Every file under `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path);
            }
        }
    }
    found
}

/// A loopback HTTP/1.1 file server (a thread per connection) for http sources:
/// answers HEAD and GET for the files in `root` with `Content-Length`, an `ETag`
/// derived from the bytes and a fixed `Last-Modified`; 404 for missing files;
/// 401 unless the request carries `authorization` when one is required. It lives
/// until the test process ends.
pub struct LoopbackHttp {
    pub port: u16,
}

impl LoopbackHttp {
    pub fn serve(root: &Path, authorization: Option<String>) -> LoopbackHttp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let root = root.to_path_buf();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let root = root.clone();
                let authorization = authorization.clone();
                std::thread::spawn(move || serve_one(stream, &root, authorization.as_deref()));
            }
        });
        LoopbackHttp { port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

fn serve_one(mut stream: std::net::TcpStream, root: &Path, authorization: Option<&str>) {
    use std::io::{BufRead, BufReader, Write};
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(clone);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorized = authorization.is_none();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
            && Some(value.trim()) == authorization
        {
            authorized = true;
        }
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let target = parts.next().unwrap_or("/");
    let file = root.join(target.trim_start_matches('/'));
    let (status, body) = if !authorized {
        ("401 Unauthorized", None)
    } else {
        match std::fs::read(&file) {
            Ok(bytes) if file.is_file() => ("200 OK", Some(bytes)),
            _ => ("404 Not Found", None),
        }
    };
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    match &body {
        Some(bytes) => {
            // FNV-1a of the bytes: changes whenever the content does.
            let etag = bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
            });
            head.push_str(&format!(
                "Content-Length: {}\r\nETag: \"{etag:016x}\"\r\nLast-Modified: Tue, 01 Dec 2026 08:00:00 GMT\r\n\r\n",
                bytes.len()
            ));
        }
        None => head.push_str("Content-Length: 0\r\n\r\n"),
    }
    let _ = stream.write_all(head.as_bytes());
    if method == "GET"
        && let Some(bytes) = &body
    {
        let _ = stream.write_all(bytes);
    }
    let _ = stream.flush();
}

/// An ingest-only DAG over `paths`, with `extra` ingest params (`"retries = 0"`).
pub fn ingest_dag(dir: &Path, paths: &[&str], extra: &str) -> PathBuf {
    let list: Vec<String> = paths
        .iter()
        .map(|p| serde_json::Value::String(p.to_string()).to_string())
        .collect();
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    write_dag(
        dir,
        "ingest.toml",
        &format!(
            "[nodes.ingest]\nstage = \"ingest\"\nparams = {{ paths = [{}]{extra} }}\n",
            list.join(", ")
        ),
    )
}

/// The peers venv's python (faster-whisper, speechmos…, made by `bash scripts/peers.sh`), or
/// `None` when `SPEECHMILL_SKIP_PEERS=1` opts out of the comparisons with peers.
/// Without the opt-out a missing venv fails the test: a comparison that cannot run
/// must not pass.
pub fn peers_python(test: &str) -> Option<PathBuf> {
    if std::env::var("SPEECHMILL_SKIP_PEERS").is_ok_and(|v| v == "1") {
        // Straight to stderr, past the test harness's capture, so the skip shows.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: SPEECHMILL_SKIP_PEERS=1 (needs `bash scripts/peers.sh`)"
        );
        return None;
    }
    let python = cache_dir().join("peers-venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `bash scripts/peers.sh` (the peers), or set \
         SPEECHMILL_SKIP_PEERS=1 to skip the comparisons with peers",
        python.display()
    );
    Some(python)
}

/// The samples of a 16-bit PCM WAV file as floats (`i16 / 32768`, as soundfile reads
/// them), and its sample rate. Channels are not mixed: tests use mono files.
pub fn read_wav_pcm16(path: &Path) -> (Vec<f32>, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..4], b"RIFF", "{}: not a WAV file", path.display());
    let (mut at, mut rate, mut data) = (12, 0u32, None);
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let body = &bytes[at + 8..(at + 8 + len).min(bytes.len())];
        if id == b"fmt " {
            rate = u32::from_le_bytes(body[4..8].try_into().unwrap());
            assert_eq!(
                u16::from_le_bytes([body[14], body[15]]),
                16,
                "{}: not PCM16",
                path.display()
            );
        } else if id == b"data" {
            data = Some(body);
        }
        at += 8 + len + (len & 1);
    }
    let data = data.unwrap_or_else(|| panic!("{}: no data chunk", path.display()));
    let samples = data
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
        .collect();
    (samples, rate)
}

/// Writes mono samples in [-1, 1] as a 16 kHz PCM16 WAV file (clamped, rounded), and
/// returns them as the file holds them.
pub fn write_wav_16k(path: &Path, samples: &[f32]) -> Vec<f32> {
    let pcm: Vec<i16> = samples
        .iter()
        .map(|&s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    let data_len = (pcm.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + pcm.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&16_000u32.to_le_bytes());
    out.extend_from_slice(&32_000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in &pcm {
        out.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
    pcm.iter().map(|&s| s as f32 / 32768.0).collect()
}

/// Seeded Gaussian noise of unit power (xorshift; the sum of 12 uniforms).
pub fn gaussian_noise(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.max(1);
    let mut uniform = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| ((0..12).map(|_| uniform()).sum::<f64>() - 6.0) as f32)
        .collect()
}

/// `speech` plus `noise` scaled so that speech power / noise power is `snr_db`.
pub fn mix_at_snr(speech: &[f32], noise: &[f32], snr_db: f64) -> Vec<f32> {
    let power = |x: &[f32]| x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / x.len() as f64;
    let gain = (power(speech) / power(noise) / 10f64.powf(snr_db / 10.0)).sqrt();
    speech
        .iter()
        .zip(noise.iter().cycle())
        .map(|(&s, &n)| s + (n as f64 * gain) as f32)
        .collect()
}
