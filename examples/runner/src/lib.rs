//! The host half of the demo: boots an image under QEMU `virt` and decodes its defmt stream.
//!
//! Used two ways: as the cargo runner for `aarch64-unknown-none` (this crate's binary, see
//! .cargo/config.toml), and by the integration tests tests/qemu.rs and tests/linux.rs.
//!
//! Streams: the image's defmt frames arrive on QEMU's stdout (semihosting SYS_WRITE to ":tt"),
//! which nothing else writes to; the PL011 text goes to a separate QEMU chardev (stderr or a file),
//! so the two never interleave. QEMU's exit status is the image's semihosting exit code.

pub mod linux;

use std::fmt;
use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use defmt_decoder::{DecodeError, Frame, Locations, Table};

/// The oldest QEMU whose `virt` SMMUv3 and edu behave as the demo expects.
pub const MIN_QEMU: (u32, u32) = (9, 2);
/// Environment variable whose whitespace-separated words are appended to the QEMU command line.
pub const EXTRA_ARGS_ENV: &str = "SMMU_QEMU_ARGS";
/// Environment variable naming the QEMU binary (default `qemu-system-aarch64` from PATH).
pub const QEMU_ENV: &str = "SMMU_QEMU";
/// Environment variable with the runner's timeout in seconds.
pub const TIMEOUT_ENV: &str = "SMMU_QEMU_TIMEOUT";
/// The runner's default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// QEMU trace events the runner and the test enable to measure the SMMU accesses of each
/// event-queue drain on the emulator: the SMMU's MMIO, and the PL061 reads the image makes right
/// before (offset [`TRACE_DRAIN_START`]) and right after ([`TRACE_DRAIN_END`]) every drain.
pub const DRAIN_TRACE_EVENTS: [&str; 3] = ["smmuv3_read_mmio", "smmuv3_write_mmio", "pl061_read"];
/// PL061 register read at a drain's start (GPIOPeriphID0).
pub const TRACE_DRAIN_START: &str = "offset 0xfe0";
/// PL061 register read at a drain's end (GPIOPeriphID1).
pub const TRACE_DRAIN_END: &str = "offset 0xfe4";

/// `-trace <event>` for each of [`DRAIN_TRACE_EVENTS`].
pub fn drain_trace_args() -> Vec<String> {
    DRAIN_TRACE_EVENTS
        .iter()
        .flat_map(|e| ["-trace".to_owned(), (*e).to_owned()])
        .collect()
}

/// Whether a stderr line is one of the trace lines [`drain_trace_args`] asks for.
pub fn is_drain_trace_line(line: &str) -> bool {
    DRAIN_TRACE_EVENTS.iter().any(|e| line.contains(e))
}

/// The SMMU MMIO accesses QEMU traced inside each drain (between a start and an end marker), in
/// order. Fails on unbalanced markers.
pub fn trace_mmio_per_drain(stderr: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    let mut open: Option<u32> = None;
    for (n, line) in stderr.lines().enumerate() {
        if line.contains("pl061_read") && line.contains(TRACE_DRAIN_START) {
            if open.replace(0).is_some() {
                return Err(format!("trace line {}: drain start inside a drain", n + 1));
            }
        } else if line.contains("pl061_read") && line.contains(TRACE_DRAIN_END) {
            out.push(
                open.take()
                    .ok_or_else(|| format!("trace line {}: drain end without start", n + 1))?,
            );
        } else if (line.contains("smmuv3_read_mmio") || line.contains("smmuv3_write_mmio"))
            && let Some(count) = open.as_mut()
        {
            *count += 1;
        }
    }
    if open.is_some() {
        return Err("the trace ends inside a drain".to_owned());
    }
    Ok(out)
}

/// One event-queue drain: what the image reported (defmt `DRAIN` line) and what QEMU traced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainMeasure {
    /// Drain number (from 1).
    pub drain: u32,
    /// Records handed to the sink.
    pub records: u32,
    /// MMIO accesses the driver counted (`DrainStats::mmio`).
    pub driver_mmio: u32,
    /// MMIO accesses the platform's MMIO hook saw.
    pub hook_mmio: u32,
    /// SMMU MMIO lines QEMU's trace shows between the drain's markers.
    pub qemu_mmio: u32,
}

