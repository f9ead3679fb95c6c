//! The cargo runner for `aarch64-unknown-none` (see .cargo/config.toml): boots the image it is
//! given under QEMU `virt`.

fn main() -> std::process::ExitCode {
    qemu_virt_runner::runner_main()
}
