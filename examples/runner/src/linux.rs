//! The Linux guest mode (`cargo linux`): provisions Debian's arm64 kernel and the initramfs
//! through .ci/linux-guest, has QEMU load them into the guest's RAM (`-device loader`), tells the
//! hypervisor where they are (semihosting command line), and prints the guest's console (the
//! PL011) and the hypervisor's lines (defmt over semihosting) apart.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use crate::{LogLine, Output, RunResult, TIMEOUT_ENV};

/// Where QEMU loads the kernel `Image` (2 MiB aligned, in the guest's RAM above the device tree
/// the hypervisor writes at 0x4400_0000).
pub const KERNEL_ADDR: u64 = 0x4480_0000;
/// Where QEMU loads the initramfs.
pub const INITRD_ADDR: u64 = 0x5000_0000;
/// The guest's RAM ends here (`-m 512M`).
const RAM_END: u64 = 0x6000_0000;
/// Marks the guest's console lines in the runner's output.
pub const GUEST_MARK: &str = "guest| ";
/// Marks the hypervisor's lines.
pub const HYP_MARK: &str = "hyp  | ";
/// Default timeout of a Linux run: the kernel boots in seconds; a hung guest is killed.
pub const LINUX_TIMEOUT: Duration = Duration::from_secs(100);

/// The guest's kernel and initramfs, as .ci/linux-guest cached them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestFiles {
    /// The uncompressed arm64 `Image`.
    pub kernel: PathBuf,
    /// The gzip'd cpio.
    pub initrd: PathBuf,
}

/// What the guest sees at the SMMU's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmmuMode {
    /// No SMMU in the guest's device tree.
    Hidden,
    /// The SMMU node kept; its window traps to the hypervisor's virtual SMMU.
    Virtual,
    /// The SMMU node kept; the hypervisor forwards the trapped accesses to the physical SMMU (a
    /// measuring mode, without isolation).
    Passthrough,
}

/// Runs .ci/linux-guest in the workspace at `workspace` (it downloads and packs on first use,
/// saying so on stderr) and returns the files it names.
pub fn provision(workspace: &Path) -> Result<GuestFiles, String> {
    let script = workspace.join(".ci/linux-guest");
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): no Linux guest (needs a Debian host with apt, or the files in its cache)",
            script.display(),
            out.status
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(PathBuf::from)
            .filter(|p| p.is_file())
            .ok_or_else(|| format!("{} did not name an existing {key}", script.display()))
    };
    Ok(GuestFiles {
        kernel: get("KERNEL=")?,
        initrd: get("INITRD=")?,
    })
}

/// The semihosting words and the extra QEMU arguments that boot `files` under the hypervisor.
pub fn boot_args(files: &GuestFiles, smmu: SmmuMode) -> Result<(Vec<String>, Vec<String>), String> {
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len())
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let (kernel_size, initrd_size) = (size(&files.kernel)?, size(&files.initrd)?);
    // The kernel's BSS and early page tables follow the image: keep a margin below the initrd.
    if KERNEL_ADDR + kernel_size + (16 << 20) > INITRD_ADDR || INITRD_ADDR + initrd_size > RAM_END {
        return Err(format!(
            "the kernel ({kernel_size} bytes) or initrd ({initrd_size} bytes) does not fit the \
             guest's memory layout"
        ));
    }
    for p in [&files.kernel, &files.initrd] {
        if p.to_string_lossy().contains(',') {
            return Err(format!(
                "{}: QEMU option values cannot hold a comma",
                p.display()
            ));
        }
    }
    let semihosting = vec![
        "linux".to_owned(),
        format!("kernel={KERNEL_ADDR:#x}"),
        format!("initrd={INITRD_ADDR:#x}"),
        format!("initrd-size={initrd_size}"),
        format!(
            "smmu={}",
            match smmu {
                SmmuMode::Hidden => "hidden",
                SmmuMode::Virtual => "virtual",
                SmmuMode::Passthrough => "passthrough",
            }
        ),
    ];
    let extra = vec![
        "-device".to_owned(),
        format!(
            "loader,file={},addr={KERNEL_ADDR:#x},force-raw=on",
            files.kernel.display()
        ),
        "-device".to_owned(),
        format!(
            "loader,file={},addr={INITRD_ADDR:#x},force-raw=on",
            files.initrd.display()
        ),
    ];
    Ok((semihosting, extra))
}

/// The workspace this runner was built from.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Boots the guest under the hypervisor image `elf`, calling `on_output` as lines arrive.
pub fn run(
    elf: &Path,
    files: &GuestFiles,
    smmu: SmmuMode,
    extra: &[String],
    timeout: Duration,
    on_output: &mut dyn FnMut(&Output),
) -> Result<RunResult, String> {
    let (semihosting, mut args) = boot_args(files, smmu)?;
    args.extend(extra.iter().cloned());
    crate::run_with(elf, &semihosting, &args, timeout, true, on_output)
}

/// One line of output with its source marked.
pub fn marked(out: &Output) -> String {
    match out {
        Output::Uart(text) => format!("{GUEST_MARK}{text}"),
        Output::Log(LogLine { level, message, .. }) => format!("{HYP_MARK}{level:<5} {message}"),
    }
}

/// `cargo linux [-- --smmu=virtual|passthrough] [QEMU args]`: what the runner does after `--linux`.
pub fn main(elf: &Path, args: &[String]) -> ExitCode {
    let smmu = if args.iter().any(|a| a == "--smmu=virtual") {
        SmmuMode::Virtual
    } else if args.iter().any(|a| a == "--smmu=passthrough") {
        SmmuMode::Passthrough
    } else {
        SmmuMode::Hidden
    };
    let mut extra = crate::extra_args_from_env();
    extra.extend(
        args.iter()
            .filter(|a| !a.starts_with("--smmu=") && a.as_str() != "--")
            .cloned(),
    );
    if let Err(e) = crate::check_qemu() {
        eprintln!("error: {e}");
        return ExitCode::from(127);
    }
    let files = match provision(&workspace()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let timeout = std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(LINUX_TIMEOUT, Duration::from_secs);
    println!(
        "# Linux guest: kernel {}, initrd {}; the guest's console after \"{GUEST_MARK}\", the \
         hypervisor's lines after \"{HYP_MARK}\"",
        files.kernel.display(),
        files.initrd.display()
    );
    let result = run(elf, &files, smmu, &extra, timeout, &mut |out| {
        println!("{}", marked(out));
    });
    match result {
        Ok(r) => {
            for line in r.stderr.lines() {
                eprintln!("{line}");
            }
            crate::finish(&r, timeout, "")
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