fn field(message: &str, key: &str) -> Option<u32> {
    let word = message
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))?;
    word.parse().ok()
}

/// Pairs the image's `DRAIN #n ...` lines with QEMU's per-drain trace counts.
pub fn drain_measures(log: &[LogLine], stderr: &str) -> Result<Vec<DrainMeasure>, String> {
    let traced = trace_mmio_per_drain(stderr)?;
    let mut out = Vec::new();
    for l in log {
        let Some(rest) = l.message.trim_start().strip_prefix("DRAIN #") else {
            continue;
        };
        let drain: u32 = rest
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("malformed drain line: {}", l.message))?;
        let get = |k| field(&l.message, k).ok_or_else(|| format!("no {k}= in: {}", l.message));
        let qemu_mmio = *traced
            .get(drain as usize - 1)
            .ok_or_else(|| format!("drain #{drain} is missing from QEMU's trace"))?;
        out.push(DrainMeasure {
            drain,
            records: get("records")?,
            driver_mmio: get("mmio")?,
            hook_mmio: get("hook_mmio")?,
            qemu_mmio,
        });
    }
    if out.len() != traced.len() {
        return Err(format!(
            "{} drains reported by the image, {} in QEMU's trace",
            out.len(),
            traced.len()
        ));
    }
    Ok(out)
}

/// One line summing up [`drain_measures`].
pub fn drain_summary(m: &[DrainMeasure]) -> String {
    let max = m.iter().map(|d| d.qemu_mmio).max().unwrap_or(0);
    let biggest = m.iter().max_by_key(|d| d.records);
    let per: Vec<String> = m
        .iter()
        .map(|d| format!("#{}:{}rec/{}", d.drain, d.records, d.qemu_mmio))
        .collect();
    let mut s = format!(
        "QEMU trace: {} event-queue drains, smmuv3 MMIO accesses per drain at most {max} [{}]",
        m.len(),
        per.join(" ")
    );
    if let Some(b) = biggest {
        s.push_str(&format!(
            "; the largest drain (#{}, {} records): {} accesses",
            b.drain, b.records, b.qemu_mmio
        ));
    }
    s
}

/// Environment variable naming another target directory for [`build_image`].
pub const TARGET_DIR_ENV: &str = "SMMU_QEMU_TARGET_DIR";

/// Builds the demo hypervisor image (examples/hypervisor) for `aarch64-unknown-none` in the
/// workspace at `workspace`, where `cargo qemu` puts it
/// (target/aarch64-unknown-none/release/qemu_virt), and returns its path. The pinned cargo
/// (rust-toolchain.toml) releases the target-directory lock before it runs test binaries, so this
/// nested build does not wait for a `cargo test` above it; set [`TARGET_DIR_ENV`] to build
/// elsewhere (a runner that keeps the lock would otherwise hang).
pub fn build_image(workspace: &Path) -> Result<PathBuf, String> {
    let target_dir =
        std::env::var_os(TARGET_DIR_ENV).map_or_else(|| workspace.join("target"), PathBuf::from);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "--release",
            "--target",
            "aarch64-unknown-none",
            "-p",
            "qemu-virt-hypervisor",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env("DEFMT_LOG", "info")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .map_err(|e| format!("cannot run cargo to build the QEMU image: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building examples/hypervisor for aarch64-unknown-none failed: {status}"
        ));
    }
    Ok(target_dir.join("aarch64-unknown-none/release/qemu_virt"))
}

/// The QEMU binary to run.
pub fn qemu_binary() -> String {
    std::env::var(QEMU_ENV).unwrap_or_else(|_| "qemu-system-aarch64".to_owned())
}

/// Checks that QEMU is installed and at least [`MIN_QEMU`]; returns its version.
///
/// When the default `qemu-system-aarch64` is missing or too old (and [`QEMU_ENV`] does not name
/// another binary), runs the workspace's `.ci/install-deps` once per process first: it says what
/// it installs (QEMU 10 from bookworm-backports) and needs root or sudo. So the README's two
/// commands provision QEMU themselves on a fresh Debian machine.
pub fn check_qemu() -> Result<(u32, u32, u32), String> {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    match probe_qemu() {
        Err(missing) if std::env::var_os(QEMU_ENV).is_none() => {
            INSTALLED
                .get_or_init(install_qemu)
                .clone()
                .map_err(|e| format!("{missing}; {e}"))?;
            probe_qemu()
        }
        found => found,
    }
}

/// Runs `.ci/install-deps`, which installs QEMU 10 from bookworm-backports (and the Rust target).
fn install_qemu() -> Result<(), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ci/install-deps");
    eprintln!(
        "qemu-system-aarch64 >= {}.{} not found: running {} (installs qemu-system-arm from \
         bookworm-backports with apt-get)",
        MIN_QEMU.0,
        MIN_QEMU.1,
        script.display()
    );
    let status = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {status}", script.display()))
    }
}

/// Runs `--version` of the QEMU binary and checks it against [`MIN_QEMU`].
fn probe_qemu() -> Result<(u32, u32, u32), String> {
    let bin = qemu_binary();
    let out = Command::new(&bin).arg("--version").stdin(Stdio::null()).output().map_err(|e| {
        format!(
            "cannot run `{bin}` ({e}): install QEMU >= {}.{} (`bash .ci/install-deps` does, from \
             bookworm-backports), or point {QEMU_ENV} at it",
            MIN_QEMU.0, MIN_QEMU.1
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_qemu_version(&text)
        .ok_or_else(|| format!("cannot parse `{bin} --version`: {text:?}"))?;
    if (version.0, version.1) < MIN_QEMU {
        return Err(format!(
            "`{bin}` is QEMU {}.{}.{}; the demo needs >= {}.{} (`bash .ci/install-deps` installs 10.x)",
            version.0, version.1, version.2, MIN_QEMU.0, MIN_QEMU.1
        ));
    }
    Ok(version)
}

/// Extracts `x.y.z` from "QEMU emulator version x.y.z (...)".
pub fn parse_qemu_version(text: &str) -> Option<(u32, u32, u32)> {
    let rest = text.split("version ").nth(1)?;
    let word = rest.split_whitespace().next()?;
    let mut parts = word.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

/// The QEMU command line for `elf`: the verified `virt` configuration (EL2, GICv3, SMMUv3, edu at
/// 00:01.0 = StreamID 0x8) with stdout reserved for semihosting, the UART connected to the Unix
/// socket `uart` (QEMU is the client), then `extra`.
pub fn qemu_args(elf: &Path, uart: &Path, extra: &[String]) -> Vec<String> {
    qemu_args_with(elf, uart, &[], extra)
}

/// [`qemu_args`] with words for the image's semihosting command line (`arg=` of
/// `-semihosting-config`; the image reads them with SYS_GET_CMDLINE).
pub fn qemu_args_with(
    elf: &Path,
    uart: &Path,
    semihosting: &[String],
    extra: &[String],
) -> Vec<String> {
    let serial = format!("unix:{}", uart.display());
    let mut semihosting_config = "enable=on,target=native".to_owned();
    for word in semihosting {
        semihosting_config.push_str(",arg=");
        semihosting_config.push_str(word);
    }
    let mut args: Vec<String> = [
        "-machine",
        "virt,virtualization=on,gic-version=3,iommu=smmuv3",
        "-cpu",
        "max",
        "-m",
        "512M",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        &serial,
        "-nic",
        "none",
        "-semihosting-config",
        &semihosting_config,
        "-kernel",
        &elf.display().to_string(),
        "-device",
        "edu,dma_mask=0xffffffffffffffff",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().cloned());
    args
}

/// The words of [`EXTRA_ARGS_ENV`] (split on whitespace; no quoting).
pub fn extra_args_from_env() -> Vec<String> {
    std::env::var(EXTRA_ARGS_ENV)
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// One decoded defmt frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// `INFO`, `WARN`, `ERROR`, ... or `PRINT` for `println!`.
    pub level: String,
    /// The formatted message.
    pub message: String,
    /// `file:line` of the log statement, when the ELF has it.
    pub location: Option<String>,
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<5} {}", self.level, self.message)?;
        if let Some(loc) = self
            .location
            .as_ref()
            .filter(|_| self.level == "WARN" || self.level == "ERROR")
        {
            write!(f, "  ({loc})")?;
        }
        Ok(())
    }
}

/// One item of the run's output, in arrival order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A line of UART text (without the line ending).
    Uart(String),
    /// A decoded defmt frame.
    Log(LogLine),
}

enum Chunk {
    Defmt(Vec<u8>),
    Uart(Vec<u8>),
    DefmtClosed,
}

/// What a QEMU run produced.
#[derive(Debug)]
pub struct RunResult {
    /// QEMU's exit status (the image's semihosting exit code); `None` if killed.
    pub exit_code: Option<i32>,
    /// Whether the run was killed at the timeout.
    pub timed_out: bool,
    /// Decoded defmt frames, in order.
    pub log: Vec<LogLine>,
    /// The UART text.
    pub uart: String,
    /// Bytes of the stream that could not be decoded.
    pub malformed_frames: usize,
    /// Wall-clock time of the run.
    pub wall: Duration,
    /// QEMU's stderr, when it was captured.
    pub stderr: String,
}

/// The Unix socket the UART is connected to: short (sun_path holds 108 bytes), one per run (tests
/// boot several images at once from one process).
pub fn uart_socket() -> PathBuf {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("arm-smmuv3-uart-{}-{n}.sock", std::process::id()))
}

/// Boots `elf` under QEMU, collects its UART text (through [`uart_socket`]) and decodes
/// its defmt stream, calling `on_output` for each UART line and each frame as they arrive. Kills
/// QEMU after `timeout`. With `capture_stderr` QEMU's stderr is collected into the result;
/// otherwise it is inherited.
pub fn run(
    elf: &Path,
    extra: &[String],
    timeout: Duration,
    capture_stderr: bool,
    on_output: &mut dyn FnMut(&Output),
) -> Result<RunResult, String> {
    run_with(elf, &[], extra, timeout, capture_stderr, on_output)
}

/// [`run`] with words for the image's semihosting command line (see [`qemu_args_with`]).
pub fn run_with(
    elf: &Path,
    semihosting: &[String],
    extra: &[String],
    timeout: Duration,
    capture_stderr: bool,
    on_output: &mut dyn FnMut(&Output),
) -> Result<RunResult, String> {
    let bytes = std::fs::read(elf).map_err(|e| format!("cannot read {}: {e}", elf.display()))?;
    let table = Table::parse(&bytes)
        .map_err(|e| format!("{}: bad defmt table: {e}", elf.display()))?
        .ok_or_else(|| {
            format!(
                "{}: no .defmt section (was it linked with -Tdefmt.x?)",
                elf.display()
            )
        })?;
    let locations = table.get_locations(&bytes).ok();

    let socket = uart_socket();
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    let (tx, rx) = mpsc::channel::<Chunk>();
    let uart_tx = tx.clone();
    // Accepts QEMU's connection and forwards the UART bytes; ends when QEMU closes it.
    thread::spawn(move || {
        if let Ok((mut conn, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 || uart_tx.send(Chunk::Uart(buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    });

    let bin = qemu_binary();
    let start = Instant::now();
    let spawned = Command::new(&bin)
        .args(qemu_args_with(elf, &socket, semihosting, extra))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if capture_stderr {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(format!("cannot start {bin}: {e}"));
        }
    };

    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(Chunk::Defmt(buf[..n].to_vec())).is_err() {
                break;
            }
        }
        let _ = tx.send(Chunk::DefmtClosed);
    });
    let stderr_reader = child.stderr.take().map(|mut e| {
        thread::spawn(move || {
            let mut s = Vec::new();
            let _ = e.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    });

    let mut decoder = table.new_stream_decoder();
    let mut log = Vec::new();
    let mut uart = String::new();
    let mut pending = Vec::new();
    let mut malformed_frames = 0;
    let deadline = start + timeout;
    let mut timed_out = false;
    loop {
        let now = Instant::now();
        if now >= deadline {
            timed_out = true;
            let _ = child.kill();
            break;
        }
        match rx.recv_timeout(deadline - now) {
            Ok(Chunk::Uart(bytes)) => {
                pending.extend_from_slice(&bytes);
                while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=pos).collect();
                    let text = String::from_utf8_lossy(&line)
                        .trim_end_matches(['\r', '\n'])
                        .to_owned();
                    uart.push_str(&text);
                    uart.push('\n');
                    on_output(&Output::Uart(text));
                }
            }
            Ok(Chunk::DefmtClosed) => break,
            Ok(Chunk::Defmt(chunk)) => {
                decoder.received(&chunk);
                loop {
                    match decoder.decode() {
                        Ok(frame) => {
                            let line = to_line(&frame, locations.as_ref());
                            let out = Output::Log(line);
                            on_output(&out);
                            if let Output::Log(line) = out {
                                log.push(line);
                            }
                        }
                        Err(DecodeError::UnexpectedEof) => break,
                        Err(DecodeError::Malformed) => {
                            malformed_frames += 1;
                            if !table.encoding().can_recover() {
                                break;
                            }
                        }
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
    let _ = reader.join();
    // QEMU has exited and closed the socket: collect the UART text still in flight.
    while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
        if let Chunk::Uart(bytes) = chunk {
            pending.extend_from_slice(&bytes);
        }
    }
    let _ = std::fs::remove_file(&socket);
    let mut rest = String::from_utf8_lossy(&pending).replace('\r', "");
    if !rest.is_empty() {
        if !rest.ends_with('\n') {
            rest.push('\n');
        }
        for l in rest.lines() {
            on_output(&Output::Uart(l.to_owned()));
        }
        uart.push_str(&rest);
    }
    let stderr = stderr_reader
        .and_then(|h| h.join().ok())
        .unwrap_or_default();
    Ok(RunResult {
        exit_code: if timed_out { None } else { status.code() },
        timed_out,
        log,
        uart,
        malformed_frames,
        wall: start.elapsed(),
        stderr,
    })
}

fn to_line(frame: &Frame<'_>, locations: Option<&Locations>) -> LogLine {
    let level = frame
        .level()
        .map_or_else(|| "PRINT".to_owned(), |l| l.as_str().to_uppercase());
    let location = locations.and_then(|l| l.get(&frame.index())).map(|l| {
        format!(
            "{}:{}",
            l.file.file_name().map_or_else(
                || l.file.display().to_string(),
                |f| f.to_string_lossy().into_owned()
            ),
            l.line
        )
    });
    LogLine {
        level,
        message: frame.display_message().to_string(),
        location,
    }
}

/// Marks a decoded defmt line in the runner's output.
const DEFMT_MARK: &str = "    defmt| ";

/// Set to show a line the image wrote to both streams twice (once per stream).
const SHOW_BOTH_ENV: &str = "SMMU_QEMU_SHOW_BOTH";

/// The last lines printed from one stream, so that the same text from the other stream (which
/// arrives in approximately the same order) is printed once.
#[derive(Default)]
struct Recent(std::collections::VecDeque<String>);

impl Recent {
    const WINDOW: usize = 256;

    fn push(&mut self, text: &str) {
        if self.0.len() == Self::WINDOW {
            self.0.pop_front();
        }
        self.0.push_back(text.to_string());
    }

    /// Removes `text` if it is among the recent lines, saying whether it was.
    fn take(&mut self, text: &str) -> bool {
        match self.0.iter().position(|t| t == text) {
            Some(i) => {
                self.0.remove(i);
                true
            }
            None => false,
        }
    }
}

/// Says how QEMU ended (`details` follows the normal-exit line) and returns the runner's exit
/// code: the image's, 124 after the timeout, 1 after a signal.
pub fn finish(r: &RunResult, timeout: Duration, details: &str) -> ExitCode {
    match (r.timed_out, r.exit_code) {
        (true, _) => {
            println!(
                "# QEMU killed after {} s ({TIMEOUT_ENV})",
                timeout.as_secs()
            );
            ExitCode::from(124)
        }
        (false, Some(code)) => {
            println!(
                "# QEMU exited with {code} after {:.1} s{details}",
                r.wall.as_secs_f64()
            );
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        (false, None) => {
            println!("# QEMU was killed by a signal");
            ExitCode::from(1)
        }
    }
}

/// `qemu-virt-runner <elf> [qemu args...]`: what the cargo runner executes.
pub fn runner_main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(elf) = args.next() else {
        eprintln!(
            "usage: qemu-virt-runner <aarch64 image> [extra QEMU arguments]\n\
             (the cargo runner of `cargo qemu` and `cargo linux`; run those instead)"
        );
        return ExitCode::from(2);
    };
    let rest: Vec<String> = args.collect();
    if rest.first().is_some_and(|a| a == "--linux") {
        return linux::main(Path::new(&elf), rest.get(1..).unwrap_or_default());
    }
    let mut extra = extra_args_from_env();
    extra.extend(rest);
    // Trace lines the user asked for are shown; the runner's own are only counted.
    let user_traces = extra
        .iter()
        .any(|a| a.starts_with("-trace") || a.starts_with("-d"));
    extra.extend(drain_trace_args());
    let timeout = std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let version = match check_qemu() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(127);
        }
    };
    let elf = PathBuf::from(elf);
    let cmdline = qemu_args(&elf, &uart_socket(), &extra).join(" ");
    println!(
        "# QEMU {}.{}.{}: {} {cmdline}",
        version.0,
        version.1,
        version.2,
        qemu_binary()
    );
    // The image says most things on both streams; show each such line once, unless asked.
    let show_both = std::env::var_os(SHOW_BOTH_ENV).is_some();
    println!(
        "# UART text as is; decoded defmt frames after \"{DEFMT_MARK}\" (an INFO frame that repeats a \
         UART line is shown once; {SHOW_BOTH_ENV}=1 shows both); QEMU's own messages on stderr \
         (at the end); QEMU traces smmuv3 MMIO and the drain markers to count accesses per drain"
    );
    let mut uart_only = Recent::default();
    let mut log_only = Recent::default();
    let result = run(&elf, &extra, timeout, true, &mut |out| match out {
        Output::Uart(text) => {
            if show_both || !log_only.take(text.trim()) {
                uart_only.push(text.trim());
                println!("{text}");
            }
        }
        Output::Log(line) => {
            let dup = line.level == "INFO" && !show_both && uart_only.take(line.message.trim());
            if !dup {
                log_only.push(line.message.trim());
                println!("{DEFMT_MARK}{line}");
            }
        }
    });
    match result {
        Ok(r) => {
            if r.malformed_frames > 0 {
                println!("# {} malformed defmt frame(s)", r.malformed_frames);
            }
            if !r.timed_out && r.exit_code.is_some() {
                for line in r.stderr.lines() {
                    if user_traces || !is_drain_trace_line(line) {
                        eprintln!("{line}");
                    }
                }
                match drain_measures(&r.log, &r.stderr) {
                    Ok(m) => println!("# {}", drain_summary(&m)),
                    Err(e) => println!("# QEMU trace: cannot count MMIO per drain: {e}"),
                }
            }
            let details = format!(
                " ({} defmt frames, {} UART bytes)",
                r.log.len(),
                r.uart.len()
            );
            finish(&r, timeout, &details)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The output contract every image of this repository prints (the QEMU demo and the board
/// images): one `RESULT <name> PASS|FAIL` line per scenario or bring-up step, then
/// `SUMMARY: <passed> passed, <failed> failed (of <total>) in <ms> ms`.
pub mod contract {
    use std::collections::BTreeMap;

    /// name -> outcome from the `RESULT <name> <outcome>` lines; a malformed line or a name
    /// reported twice is an error.
    pub fn results<'a>(
        lines: impl Iterator<Item = &'a str>,
    ) -> Result<BTreeMap<String, String>, String> {
        let mut map = BTreeMap::new();
        for line in lines {
            let mut words = line.split_whitespace();
            if words.next() != Some("RESULT") {
                continue;
            }
            let (Some(name), Some(outcome), None) = (words.next(), words.next(), words.next())
            else {
                return Err(format!("malformed RESULT line: {line}"));
            };
            if !matches!(outcome, "PASS" | "FAIL") {
                return Err(format!("outcome neither PASS nor FAIL: {line}"));
            }
            if map.insert(name.to_owned(), outcome.to_owned()).is_some() {
                return Err(format!("{name} reported twice"));
            }
        }
        Ok(map)
    }

    /// (passed, failed, total) from the one `SUMMARY:` line of `text`; `None` when there is
    /// none, more than one, or it is malformed.
    pub fn summary(text: &str) -> Option<(u32, u32, u32)> {
        let mut found = text
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("SUMMARY: "));
        let line = found.next()?;
        if found.next().is_some() {
            return None;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            [p, "passed,", f, "failed", "(of", t, ..] => Some((
                p.parse().ok()?,
                f.parse().ok()?,
                t.strip_suffix(')')?.parse().ok()?,
            )),
            _ => None,
        }
    }
}
